//! The egress policy's two questions to DNS, shared by the UDP forwarder and the TCP relay:
//! may this query go upstream (else it is answered REFUSED), and which addresses does this
//! answer open. Called once per query and once per relayed answer, only when a policy is in
//! force; the answer's addresses are learnt before the answer is passed on, so the sandbox
//! can never connect to an address ahead of the policy knowing it.
//!
//! REFUSED, not NXDOMAIN: REFUSED says what happened (RFC 1035: "refuses to perform the
//! specified operation for policy reasons") and is not cached as proof that the name does not
//! exist, so allowing the name at run time (API socket) works at once; resolvers report it as a
//! failure of the lookup (glibc: EAI_AGAIN after trying the other nameservers, which are also
//! ours), fast, with no timeout.

use std::sync::Arc;
use std::time::Instant;

use super::answer::{addresses, question_name};
use super::message::{Packet, MAX_NAME_LEN};
use crate::policy::{Enforcer, Shared};

/// Whether the query in `packet` may go upstream.
pub fn allow_query<T: AsRef<[u8]>>(policy: &Shared, packet: &Packet<T>) -> bool {
    let mut e = Enforcer::lock(policy);
    if !e.watches_dns() {
        return true;
    }
    let mut buf = [0; MAX_NAME_LEN];
    e.query(question_name(packet, &mut buf))
}

/// Opens the addresses of `answer`'s A/AAAA records for the rules of its question's name.
pub fn learn<T: AsRef<[u8]>>(policy: &Shared, answer: &Packet<T>, now: Instant) {
    let mut e = Enforcer::lock(policy);
    if !e.policy().has_names() {
        return;
    }
    let mut buf = [0; MAX_NAME_LEN];
    let Some(name) = question_name(answer, &mut buf) else {
        return;
    };
    let name: Arc<str> = Arc::from(name);
    for (ip, ttl) in addresses(answer) {
        e.answer(&name, ip, ttl, now);
    }
}
