//! Fuzz target for `api::protocol`, the parser every request on the API socket goes through
//! (bytes from any local process that can connect): `parse` and `is_complete` must never
//! panic, whatever `parse` accepts must hold its promises (a complete JSON value, non-zero
//! ports, the sandbox's address of the host address's family, a positive id), and every reply
//! must encode as one JSON object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::api::protocol::{self, Reply, Request};
use netstack::config::Addressing;
use netstack::forward::ForwardEntry;

fuzz_target!(|data: &[u8]| {
    let addr = Addressing::default();
    let complete = protocol::is_complete(data);
    let reply = match protocol::parse(data, &addr) {
        Ok(request) => {
            assert!(complete, "a request that parses is a complete JSON value");
            match request {
                Request::AddHostfwd(spec) => {
                    assert_ne!(spec.host.port(), 0);
                    assert_ne!(spec.guest.port(), 0);
                    assert_eq!(spec.guest.ip(), addr.sandbox_for(spec.host.ip()));
                    Reply::Entries(vec![ForwardEntry { id: 1, spec }])
                }
                Request::ListHostfwd => Reply::Added(1),
                Request::RemoveHostfwd(id) | Request::RemoveEgressRule(id) => {
                    assert_ne!(id, 0);
                    Reply::Removed
                }
                Request::ListEgress => Reply::Added(1),
                Request::AddEgressRule { rule, .. } => {
                    // A rule's canonical text parses back to the same rule.
                    let again = netstack::policy::Rule::parse(rule.action, &rule.to_string());
                    assert_eq!(again.as_ref(), Ok(&rule));
                    Reply::Added(1)
                }
            }
        }
        Err(error) => {
            assert!(error.desc().starts_with("bad request: "));
            Reply::Failed(error)
        }
    };
    let json = reply.to_json();
    assert_eq!(json.first(), Some(&b'{'));
    assert_eq!(json.last(), Some(&b'}'));
});
