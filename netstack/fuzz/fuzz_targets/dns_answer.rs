//! Fuzz target for `dns::answer`, what the egress policy reads from DNS messages (upstream
//! answers pass through it, and so do the sandbox's queries): the question's name and the
//! A/AAAA records of the answer section. Neither may panic; a name is lowercase text of at
//! most 255 bytes in the characters a rule can name; the records never outnumber ANCOUNT; and
//! feeding them to a policy enforcer (as `dns::gate::learn` does) never panics either.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use netstack::dns::answer;
use netstack::dns::message::{Packet, MAX_NAME_LEN};
use netstack::policy::{Action, Enforcer, Policy, Proto, Rule, TtlBounds};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::new_checked(data) else {
        return;
    };
    let mut buf = [0u8; MAX_NAME_LEN];
    let name = answer::question_name(&packet, &mut buf).map(str::to_owned);
    if let Some(name) = &name {
        assert!(name.len() <= MAX_NAME_LEN);
        let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b);
        assert!(name.bytes().all(allowed), "{name:?}");
    }
    let records: Vec<(IpAddr, u32)> = answer::addresses(&packet).collect();
    assert!(records.len() <= usize::from(packet.ancount()));

    let rule = Rule::parse(Action::Allow, "*.example").expect("a valid rule");
    let mut enforcer = Enforcer::new(
        Policy::new(vec![rule], Action::Deny),
        TtlBounds::default(),
        None,
    );
    let now = Instant::now();
    let owner: Arc<str> = Arc::from(name.as_deref().unwrap_or("fuzz.example"));
    for &(ip, ttl) in &records {
        enforcer.answer(&owner, ip, ttl, now);
        let _ = enforcer.judge(Proto::Tcp, SocketAddr::new(ip, 443), now);
    }
    let later = now + Duration::from_secs(u64::from(u32::MAX));
    let far = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), 80);
    let _ = enforcer.judge(Proto::Udp, far, later);
});
