//! What the loop counted over a run (drops, refusals, the DNS forwarder's and relay's and the
//! DHCP server's figures),
//! logged once when the stack stops, at debug level (`RUST_LOG=netstack=debug`). Part of
//! `event_loop`; reads counters, changes nothing.

use super::*;

impl EventLoop {
    /// What was dropped or refused over the run, at debug level (RUST_LOG=netstack=debug).
    pub(super) fn log_counters(&self) {
        let d = self.drops;
        let e = self.egress.stats;
        tracing::debug!(
            malformed = d.malformed,
            refused = d.refused,
            table_full = d.table_full,
            forward_refused = d.forward_refused,
            egress_denied = d.denied,
            exhausted = d.exhausted,
            over_budget = d.over_budget,
            half_open = self.flows.half_open_count(),
            half_open_evicted = self.flows.stats.half_open_evicted,
            half_open_expired = self.flows.stats.half_open_expired,
            datagram_evicted = self.flows.stats.datagram_evicted,
            icmp_limited = self.denials.bucket.refused,
            refusals_limited = self.denials.refusals.refused,
            udp_over_destination_budget = self.new_udp.over_destination,
            udp_over_global_budget = self.new_udp.over_global,
            ping_over_destination_budget = self.new_ping.over_destination,
            ping_over_global_budget = self.new_ping.over_global,
            challenge_acks_limited = self.challenges.refused,
            no_link = e.no_link,
            too_big = e.too_big,
            sink_errors = e.sink_errors,
            "stack stopped"
        );
        if let Some(dns) = &self.dns {
            let s = dns.stats();
            tracing::debug!(
                queries = s.queries,
                answers = s.answers,
                servfail = s.servfail,
                malformed = s.malformed,
                dropped = s.dropped,
                timeouts = s.timeouts,
                policy_refused = s.refused,
                "dns forwarder"
            );
        }
        if let Some(relay) = &self.dns_tcp {
            let s = relay.stats();
            let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(
                queries = n(&s.queries),
                answers = n(&s.answers),
                servfail = n(&s.servfail),
                malformed = n(&s.malformed),
                refused = n(&s.refused),
                policy_refused = n(&s.policy_refused),
                "dns over tcp"
            );
        }
        if let Some(dhcp) = &self.dhcp {
            let s = dhcp.stats();
            tracing::debug!(
                offers = s.offers,
                acks = s.acks,
                naks = s.naks,
                released = s.released,
                pool_full = s.pool_full,
                malformed = s.malformed,
                ignored = s.ignored,
                "dhcp server"
            );
        }
    }
}
