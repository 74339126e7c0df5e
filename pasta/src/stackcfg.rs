//! The stack's configuration for pasta's addressing. The namespace carries the host's
//! addresses, so the stack's own `Addressing` (slirp4netns's gateway, DNS and sandbox hosts)
//! is moved out of the way onto `HIDDEN_V4` / `HIDDEN_V6`, and pasta's addresses are added as
//! aliases (netstack `alias`):
//! - `--map-gw` (pasta's default, podman passes `--no-map-gw`): each gateway of the plan
//!   reaches the host's loopback; `--map-host-loopback ADDR` likewise; without either, host
//!   loopback is off, and the gateway is reached as itself;
//! - `--dns-forward ADDR`: the DNS forwarder (UDP and TCP), relaying to `--dns-host` or the
//!   host's resolv.conf nameservers;
//! - `--map-guest-addr ADDR`: the host's own address of that family.
//!
//! Called by `run` before anything forks; pure but for reading resolv.conf.

use std::net::{IpAddr, SocketAddr};

use netstack::alias::{AliasTo, Aliases};
use netstack::config::Addressing;
use netstack::StackConfig;

use crate::cli::Options;
use crate::plan::Plan;

/// Where the stack's slirp4netns-style addresses go: link-local, never a host's address, and
/// outside both 169.254.1.0/24 (podman's `--dns-forward` and `--map-guest-addr`) and
/// 169.254.169.254 (cloud metadata), which stay reachable.
pub const HIDDEN_V4: &str = "169.254.0.0/25";
/// The IPv6 one: link-local addresses are never routed off-link anyway.
pub const HIDDEN_V6: &str = "fe80::/64";
/// DNS port (RFC 1035).
const DNS_PORT: u16 = 53;

/// Why the configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum StackCfgError {
    /// Too many aliases.
    #[error("too many --dns-forward, --map-guest-addr, --map-host-loopback and gateway addresses")]
    Aliases(#[from] netstack::alias::AliasError),
    /// A hidden network constant is wrong (a bug).
    #[error("internal addressing")]
    Hidden(#[from] netstack::config::AddressingError),
}

/// The stack's configuration for `o` and `plan`.
pub fn stack_config(o: &Options, plan: &Plan) -> Result<StackConfig, StackCfgError> {
    let mut aliases = Aliases::default();
    if o.map_gw {
        for g in plan.gateways() {
            aliases.add(g, AliasTo::Gateway)?;
        }
    }
    for &a in &o.map_host_loopback {
        aliases.add(a, AliasTo::Gateway)?;
    }
    for &a in &o.dns_forward {
        aliases.add(a, AliasTo::Dns)?;
    }
    for &a in &o.map_guest_addr {
        match plan.host_addrs[usize::from(a.is_ipv6())] {
            Some(host) => aliases.add(a, AliasTo::Host(host))?,
            None => {
                tracing::warn!(addr = %a, "--map-guest-addr: the host has no address of that family")
            }
        }
    }
    let addr = Addressing::default()
        .with_cidr_v4(HIDDEN_V4)?
        .with_cidr_v6(HIDDEN_V6)?
        // Once per process: the stack reads them for as long as it runs.
        .with_aliases(Box::leak(Box::new(aliases)));
    let dns_upstreams = match o.dns_host.is_empty() {
        true => netstack::config::host_resolvers(),
        false => o
            .dns_host
            .iter()
            .map(|&a| SocketAddr::new(a, DNS_PORT))
            .collect(),
    };
    let outbound = |v6: bool| o.outbound.iter().copied().find(|a| a.is_ipv6() == v6);
    Ok(StackConfig {
        mtu: o.mtu,
        addr,
        host_loopback: o.map_gw || !o.map_host_loopback.is_empty(),
        dns: !o.dns_forward.is_empty(),
        dns_upstreams,
        outbound_v4: match outbound(false) {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        },
        outbound_v6: match outbound(true) {
            Some(IpAddr::V6(a)) => Some(a),
            _ => None,
        },
        router_advertisements: false,
        dhcp_server: false,
        ..StackConfig::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::options;
    use crate::hostnet::{HostAddr, HostRoute, Template};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn config(extra: &[&str]) -> StackConfig {
        let o = options(extra);
        let t = Template {
            ifname: "ext0".into(),
            addrs: vec![HostAddr {
                addr: ip("192.0.2.1"),
                prefix: 24,
            }],
            routes: vec![HostRoute {
                dst: ip("0.0.0.0"),
                prefix: 0,
                gateway: ip("192.0.2.254"),
                metric: 0,
            }],
        };
        let plan = Plan::new(&o, Some(&t), None).unwrap();
        stack_config(&o, &plan).unwrap()
    }

    #[test]
    fn podmans_options_give_dns_and_the_host_but_not_its_loopback() {
        let c = config(&[
            "--dns-forward",
            "169.254.1.1",
            "--no-map-gw",
            "--map-guest-addr",
            "169.254.1.2",
        ]);
        assert!(!c.host_loopback && c.dns);
        assert!(c.addr.is_dns(ip("169.254.1.1")));
        assert!(!c.addr.is_gateway(ip("192.0.2.254")));
        assert_eq!(c.addr.host_alias(ip("169.254.1.2")), Some(ip("192.0.2.1")));
        assert_eq!(c.addr.host_face_for(ip("192.0.2.1")), ip("169.254.1.2"));
        assert!(!c.dhcp_server && !c.router_advertisements);
    }

    #[test]
    fn map_gw_makes_the_gateway_the_hosts_loopback() {
        let c = config(&["--map-gw"]);
        assert!(c.host_loopback && !c.dns);
        assert!(c.addr.is_gateway(ip("192.0.2.254")));
        let c = config(&[
            "--no-map-gw",
            "--map-host-loopback",
            "169.254.1.3",
            "--dns-host",
            "127.0.0.9",
        ]);
        assert!(c.host_loopback);
        assert!(c.addr.is_gateway(ip("169.254.1.3")));
        assert_eq!(c.dns_upstreams, ["127.0.0.9:53".parse().unwrap()]);
    }
}
