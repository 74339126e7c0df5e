//! A new datagram that gets no flow is answered, never dropped in silence, so programs in the
//! sandbox fail fast instead of waiting for their timeouts (issue 14). It gets none when no
//! flow or host socket can be made for it (the flow table is full of TCP flows, or socket()
//! fails with EMFILE, ENFILE or ENOBUFS), counted in `DropStats::exhausted`, or when it is
//! over the new-flow budget (`bucket::NewFlows`), counted in `DropStats::over_budget`. A UDP
//! datagram then gets, from the server it asked, SERVFAIL if it is a DNS query (to port 53,
//! parsed as one), else ICMP port unreachable from the gateway (the sandbox's connected UDP
//! socket then fails with ECONNREFUSED); an echo request over budget gets ICMP
//! administratively prohibited (RFC 1812 5.2.7.1: a refusal by policy; it has no port to be
//! unreachable, and "host unreachable" would claim a routing failure). All within the loop's
//! rate limit for these answers (`policy::REFUSALS_PER_SEC`, 5,000 a second, apart from the
//! policy denials' 100), and those over budget also within their destination's and their
//! source's shares (`bucket`), so a flood from one source or at one destination cannot take
//! every answer.
//! TCP needs nothing here: its SYN is answered RST.
//! Part of `event_loop`; the DNS forwarder at the DNS address has its own sockets, made at
//! start, and answers SERVFAIL itself when its pending table is full.

use super::dispatch::DNS_PORT;
use super::policy::{Limit, Unreachable};
use super::*;

/// Why a new datagram gets no flow: which counter it goes to, and whether it may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NoFlow {
    /// No flow slot or host socket for it (`DropStats::exhausted`): always answered.
    Exhausted,
    /// Over the new-flow budget (`DropStats::over_budget`): answered if `answer`, which its
    /// destination's share of the answers decides.
    OverBudget {
        /// Whether its destination may still be answered.
        answer: bool,
    },
}

impl EventLoop {
    /// The UDP datagram in `frame` (ports `(sport, dport)`, `payload`) gets no flow (`why`):
    /// SERVFAIL for a DNS query, else ICMP port unreachable, within the limits.
    pub(super) fn refuse_datagram(
        &mut self,
        frame: &[u8],
        meta: IpMeta,
        (sport, dport): (u16, u16),
        payload: &[u8],
        why: NoFlow,
        now: Instant,
    ) {
        if !self.count_refusal(why) {
            return;
        }
        if dport == DNS_PORT {
            let client = SocketAddr::new(meta.src, sport);
            let server = SocketAddr::new(meta.dst, dport);
            if let Some(query) = crate::dns::parse_query(payload) {
                if self.denials.take(Limit::Refusal, now) {
                    crate::dns::servfail_now(&mut self.egress, client, server, &query, payload);
                }
                return;
            }
        }
        self.unreachable(frame, meta, Unreachable::Port, Limit::Refusal, now);
    }

    /// The echo request in `frame` is over the new-flow budget: ICMP administratively
    /// prohibited if `answer`, within the loop's limit for such answers.
    pub(super) fn refuse_echo(&mut self, frame: &[u8], meta: IpMeta, answer: bool, now: Instant) {
        if self.count_refusal(NoFlow::OverBudget { answer }) {
            self.unreachable(frame, meta, Unreachable::Prohibited, Limit::Refusal, now);
        }
    }

    /// Counts a refusal; whether it may be answered.
    fn count_refusal(&mut self, why: NoFlow) -> bool {
        match why {
            NoFlow::Exhausted => {
                self.drops.exhausted += 1;
                true
            }
            NoFlow::OverBudget { answer } => {
                self.drops.over_budget += 1;
                answer
            }
        }
    }
}
