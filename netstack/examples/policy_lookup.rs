//! Micro-benchmark of the egress policy's per-flow check (issue 12, item 7): builds a policy
//! of 100,000 rules (IPv4 and IPv6 blocks at every prefix length, port ranges, protocols,
//! names and wildcards, with answers learnt for some names) and times `Enforcer::judge`, the
//! check each new flow pays, for destinations that match early, late and not at all; and
//! `Policy::query`, the check each DNS query pays. Prints one line per case.
//! Run: `cargo run --release -p netstack --example policy_lookup [RULES]`.
//! A bench binary, not a test: timings depend on the machine and are read, not asserted.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netstack::policy::{Action, Enforcer, Policy, Proto, Rule, TtlBounds};

/// Lookups per case.
const LOOKUPS: u32 = 1_000_000;

fn rule_text(i: u32) -> String {
    match i % 5 {
        0 => {
            let len = 8 + (i % 25) as u8;
            let addr = u32::from(Ipv4Addr::new(198, 18, 0, 0)).wrapping_add(i << 8);
            let net = Ipv4Addr::from(addr & (u32::MAX << (32 - len)));
            format!("{net}/{len}")
        }
        1 => {
            let len = 16 + (i % 113) as u8;
            let addr = (0x2001_0db8u128 << 96) | (u128::from(i) << 40);
            let net = Ipv6Addr::from(addr & (u128::MAX << (128 - u32::from(len))));
            format!("tcp:[{net}/{len}]:{}", 1 + i % 65000)
        }
        2 => format!(
            "udp:198.19.{}.{}:{}-{}",
            (i >> 8) % 256,
            i % 256,
            1000 + i % 5000,
            7000 + i % 5000
        ),
        3 => format!("tcp:host{i}.bench.example:443"),
        _ => format!("*.zone{i}.example"),
    }
}

fn build(rules: u32) -> (Enforcer, Duration) {
    let mut list: Vec<Rule> = (0..rules)
        .map(|i| Rule::parse(Action::Deny, &rule_text(i)).expect("generated rules parse"))
        .collect();
    list.push(Rule::parse(Action::Allow, "tcp:10.0.2.2").expect("literal rule"));
    let start = Instant::now();
    let policy = Policy::new(list, Action::Deny);
    let built = start.elapsed();
    let mut e = Enforcer::new(policy, TtlBounds::default(), None);
    let now = Instant::now();
    for i in (3..rules).step_by(5).take(1000) {
        let name: Arc<str> = Arc::from(format!("host{i}.bench.example"));
        let ip = IpAddr::V4(Ipv4Addr::from(0xc633_6400 | (i % 256)));
        e.answer(&name, ip, 300, now);
    }
    (e, built)
}

fn time(label: &str, mut f: impl FnMut(u32) -> bool) {
    let start = Instant::now();
    let mut allowed = 0u32;
    for i in 0..LOOKUPS {
        allowed += u32::from(black_box(f(i)));
    }
    let per = start.elapsed().as_nanos() as f64 / f64::from(LOOKUPS);
    println!("{label:<44} {per:>8.1} ns/lookup  ({allowed} allowed)");
}

fn main() {
    let rules: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let (e, built) = build(rules);
    println!("{rules} rules compiled in {built:?}");
    let now = Instant::now();
    let gw = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2)), 8000);
    time("tcp to the gateway (last rule allows)", |_| {
        e.judge(Proto::Tcp, black_box(gw), now).allowed()
    });
    time("udp, IPv4, matches nothing (default)", |i| {
        let dst = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0808_0000 | i)), 53);
        e.judge(Proto::Udp, dst, now).allowed()
    });
    time("tcp, IPv4, inside many blocks", |i| {
        let dst = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0xc612_0000 | (i & 0xffff))), 443);
        e.judge(Proto::Tcp, dst, now).allowed()
    });
    time("tcp, IPv6, inside many blocks", |i| {
        let dst = SocketAddr::new(
            IpAddr::V6(Ipv6Addr::from(
                (0x2001_0db8u128 << 96) | u128::from(i) << 40,
            )),
            443,
        );
        e.judge(Proto::Tcp, dst, now).allowed()
    });
    time("tcp to a learnt address (name rule)", |i| {
        let dst = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0xc633_6400 | (i % 256))), 443);
        e.judge(Proto::Tcp, dst, now).allowed()
    });
    let names: Vec<String> = (0..1000)
        .map(|i| format!("a.b.host{i}.zone{}.example", i * 5 + 4))
        .collect();
    time("dns query, wildcard suffix walk", |i| {
        e.policy().query(&names[(i % 1000) as usize]).allowed()
    });
}
