//! Budgets of the loop: token buckets (`rate` tokens a second, at most `burst` saved up, each
//! refusal counted), and the table of them that budgets new datagram flows per destination.
//! One bucket bounds the ICMP errors the loop sends (`policy::Denials`); one bounds the
//! challenge ACKs of every TCP flow together (RFC 5961 7; the TCP translator asks it through
//! its `tcp::ChallengeLimit` seam); and a `NewFlows` each (UDP, ICMP echo) bounds how fast the sandbox may open new datagram flows, so that a
//! flood of new flows (40k flows from random ports, issue 14) costs the loop a bounded share
//! of its time and leaves the rest to established flows. TCP has no flow budget here: its new flows are bounded by the half-open limit of
//! `flows`, and the bench's connect rate must stay free.
//!
//! `NewFlows` asks the destination's bucket first and the global one only if that allowed, so
//! a flood at one destination (issue 14's stress run: 100k datagrams from 40k ports to one
//! port) spends its own share, a quarter of the global rate, and new flows elsewhere still
//! get theirs. Destinations are matched exactly in a table of `DESTINATIONS` (the least
//! recently used one is replaced), not hashed into shared buckets: while fewer than 64 are in
//! use, no two share a budget, so a new flow is never refused for a flood at another port. A
//! sandbox that sprays more destinations than that churns the table, and the global bucket
//! is what bounds it. A datagram over budget is not dropped in silence: the caller answers it
//! (port unreachable for UDP, administratively prohibited for an echo request) when the
//! destination's and the source's (address and port, or address and echo identifier) shares
//! of `ANSWERS_PER_DST_PER_SEC` and the loop's limit for such answers
//! (`policy::REFUSALS_PER_SEC`, 5,000 a second) allow, so a flood from one source at many
//! destinations (issue 14's `malformed`), or from many sources at one destination
//! (`udp-flood`), gets ten answers a second and leaves the rest to everyone else. A flood
//! from many sources at many destinations at once can spend the loop's limit; then some
//! datagrams over budget go unanswered.
//! Part of `event_loop`; no I/O, no allocation after `NewFlows::new`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// New UDP (and, separately, ICMP echo) flows the sandbox may open per second, sustained.
/// Each costs the loop about six syscalls (socket, bind, connect, epoll_ctl, the first send,
/// and the close of a flow it evicts when the table is full), some 15-25 µs: 2,000 a second
/// is at most 5% of the loop. A resolver or a game opens a few a second, a DHT crawler some
/// hundreds.
const NEW_FLOWS_PER_SEC: u32 = 2000;
/// New datagram flows that may be opened at once after a quiet spell.
const NEW_FLOW_BURST: u32 = 512;
/// New flows to one destination (address and port; address alone for ICMP echo) per second,
/// sustained: a quarter of `NEW_FLOWS_PER_SEC`, so a flood at one destination leaves three
/// quarters to the others. A resolver asking one server from a new port for each query does
/// a few hundred a second when busy.
const PER_DST_PER_SEC: u32 = NEW_FLOWS_PER_SEC / 4;
/// New flows to one destination at once: a quarter of `NEW_FLOW_BURST`.
const PER_DST_BURST: u32 = NEW_FLOW_BURST / 4;
/// Destinations budgeted apart at once. Each new flow's datagram scans the table (64
/// comparisons, well under a microsecond, against the six syscalls of opening a flow); 64
/// entries are some 9 KiB.
const DESTINATIONS: usize = 64;
/// Datagrams over budget answered per destination per second (and at once), within the loop's
/// limit for such answers (`policy::REFUSALS_PER_SEC`). Linux answers one ICMP error per
/// second per peer (net.ipv4.icmp_ratelimit); here every error goes to the one sandbox, so the
/// limit is per destination of the datagram, and per source, instead: a program retrying one
/// destination hears about it ten times a second. The table of sources is an `Lru` of
/// `DESTINATIONS` entries too.
const ANSWERS_PER_DST_PER_SEC: u32 = 10;
/// Challenge ACKs all TCP flows together may send per second, and at once: Linux's
/// net.ipv4.tcp_challenge_ack_limit (1000 until 6.0). RFC 5961 7 asks for such a limit on top
/// of each flow's own (`tcp::CHALLENGE_INTERVAL`), which only bounds one flow: a sandbox with
/// 4,096 flows forging RSTs on each would draw 8,000 challenge ACKs a second. Linux's global
/// counter was a side channel (CVE-2016-5696: an off-path attacker counted the challenge ACKs
/// it drew to learn whether a guessed connection existed, which is why Linux 6.0 turned it
/// off by default); here every segment that can draw a challenge comes from the sandbox and
/// every challenge goes back to it, so nobody off that path shares the counter.
const CHALLENGE_ACKS_PER_SEC: u32 = 1000;

