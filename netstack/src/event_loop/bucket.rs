//! Token buckets of the loop: `rate` tokens a second, at most `burst` saved up, each refusal
//! counted. One bounds the ICMP errors the loop sends (`policy::Denials`); two bound how fast
//! the sandbox may open new datagram flows, one for UDP and one for ICMP echo, so that a
//! flood of new flows (40k flows from random ports, issue 14) costs the loop a bounded share
//! of its time and leaves the rest to established flows. Over budget, a datagram that would
//! open a flow is dropped and counted, as a congested link would drop it: the sandbox's
//! programs retry, as they must over any network. TCP has no budget here: its new flows are
//! bounded by the half-open limit of `flows`, and the bench's connect rate must stay free.
//! Part of `event_loop`; no I/O, no allocation.

use std::time::Instant;

/// New UDP (and, separately, ICMP echo) flows the sandbox may open per second, sustained.
/// Each costs the loop about six syscalls (socket, bind, connect, epoll_ctl, the first send,
/// and the close of a flow it evicts when the table is full), some 15-25 µs: 2,000 a second
/// is at most 5% of the loop. A resolver or a game opens a few a second, a DHT crawler some
/// hundreds.
const NEW_FLOWS_PER_SEC: u32 = 2000;
/// New datagram flows that may be opened at once after a quiet spell.
const NEW_FLOW_BURST: u32 = 512;

/// One token bucket.
#[derive(Debug)]
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

    /// A full budget of new datagram flows (`NEW_FLOWS_PER_SEC`, `NEW_FLOW_BURST`).
    pub(super) fn new_flows(now: Instant) -> Bucket {
        Bucket::new(NEW_FLOWS_PER_SEC, NEW_FLOW_BURST, now)
    }

    /// Takes one token: whether the thing it pays for may happen now.
    pub(super) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled);
        let earned =
            (elapsed.as_millis() * u128::from(self.rate) / 1000).min(u128::from(self.burst)) as u32;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(self.burst);
            self.refilled = now;
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
}
