//! The egress policy's hooks in the loop: the check when the sandbox opens a flow, the
//! denial it gets (a RST for TCP, sent by the caller; a rate-limited ICMP administratively
//! prohibited for UDP and ICMP echo), runtime rule changes from the command channel (which
//! close open flows a change denies: RST both ways for TCP, the socket dropped for UDP and
//! ICMP), and forgetting expired DNS answers on the timer. A denied datagram flow is
//! remembered for a second (`MEMO`), so a sandbox repeating it costs one check, one log line
//! and one audit line per second, not per datagram. The ICMP writer also serves `exhaustion`
//! (the answers to datagrams that get no flow or socket, or go over the new-flow budget),
//! under a rate limit of its own (`Limit::Refusal`; denials have `Limit::Denial`).
//! Part of `event_loop`; the decisions are `policy::Enforcer`'s. Without a policy every
//! hook is one `Option` test.

use super::bucket::Bucket;
use super::*;
use crate::policy::{
    EgressError, EgressReply, EgressRequest, Enforcer, Proto as RuleProto, RuleEntry,
};

/// ICMP errors that answer policy denials per second at most, in bursts of as many (Linux's
/// default icmp_ratelimit is one per second per destination; one sandbox's burst of denied
/// datagrams deserves answers, not a flood; each denial is also logged and audited).
const ICMP_ERRORS_PER_SEC: u32 = 100;
/// Answers to the sandbox's own datagrams that got no flow (`exhaustion`: no slot or socket,
/// or over the new-flow budget) per second at most. Apart from the denials' limit: a flood at
/// many destinations spent that 100 a second in its first millisecond, and a legitimate new
/// flow then went unanswered (issue 14's stress run, `malformed`). Every answer goes back to
/// the sandbox, one for one, so it amplifies nothing; but each is a tap write, and answering
/// a 200k-frame/s flood one for one slowed the loop's reading enough for the tap's queue to
/// overflow and a bystander upload to fall to 1% (the same run). Over budget, the answers are
/// shared per destination and per source first (`bucket`), so a flood from one source or at
/// one destination gets ten a second and this limit is left for everyone else; it bounds
/// the cost of a flood from many sources at many destinations at once (5,000 tap writes a
/// second, about 1% of the loop), which can spend it.
const REFUSALS_PER_SEC: u32 = 5_000;
/// Refusals answered at once after a quiet spell.
const REFUSAL_BURST: u32 = 1_000;
/// Denied datagram flows remembered, so a sandbox repeating a denied datagram is answered
/// without asking (and logging, and auditing) the policy again for each one.
const MEMO: usize = 64;
/// How long a remembered denial stands (a rule change also forgets it).
const MEMO_FOR: Duration = Duration::from_secs(1);
/// How often expired DNS answers are forgotten.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);
/// Ethernet header length, before the IP packet an ICMP error quotes.
const ETH_LEN: usize = 14;

/// Why a datagram is answered ICMP destination unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unreachable {
    /// The egress policy denied it, or it is an echo request over the new-flow budget
    /// (`exhaustion`).
    Prohibited,
    /// No flow or host socket could be made for it (`exhaustion`).
    Port,
}

/// Token buckets for the ICMP errors (and exhaustion SERVFAILs) the loop sends, with their
/// frame buffer.
#[derive(Debug)]
pub(super) struct Denials {
    /// Answers to policy denials; those not sent because it was empty are its `refused`.
    pub(super) bucket: Bucket,
    /// Answers to datagrams that got no flow (`exhaustion`); the same for `refused`.
    pub(super) refusals: Bucket,
    buf: Box<[u8]>,
    /// Recently denied UDP and echo flows (`MEMO`, a ring) and when.
    memo: [Option<(FlowKey, Instant)>; MEMO],
    next: usize,
}

impl Denials {
    /// A full bucket and a buffer for `headroom` + one minimum-MTU IPv6 packet + Ethernet.
    pub(super) fn new(headroom: usize, now: Instant) -> Denials {
        Denials {
            bucket: Bucket::new(ICMP_ERRORS_PER_SEC, ICMP_ERRORS_PER_SEC, now),
            refusals: Bucket::new(REFUSALS_PER_SEC, REFUSAL_BURST, now),
            buf: vec![0; headroom + ETH_LEN + 1280].into_boxed_slice(),
            memo: [None; MEMO],
            next: 0,
        }
    }