/// One token bucket.
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    rate: u32,
    burst: u32,
    tokens: u32,
    refilled: Instant,
    /// Takes refused because the bucket was empty.
    pub(super) refused: u64,
}

impl Bucket {
    /// A full bucket.
    pub(super) fn new(rate: u32, burst: u32, now: Instant) -> Bucket {
        Bucket {
            rate,
            burst,
            tokens: burst,
            refilled: now,
            refused: 0,
        }
    }

    /// The stack-wide budget of challenge ACKs (`CHALLENGE_ACKS_PER_SEC`), full.
    pub(super) fn challenge_acks(now: Instant) -> Bucket {
        Bucket::new(CHALLENGE_ACKS_PER_SEC, CHALLENGE_ACKS_PER_SEC, now)
    }

    /// Takes one token: whether the thing it pays for may happen now.
    pub(super) fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        match self.tokens.checked_sub(1) {
            Some(t) => {
                self.tokens = t;
                true
            }
            None => {
                self.refused += 1;
                false
            }
        }
    }

    /// Gives back a token taken for something that then did not happen.
    fn refund(&mut self) {
        self.tokens = (self.tokens + 1).min(self.burst);
    }

    /// Adds the tokens earned since the last refill; the time of a token not yet whole is kept.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled);
        let earned = elapsed.as_millis() * u128::from(self.rate) / 1000;
        if earned == 0 {
            return;
        }
        let room = self.burst.saturating_sub(self.tokens);
        if earned >= u128::from(room) {
            self.tokens = self.burst;
            self.refilled = now;
            return;
        }
        self.tokens += earned as u32; // below `room`, a u32
        let paid_us = earned * 1_000_000 / u128::from(self.rate.max(1));
        self.refilled += Duration::from_micros(paid_us as u64); // below a second
    }
}

impl crate::tcp::ChallengeLimit for Bucket {
    fn allow_challenge(&mut self, now: Instant) -> bool {
        self.take(now)
    }
}

/// What the budget says about a datagram that would open a new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Budget {
    /// Open the flow.
    Open,
    /// Over its destination's or the global budget: refuse it, answering only if `answer`
    /// (the destination's answers are not spent; the loop's limit still applies).
    Over {
        /// Whether the refusal may be answered.
        answer: bool,
    },
}

/// The budget of one destination: new flows, and answers to those refused.
#[derive(Debug, Clone)]
struct Destination {
    flows: Bucket,
    answers: Bucket,
}

/// One entry of an `Lru`: its key, when it was last used, and what it holds.
#[derive(Debug, Clone)]
struct Entry<T> {
    addr: SocketAddr,
    used: Instant,
    value: T,
}

/// A fixed table of `DESTINATIONS` entries keyed by socket address, matched exactly; a new
/// key takes a free entry, else the least recently used one's.
#[derive(Debug)]
struct Lru<T> {
    slots: Box<[Option<Entry<T>>; DESTINATIONS]>,
}

impl<T> Lru<T> {
    /// An empty table (its only allocation).
    fn new() -> Lru<T> {
        Lru {
            slots: Box::new(std::array::from_fn(|_| None)),
        }
    }

    /// The value for `addr`, made by `fresh` if it has no entry.
    fn get(&mut self, addr: SocketAddr, now: Instant, fresh: impl FnOnce() -> T) -> &mut T {
        let slot = self.slot_for(addr);
        match slot {
            Some(e) if e.addr == addr => e.used = now,
            _ => *slot = None,
        }
        let entry = slot.get_or_insert_with(|| Entry {
            addr,
            used: now,
            value: fresh(),
        });
        &mut entry.value
    }

    /// The slot holding `addr`, else a free one, else the least recently used one.
    fn slot_for(&mut self, addr: SocketAddr) -> &mut Option<Entry<T>> {
        let holds = |s: &Option<Entry<T>>| s.as_ref().is_some_and(|e| e.addr == addr);
        let used = |s: &Option<Entry<T>>| s.as_ref().map(|e| e.used);
        let pick = (self.slots.iter().position(holds))
            .or_else(|| self.slots.iter().position(Option::is_none))
            .or_else(|| {
                let oldest = self.slots.iter().enumerate().min_by_key(|(_, s)| used(s));
                oldest.map(|(i, _)| i)
            })
            .unwrap_or(0)
            % DESTINATIONS; // within the array whatever the search found: no panic path
        &mut self.slots[pick]
    }
}

