//! Fuzz target for the egress policy's parsers: `policy::file::parse` (a `--policy FILE`'s
//! text) and `policy::Rule::parse` (each `--allow`/`--deny` value, and the API socket's
//! `add_egress_rule`). Neither may panic; every rule that parses prints a canonical form that
//! parses back to the same rule, and a policy built from the rules can be judged against.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use netstack::policy::{file, Action, Enforcer, Policy, Proto, Rule, TtlBounds};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rule) = Rule::parse(Action::Deny, text) {
        let again = Rule::parse(Action::Deny, &rule.to_string());
        assert_eq!(again.as_ref(), Ok(&rule), "canonical form of {text:?}");
    }
    let Ok(parsed) = file::parse(text) else {
        return;
    };
    let policy = Policy::new(parsed.rules, parsed.default.unwrap_or(Action::Allow));
    let printed = policy.to_string();
    let reparsed = file::parse(&printed).expect("a printed policy parses");
    assert_eq!(reparsed.rules.len(), policy.rules().len());
    let mut e = Enforcer::new(policy, TtlBounds::default(), None);
    let now = Instant::now();
    let name = std::sync::Arc::from("fuzz.example");
    e.answer(&name, IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 30, now);
    let dst = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 443);
    let _ = e.judge(Proto::Tcp, dst, now + Duration::from_secs(1));
    let _ = e.query(Some("fuzz.example"));
});