    /// Whether `key` was denied less than `MEMO_FOR` ago.
    fn remembered(&self, key: &FlowKey, now: Instant) -> bool {
        self.memo
            .iter()
            .flatten()
            .any(|(k, at)| k == key && now.saturating_duration_since(*at) < MEMO_FOR)
    }

    fn remember(&mut self, key: FlowKey, now: Instant) {
        if let Some(slot) = self.memo.get_mut(self.next) {
            *slot = Some((key, now));
        }
        self.next = (self.next + 1) % MEMO;
    }

    fn forget_all(&mut self) {
        self.memo = [None; MEMO];
    }

    /// Takes one token of `limit`: whether an answer may be sent now.
    pub(super) fn take(&mut self, limit: Limit, now: Instant) -> bool {
        match limit {
            Limit::Denial => self.bucket.take(now),
            Limit::Refusal => self.refusals.take(now),
        }
    }
}

/// Which rate limit an ICMP error (or SERVFAIL) the loop sends is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    /// A policy denial (`ICMP_ERRORS_PER_SEC`).
    Denial,
    /// A datagram that got no flow or socket (`REFUSALS_PER_SEC`).
    Refusal,
}

impl EventLoop {
    /// Whether the policy lets the sandbox open the UDP or echo flow `key`; a denial is
    /// remembered for `MEMO_FOR`, so repeats are answered without judging and logging again.
    pub(super) fn datagram_allowed(&mut self, key: FlowKey, now: Instant) -> bool {
        if self.cfg.policy.is_none() {
            return true;
        }
        if self.denials.remembered(&key, now) {
            self.drops.denied += 1;
            return false;
        }
        let proto = match key.proto {
            Proto::Tcp => RuleProto::Tcp,
            Proto::Udp => RuleProto::Udp,
            Proto::Icmp => RuleProto::Icmp,
        };
        let allowed = self.egress_allowed(proto, key.remote, now);
        if !allowed {
            self.denials.remember(key, now);
        }
        allowed
    }

    /// Whether the policy lets the sandbox open `proto` to `remote` (always, without one).
    pub(super) fn egress_allowed(
        &mut self,
        proto: RuleProto,
        remote: SocketAddr,
        now: Instant,
    ) -> bool {
        let Some(policy) = &self.cfg.policy else {
            return true;
        };
        let allowed = Enforcer::lock(policy).flow(proto, remote, now).allowed();
        if !allowed {
            self.drops.denied += 1;
        }
        allowed
    }

    /// Answers a denied datagram or echo request (the IP packet in `frame`) with ICMP
    /// administratively prohibited from the gateway, within the rate limit.
    pub(super) fn deny_datagram(&mut self, frame: &[u8], meta: IpMeta, now: Instant) {
        self.unreachable(frame, meta, Unreachable::Prohibited, Limit::Denial, now);
    }

    /// Answers the IP packet in `frame` with ICMP destination unreachable (`why`) from the
    /// gateway, unless the rate limit it counts against (`limit`) is spent.
    pub(super) fn unreachable(
        &mut self,
        frame: &[u8],
        meta: IpMeta,
        why: Unreachable,
        limit: Limit,
        now: Instant,
    ) {
        if !self.denials.take(limit, now) {
            return;
        }
        let Some(l2) = self.egress.link() else {
            return;
        };
        let head = self.egress.headroom();
        let from = self.cfg.addr.gateway_for(meta.src);
        let original = frame.get(ETH_LEN..).unwrap_or_default();
        let write = match why {
            Unreachable::Prohibited => crate::wire::prohibited::admin_prohibited,
            Unreachable::Port => crate::wire::prohibited::port_unreachable,
        };
        let mut buf = std::mem::take(&mut self.denials.buf);
        let built = buf
            .get_mut(head..)
            .map(|out| write(out, l2, from, meta.src, original));
        match built {
            Some(Ok(len)) => {
                if let Some(frame) = buf.get_mut(..head + len) {
                    self.egress.raw(frame);
                }
            }
            Some(Err(error)) => tracing::trace!(%error, "icmp unreachable not emitted"),
            None => {}
        }
        self.denials.buf = buf;
    }