/// The budget of new flows of one kind (UDP, or ICMP echo): per destination, then in all;
/// and the answers to refused ones, per destination and per source.
#[derive(Debug)]
pub(super) struct NewFlows {
    /// Destinations seen lately.
    destinations: Lru<Destination>,
    /// Answers to each source (address and port; for an echo, address and identifier) seen
    /// lately.
    sources: Lru<Bucket>,
    global: Bucket,
    /// New flows refused because their destination's budget was spent.
    pub(super) over_destination: u64,
    /// New flows refused because the global budget was spent.
    pub(super) over_global: u64,
}

impl NewFlows {
    /// Full budgets, and the tables allocated (their only allocations).
    pub(super) fn new(now: Instant) -> NewFlows {
        NewFlows {
            destinations: Lru::new(),
            sources: Lru::new(),
            global: Bucket::new(NEW_FLOWS_PER_SEC, NEW_FLOW_BURST, now),
            over_destination: 0,
            over_global: 0,
        }
    }

    /// Whether a new flow from `src` to `dst` may be opened now: its destination's budget
    /// first, then the global one (whose refusal gives the destination its token back).
    pub(super) fn take(&mut self, src: SocketAddr, dst: SocketAddr, now: Instant) -> Budget {
        let fresh = || Destination {
            flows: Bucket::new(PER_DST_PER_SEC, PER_DST_BURST, now),
            answers: Bucket::new(ANSWERS_PER_DST_PER_SEC, ANSWERS_PER_DST_PER_SEC, now),
        };
        let entry = self.destinations.get(dst, now, fresh);
        if !entry.flows.take(now) {
            self.over_destination += 1;
            let answer = entry.answers.take(now);
            return self.answer(src, answer, now);
        }
        if self.global.take(now) {
            return Budget::Open;
        }
        entry.flows.refund();
        self.over_global += 1;
        let answer = entry.answers.take(now);
        self.answer(src, answer, now)
    }

