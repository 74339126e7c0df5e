//! Exhaustion is loud: a new UDP datagram for which no flow or host socket can be made (the
//! flow table is full of TCP flows, or socket() fails with EMFILE, ENFILE or ENOBUFS) is
//! answered at once, never dropped in silence, so programs in the sandbox fail fast instead of
//! waiting for their timeouts (issue 14): a DNS query (to port 53, parsed as one) gets
//! SERVFAIL from the server it asked, anything else ICMP port unreachable from the gateway
//! (the sandbox's connected UDP socket then fails with ECONNREFUSED). Both within the loop's
//! one rate limit for ICMP errors (`policy::Denials`, 100 per second); each refusal is
//! counted in `DropStats::exhausted`. TCP needs nothing here: its SYN is answered RST.
//! Part of `event_loop`; the DNS forwarder at the DNS address has its own sockets, made at
//! start, and answers SERVFAIL itself when its pending table is full.

use super::dispatch::DNS_PORT;
use super::policy::Unreachable;
use super::*;

impl EventLoop {
    /// The UDP datagram in `frame` (ports `(sport, dport)`, `payload`) could not get a flow
    /// or a socket: SERVFAIL for a DNS query, else ICMP port unreachable, within the limit.
    pub(super) fn refuse_datagram(
        &mut self,
        frame: &[u8],
        meta: IpMeta,
        (sport, dport): (u16, u16),
        payload: &[u8],
        now: Instant,
    ) {
        self.drops.exhausted += 1;
        if dport == DNS_PORT {
            let client = SocketAddr::new(meta.src, sport);
            let server = SocketAddr::new(meta.dst, dport);
            if let Some(query) = crate::dns::parse_query(payload) {
                if self.denials.take(now) {
                    crate::dns::servfail_now(&mut self.egress, client, server, &query, payload);
                }
                return;
            }
        }
        self.unreachable(frame, meta, Unreachable::Port, now);
    }
}