    /// Carries out a runtime policy request; a change re-checks every flow the sandbox
    /// opened and closes those now denied.
    pub(super) fn egress_command(
        &mut self,
        req: EgressRequest,
        now: Instant,
    ) -> Result<EgressReply, EgressError> {
        let policy = self.cfg.policy.clone().ok_or(EgressError::NoPolicy)?;
        let reply = {
            let mut e = Enforcer::lock(&policy);
            match req {
                EgressRequest::List => {
                    return Ok(EgressReply::Listing {
                        default: e.policy().default_action(),
                        rules: e.policy().rules().to_vec(),
                        stats: e.stats(),
                        closed: 0,
                    })
                }
                EgressRequest::Add { rule, index } => {
                    let id = e.policy_mut().insert(index, rule);
                    tracing::info!(id, rule = %e.describe(crate::policy::By::Rule(id)), "egress rule added");
                    EgressReply::Added { id, closed: 0 }
                }
                EgressRequest::Remove(id) => {
                    let gone: Option<RuleEntry> =
                        e.policy().rules().iter().find(|r| r.id == id).cloned();
                    if !e.policy_mut().remove(id) {
                        return Err(EgressError::UnknownId(id));
                    }
                    tracing::info!(id, rule = ?gone.map(|g| g.rule.to_string()), "egress rule removed");
                    EgressReply::Removed { closed: 0 }
                }
            }
        };
        self.denials.forget_all();
        let closed = self.close_denied(&policy, now);
        Ok(match reply {
            EgressReply::Added { id, .. } => EgressReply::Added { id, closed },
            EgressReply::Removed { .. } => EgressReply::Removed { closed },
            other => other,
        })
    }

    /// Closes every flow the sandbox opened that the policy now denies; how many.
    fn close_denied(&mut self, policy: &crate::policy::Shared, now: Instant) -> usize {
        self.scan.clear();
        self.scan.extend(self.flows.occupied());
        let scan = std::mem::take(&mut self.scan);
        let mut closed = 0;
        for &slot in &scan {
            let Some(key) = self.flows.key(slot) else {
                continue;
            };
            let outbound_tcp = self.outbound_tcp(slot);
            let proto = match (key.proto, self.flows.get_mut(slot)) {
                (Proto::Tcp, Some(Flow::Tcp(..))) if outbound_tcp => RuleProto::Tcp,
                (Proto::Udp, Some(Flow::Udp(_))) => RuleProto::Udp,
                (Proto::Icmp, Some(Flow::Ping(_))) => RuleProto::Icmp,
                _ => continue,
            };
            if Enforcer::lock(policy).recheck(proto, key.remote, now) {
                continue;
            }
            if let Some(Flow::Tcp(flow, host)) = self.flows.get_mut(slot) {
                flow.reset(host, &mut self.egress);
            }
            self.flows.remove(slot);
            closed += 1;
        }
        self.scan = scan;
        closed
    }

    /// Whether the TCP flow in `slot` was opened by the sandbox (not by a forward).
    fn outbound_tcp(&self, slot: usize) -> bool {
        self.outbound.get(slot).copied().unwrap_or(false)
    }

    /// Marks the TCP flow in `slot` as opened by the sandbox (`true`) or a forward.
    pub(super) fn mark_outbound(&mut self, slot: usize, outbound: bool) {
        if let Some(o) = self.outbound.get_mut(slot) {
            *o = outbound;
        }
    }

    /// Forgets expired DNS answers, at most once per `PURGE_INTERVAL`, when the loop runs its
    /// timers anyway (lookups ignore expired answers already; this only bounds memory).
    pub(super) fn policy_timer(&mut self, now: Instant) {
        let Some(policy) = &self.cfg.policy else {
            return;
        };
        if self.policy_purge_at.is_some_and(|t| t > now) {
            return;
        }
        Enforcer::lock(policy).purge(now);
        self.policy_purge_at = Some(now + PURGE_INTERVAL);
    }
}