    /// A refusal from `src`, answered if its destination allowed (`by_destination`) and its
    /// source's share of the answers allows too.
    fn answer(&mut self, src: SocketAddr, by_destination: bool, now: Instant) -> Budget {
        let fresh = || Bucket::new(ANSWERS_PER_DST_PER_SEC, ANSWERS_PER_DST_PER_SEC, now);
        let answer = by_destination && self.sources.get(src, now, fresh).take(now);
        Budget::Over { answer }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dst(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 2, 2], port))
    }

    fn src(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 2, 100], port))
    }

    /// Takes `n` new flows to `to` at `now`, each from its own source port: how many were
    /// opened, and how many refused with an answer allowed.
    fn take_n(b: &mut NewFlows, to: SocketAddr, n: u32, now: Instant) -> (u32, u32) {
        let (mut open, mut answered) = (0, 0);
        for i in 0..n {
            match b.take(src(i as u16), to, now) {
                Budget::Open => open += 1,
                Budget::Over { answer } => answered += u32::from(answer),
            }
        }
        (open, answered)
    }

    #[test]
    fn a_bucket_spends_its_burst_then_earns_at_its_rate() {
        let start = Instant::now();
        let mut b = Bucket::new(1000, 3, start);
        assert_eq!((0..5).filter(|_| b.take(start)).count(), 3);
        assert_eq!(b.refused, 2);
        let later = start + Duration::from_millis(2);
        assert_eq!((0..5).filter(|_| b.take(later)).count(), 2, "2 ms earn 2");
        let much_later = start + Duration::from_secs(60);
        assert_eq!(
            (0..9).filter(|_| b.take(much_later)).count(),
            3,
            "never above the burst"
        );
    }

    #[test]
    fn challenge_acks_are_a_thousand_a_second_for_the_whole_stack() {
        use crate::tcp::ChallengeLimit;
        let start = Instant::now();
        let mut b = Bucket::challenge_acks(start);
        assert_eq!((0..1500).filter(|_| b.allow_challenge(start)).count(), 1000);
        assert_eq!(b.refused, 500);
        let later = start + Duration::from_millis(5);
        assert_eq!((0..10).filter(|_| b.allow_challenge(later)).count(), 5);
    }

    #[test]
    fn a_slow_bucket_keeps_the_time_of_a_token_not_yet_whole() {
        let start = Instant::now();
        let mut b = Bucket::new(10, 2, start);
        assert!(b.take(start) && b.take(start));
        // 150 ms earn one token (100 ms) and keep 50 ms towards the next.
        assert!(b.take(start + Duration::from_millis(150)));
        assert!(!b.take(start + Duration::from_millis(199)));
        assert!(b.take(start + Duration::from_millis(200)), "50 + 50 ms");
    }

    #[test]
    fn a_flood_at_one_destination_spends_its_share_and_leaves_the_global_budget() {
        let start = Instant::now();
        let mut b = NewFlows::new(start);
        let (open, answered) = take_n(&mut b, dst(9), 10_000, start);
        assert_eq!(open, PER_DST_BURST, "the destination's burst, no more");
        assert_eq!(answered, ANSWERS_PER_DST_PER_SEC, "its answers, no more");
        assert_eq!(b.over_destination, u64::from(10_000 - PER_DST_BURST));
        assert_eq!(b.over_global, 0);
        let other = take_n(&mut b, dst(7), PER_DST_BURST, start).0;
        assert_eq!(
            other, PER_DST_BURST,
            "another port gets its whole burst at once"
        );
        // 100 ms of flooding later: the flood got its rate, the other port still gets in.
        let later = start + Duration::from_millis(100);
        assert_eq!(
            take_n(&mut b, dst(9), 10_000, later).0,
            PER_DST_PER_SEC / 10
        );
        assert_eq!(take_n(&mut b, dst(7), 1, later).0, 1);
    }

    #[test]
    fn many_destinations_spend_the_global_budget_and_are_answered_within_their_own() {
        let start = Instant::now();
        let mut b = NewFlows::new(start);
        let mut open = 0;
        for port in 0..NEW_FLOW_BURST as u16 + 100 {
            open += take_n(&mut b, dst(1000 + port), 1, start).0;
        }
        assert_eq!(open, NEW_FLOW_BURST, "the global burst bounds them all");
        assert_eq!(b.over_global, 100);
        assert_eq!(b.over_destination, 0);
        // Refused by the global budget, a destination keeps its own tokens and answers.
        assert_eq!(
            b.take(src(1), dst(5000), start),
            Budget::Over { answer: true },
            "a new destination is refused aloud"
        );
        let later = start + Duration::from_millis(10);
        assert_eq!(
            take_n(&mut b, dst(5000), 1, later).0,
            1,
            "10 ms earn the global budget 20 flows"
        );
    }

    #[test]
    fn the_least_recently_used_destination_makes_room_and_comes_back_full() {
        let start = Instant::now();
        let mut b = NewFlows::new(start);
        take_n(&mut b, dst(1), PER_DST_BURST, start);
        assert_eq!(take_n(&mut b, dst(1), 1, start).0, 0, "port 1 spent");
        for (i, port) in (2..2 + DESTINATIONS as u16).enumerate() {
            let t = start + Duration::from_micros(i as u64 + 1);
            assert_eq!(take_n(&mut b, dst(port), 1, t).0, 1);
        }
        assert_eq!(b.destinations.slots.iter().flatten().count(), DESTINATIONS);
        assert!(
            !b.destinations
                .slots
                .iter()
                .flatten()
                .any(|e| e.addr == dst(1)),
            "the oldest destination was replaced"
        );
        // Port 2, used least recently now, goes next; port 3 keeps its entry.
        let t = start + Duration::from_millis(1);
        take_n(&mut b, dst(1), 1, t);
        let held = |b: &NewFlows, port| {
            b.destinations
                .slots
                .iter()
                .flatten()
                .any(|e| e.addr == dst(port))
        };
        assert!(!held(&b, 2));
        assert!(held(&b, 3));
    }

    #[test]
    fn a_source_spraying_many_destinations_is_answered_within_its_share_and_others_still_are() {
        let start = Instant::now();
        let mut b = NewFlows::new(start);
        let mut answered = 0;
        for port in 0..NEW_FLOW_BURST as u16 + 1000 {
            if b.take(src(40_000), dst(1000 + port), start) == (Budget::Over { answer: true }) {
                answered += 1;
            }
        }
        assert_eq!(b.over_global, 1000);
        assert_eq!(
            answered, ANSWERS_PER_DST_PER_SEC,
            "the source's answers, no more"
        );
        assert_eq!(
            b.take(src(50_000), dst(7), start),
            Budget::Over { answer: true },
            "another source, over the global budget too, is answered"
        );
    }
}
