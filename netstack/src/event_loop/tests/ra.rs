//! Router advertisements wired into the loop: with `router_advertisements` a router
//! solicitation from the sandbox is answered with an advertisement, and the next unsolicited
//! one is armed as a timer; without it the solicitation goes to the control plane, which
//! answers nothing. The messages themselves are checked in `crate::ra`'s tests.

use smoltcp::wire::{Icmpv6Message, Icmpv6Packet, Ipv6Packet};

use super::*;

/// Turns the loop a few times; returns every ICMPv6 message type the sandbox received.
fn icmpv6_types_after(rig: &mut Rig, frame: &[u8]) -> Vec<Icmpv6Message> {
    nix::unistd::write(&rig.sandbox, frame).expect("write to fake tap");
    let mut types = Vec::new();
    let mut buf = [0u8; 2048];
    for _ in 0..5 {
        rig.turn();
        while let Ok(n) = nix::unistd::read(&rig.sandbox, &mut buf) {
            let Some(ip) = buf.get(14..n).and_then(|b| Ipv6Packet::new_checked(b).ok()) else {
                continue;
            };
            if let Ok(icmp) = Icmpv6Packet::new_checked(ip.payload()) {
                types.push(icmp.msg_type());
            }
        }
    }
    types
}

fn rig(router_advertisements: bool) -> Rig {
    Rig::with(
        StackConfig {
            mtu: MTU,
            router_advertisements,
            ..StackConfig::default()
        },
        None,
    )
}

#[test]
fn router_solicitation_is_answered_when_advertising() {
    let mut r = rig(true);
    let armed =
        r.lp.next_timer
            .expect("the first unsolicited advertisement is armed");
    assert!(armed > Instant::now() + crate::ra::INTERVAL - Duration::from_secs(5));
    let types = icmpv6_types_after(&mut r, &crate::ra::tests::rs());
    assert_eq!(types, [Icmpv6Message::RouterAdvert]);
}

#[test]
fn router_solicitation_gets_nothing_without_advertising() {
    let mut r = rig(false);
    assert_eq!(r.lp.next_timer, None);
    let types = icmpv6_types_after(&mut r, &crate::ra::tests::rs());
    assert_eq!(types, []);
}
