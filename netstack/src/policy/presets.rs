//! The presets `--no-lan` and `--no-host` as plain rule lists, so `--print-policy` shows them
//! and they obey first-match like any rule. The launcher appends them after the user's own
//! `--allow`/`--deny` rules, so a user rule can open a hole (`--allow 192.168.1.5:22`).
//! Pure: the host's own addresses are read by the caller (`hostaddr::all_addrs`) and passed in.
//!
//! `--no-lan`: allow the gateway (only when host loopback is on; the gateway is the host's
//! loopback), then deny the private (RFC 1918), shared/CGNAT (RFC 6598), link-local
//! (RFC 3927, RFC 4291), unique-local (RFC 4193) and multicast blocks, the cloud metadata
//! addresses (169.254.169.254 and AWS's fd00:ec2::254, named even though the link-local and
//! unique-local blocks hold them, so the list says what it protects), and the host's own
//! addresses. `--no-host`: deny the host's own addresses (the launcher also turns host
//! loopback off).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::rule::{Action, Cidr, Ports, Protos, Rule, Target};

/// Cloud metadata service, IPv4 (AWS, GCP, Azure, OpenStack).
pub const METADATA_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// AWS's IPv6 metadata service.
pub const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// The blocks `--no-lan` denies, with their prefix lengths.
const LAN_BLOCKS: [(IpAddr, u8); 11] = [
    (IpAddr::V4(METADATA_V4), 32),
    (IpAddr::V6(METADATA_V6), 128),
    (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8),
    (IpAddr::V4(Ipv4Addr::new(172, 16, 0, 0)), 12),
    (IpAddr::V4(Ipv4Addr::new(192, 168, 0, 0)), 16),
    (IpAddr::V4(Ipv4Addr::new(100, 64, 0, 0)), 10),
    (IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)), 16),
    (IpAddr::V4(Ipv4Addr::new(224, 0, 0, 0)), 4),
    (IpAddr::V6(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0)), 7),
    (IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 10),
    (IpAddr::V6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0)), 8),
];

/// A rule for every protocol and port of `addr/len`.
fn whole(action: Action, addr: IpAddr, len: u8) -> Rule {
    Rule {
        action,
        protos: Protos::ALL,
        target: Target::Net(Cidr { addr, len }),
        ports: Ports::ANY,
    }
}

/// `--no-lan`'s rules; `gateways` are the sandbox's gateway addresses when host loopback is
/// on (empty when off), `host` the host's own addresses.
pub fn no_lan(gateways: &[IpAddr], host: &[IpAddr]) -> Vec<Rule> {
    let mut rules: Vec<Rule> = gateways
        .iter()
        .map(|&g| whole(Action::Allow, g, Cidr::host(g).len))
        .collect();
    rules.extend(LAN_BLOCKS.iter().map(|&(a, l)| whole(Action::Deny, a, l)));
    rules.extend(no_host(host));
    rules
}

/// `--no-host`'s rules: deny each of the host's own addresses (loopback ones are refused by
/// the NAT already and left out).
pub fn no_host(host: &[IpAddr]) -> Vec<Rule> {
    host.iter()
        .filter(|a| !a.is_loopback())
        .map(|&a| whole(Action::Deny, a, Cidr::host(a).len))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_lan_allows_the_gateway_first_and_names_every_block() {
        let gw: IpAddr = "10.0.2.2".parse().unwrap();
        let host: Vec<IpAddr> = vec!["192.0.2.10".parse().unwrap(), "127.0.0.1".parse().unwrap()];
        let rules = no_lan(&[gw], &host);
        let text: Vec<String> = rules
            .iter()
            .map(|r| format!("{} {r}", r.action.name()))
            .collect();
        assert_eq!(text[0], "allow 10.0.2.2/32");
        for want in [
            "deny 169.254.169.254/32",
            "deny fd00:ec2::254/128",
            "deny 10.0.0.0/8",
            "deny 172.16.0.0/12",
            "deny 192.168.0.0/16",
            "deny 100.64.0.0/10",
            "deny 169.254.0.0/16",
            "deny 224.0.0.0/4",
            "deny fc00::/7",
            "deny fe80::/10",
            "deny ff00::/8",
            "deny 192.0.2.10/32",
        ] {
            assert!(
                text.contains(&want.to_string()),
                "{want} missing from {text:?}"
            );
        }
        assert!(!text.iter().any(|t| t.contains("127.0.0.1")));
        assert!(!no_lan(&[], &host).iter().any(|r| r.action == Action::Allow));
    }
}
