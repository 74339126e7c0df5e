//! Fuzz target for the launcher's `--publish` grammar (`forward::publish`, moved into netstack
//! so it can be fuzzed): each line of the input is one value. `parse` must never panic; a
//! rule that parses prints (in the canonical form below) to text that parses back to itself;
//! its expansion has one forward per port and family, with non-zero ports, the right protocol
//! and the sandbox's address of the host address's family; and `expand_all` over all lines
//! never returns two forwards that claim the same protocol, family, port and address.
#![no_main]

use std::collections::HashSet;
use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use netstack::config::Addressing;
use netstack::forward::publish::{self, Rule};
use netstack::forward::Transport;

/// The rule as a `--publish` value.
fn canonical(r: &Rule) -> String {
    let host = match r.host_ip {
        None => String::new(),
        Some(IpAddr::V4(ip)) => format!("{ip}:"),
        Some(IpAddr::V6(ip)) => format!("[{ip}]:"),
    };
    let proto = match r.proto {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    };
    let (h, s) = (r.host, r.sandbox);
    format!("{host}{}-{}:{}-{}/{proto}", h.start, h.end, s.start, s.end)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let addr = Addressing::default();
    let lines: Vec<String> = text.lines().take(16).map(str::to_owned).collect();
    for line in &lines {
        let Ok(rule) = publish::parse(line) else {
            continue;
        };
        assert_eq!(publish::parse(&canonical(&rule)), Ok(rule), "{line:?}");
        let ports = u32::from(rule.host.end - rule.host.start) + 1;
        assert_eq!(ports, u32::from(rule.sandbox.end - rule.sandbox.start) + 1);
        for ipv6 in [false, true] {
            let Ok(specs) = rule.expand(&addr, ipv6) else {
                assert!(!ipv6 && rule.host_ip.is_some_and(|ip| ip.is_ipv6()));
                continue;
            };
            let families = match rule.host_ip {
                None if ipv6 => 2,
                _ => 1,
            };
            assert_eq!(specs.len() as u32, ports * families);
            for spec in specs {
                assert_eq!(spec.proto, rule.proto);
                assert_ne!(spec.host.port(), 0);
                assert_ne!(spec.guest.port(), 0);
                assert_eq!(spec.guest.ip(), addr.sandbox_for(spec.host.ip()));
            }
        }
    }
    if let Ok(all) = publish::expand_all(&lines, &addr, true) {
        let mut claimed = HashSet::new();
        let mut wildcard = HashSet::new();
        for spec in all.iter().flat_map(|p| &p.specs) {
            let (ip, port) = (spec.host.ip(), spec.host.port());
            let key = (spec.proto, ip.is_ipv6(), port);
            assert!(claimed.insert((key, ip)), "{spec:?} claimed twice");
            if ip.is_unspecified() {
                assert!(wildcard.insert(key), "{spec:?}: a second wildcard");
            }
        }
        for (key, ip) in &claimed {
            assert!(
                ip.is_unspecified() || !wildcard.contains(key),
                "{ip} under a wildcard"
            );
        }
    }
});
