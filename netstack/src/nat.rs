//! Address translation policy: where a destination the sandbox chose is reached on the host.
//! Called once per new flow by the flow table; pure functions of the config, no I/O.
//! `source_for` picks the address outbound sockets bind to (`--outbound-addr[6]`).
//!
//! - a host alias (`--map-guest-addr` of the pasta drop-in) is the host address it stands
//!   for, same port;
//! - the gateway (10.0.2.2 / fd00::2, and its aliases) is the host's loopback (127.0.0.1 / ::1), same port,
//!   unless host loopback is disabled;
//! - the DNS address (10.0.2.3 / fd00::3) port 53 is the first upstream resolver (TCP; UDP
//!   queries go to the `dns` forwarder instead), unless DNS is disabled;
//! - any other address inside the virtual networks (network, broadcast, every unused host),
//!   and loopback, multicast, broadcast, unspecified, 0.0.0.0/8, IPv4-mapped and
//!   IPv4-compatible IPv6 destinations are refused: nothing lives there, and the host must
//!   never send them on (a "real" 10.0.2.3, or the host's loopback by another spelling);
//! - everything else is reached as itself, from the host's own addresses (like slirp4netns).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::StackConfig;

/// DNS port (RFC 1035).
const DNS_PORT: u16 = 53;

/// Why a destination is not translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The gateway was addressed but host loopback is disabled.
    #[error("host loopback is disabled")]
    HostLoopbackDisabled,
    /// The DNS address was addressed on a port other than 53, or DNS is disabled.
    #[error("no DNS forwarding for this destination")]
    NoDns,
    /// Outbound traffic is disabled: only the gateway and DNS services are reachable.
    #[error("outbound traffic is disabled")]
    OutboundDisabled,
    /// An address inside the virtual network with nothing behind it, or a non-unicast one.
    #[error("destination not routable")]
    Unroutable,
}

/// The host address to connect or send to for `dst` as the sandbox addressed it.
pub fn host_target(cfg: &StackConfig, dst: SocketAddr) -> Result<SocketAddr, Refused> {
    let ip = dst.ip();
    if let Some(host) = cfg.addr.host_alias(ip) {
        return Ok(SocketAddr::new(host, dst.port()));
    }
    if cfg.addr.is_gateway(ip) {
        if !cfg.host_loopback {
            return Err(Refused::HostLoopbackDisabled);
        }
        let lo = match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        return Ok(SocketAddr::new(lo, dst.port()));
    }
    if cfg.addr.is_dns(ip) {
        return match cfg.dns_upstreams.first() {
            Some(&up) if cfg.dns && dst.port() == DNS_PORT => Ok(up),
            _ => Err(Refused::NoDns),
        };
    }
    if cfg.addr.contains(ip) || !is_global_unicast(ip) {
        return Err(Refused::Unroutable);
    }
    if !cfg.outbound {
        return Err(Refused::OutboundDisabled);
    }
    Ok(dst)
}

/// The host address outbound sockets toward `target` bind to (`--outbound-addr`,
/// `--outbound-addr6`), for every target of its family as slirp4netns does: Linux routes a
/// socket bound to any local address to the host's loopback too, so the gateway's flows also
/// come from that address.
pub fn source_for(cfg: &StackConfig, target: SocketAddr) -> Option<IpAddr> {
    match target.ip() {
        IpAddr::V4(_) => cfg.outbound_v4.map(IpAddr::V4),
        IpAddr::V6(_) => cfg.outbound_v6.map(IpAddr::V6),
    }
}

/// Whether the host may send to `ip` on the sandbox's behalf: not loopback, multicast,
/// broadcast, unspecified or "this network" (0.0.0.0/8, which Linux treats as local), and no
/// IPv6 spelling of an IPv4 address (::ffff:a.b.c.d and ::a.b.c.d reach the IPv4 host,
/// loopback included, and never belong on the wire: RFC 4291 2.5.5).
fn is_global_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_loopback()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_unspecified()
                || a.octets()[0] == 0)
        }
        IpAddr::V6(a) => {
            let embeds_v4 =
                a.segments()[..5] == [0; 5] && (a.segments()[5] == 0xffff || a.segments()[5] == 0);
            !(a.is_loopback() || a.is_multicast() || a.is_unspecified() || embeds_v4)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> StackConfig {
        StackConfig {
            dns_upstreams: vec!["127.0.0.53:53".parse().unwrap()],
            ..StackConfig::default()
        }
    }

    #[test]
    fn gateway_maps_to_host_loopback_same_port() {
        let t = host_target(&cfg(), "10.0.2.2:8000".parse().unwrap());
        assert_eq!(t, Ok("127.0.0.1:8000".parse().unwrap()));
        let t = host_target(&cfg(), "[fd00::2]:22".parse().unwrap());
        assert_eq!(t, Ok("[::1]:22".parse().unwrap()));
    }

    #[test]
    fn aliases_reach_the_host_loopback_the_dns_upstream_and_the_host_itself() {
        use crate::alias::{AliasTo, Aliases};
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut aliases = Aliases::default();
        aliases.add(ip("192.0.2.254"), AliasTo::Gateway).unwrap();
        aliases.add(ip("169.254.1.1"), AliasTo::Dns).unwrap();
        aliases
            .add(ip("169.254.1.2"), AliasTo::Host(ip("192.0.2.1")))
            .unwrap();
        let mut c = cfg();
        c.addr = c.addr.with_aliases(Box::leak(Box::new(aliases)));
        let t = |d: &str| host_target(&c, d.parse().unwrap());
        assert_eq!(t("192.0.2.254:80"), Ok("127.0.0.1:80".parse().unwrap()));
        assert_eq!(t("169.254.1.1:53"), Ok("127.0.0.53:53".parse().unwrap()));
        assert_eq!(t("169.254.1.1:80"), Err(Refused::NoDns));
        assert_eq!(t("169.254.1.2:8080"), Ok("192.0.2.1:8080".parse().unwrap()));
        assert_eq!(t("192.0.2.253:80"), Ok("192.0.2.253:80".parse().unwrap()));
        c.host_loopback = false;
        let t = host_target(&c, "192.0.2.254:80".parse().unwrap());
        assert_eq!(t, Err(Refused::HostLoopbackDisabled));
    }

    #[test]
    fn gateway_refused_when_host_loopback_disabled() {
        let c = StackConfig {
            host_loopback: false,
            ..cfg()
        };
        let t = host_target(&c, "10.0.2.2:8000".parse().unwrap());
        assert_eq!(t, Err(Refused::HostLoopbackDisabled));
    }

    #[test]
    fn dns_address_port_53_goes_to_upstream_only() {
        let t = host_target(&cfg(), "10.0.2.3:53".parse().unwrap());
        assert_eq!(t, Ok("127.0.0.53:53".parse().unwrap()));
        let t = host_target(&cfg(), "10.0.2.3:80".parse().unwrap());
        assert_eq!(t, Err(Refused::NoDns));
    }

    #[test]
    fn outbound_source_applies_to_every_target_of_its_family() {
        let c = StackConfig {
            outbound_v4: Some(Ipv4Addr::new(192, 0, 2, 1)),
            ..cfg()
        };
        let out = "198.51.100.1:80".parse().unwrap();
        assert_eq!(source_for(&c, out), Some("192.0.2.1".parse().unwrap()));
        let lo = "127.0.0.1:80".parse().unwrap();
        assert_eq!(source_for(&c, lo), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(source_for(&c, "[2001:db8::1]:80".parse().unwrap()), None);
    }

    #[test]
    fn dns_address_is_refused_when_dns_is_disabled() {
        let c = StackConfig {
            dns: false,
            ..cfg()
        };
        let t = host_target(&c, "10.0.2.3:53".parse().unwrap());
        assert_eq!(t, Err(Refused::NoDns));
        let none = StackConfig {
            dns_upstreams: Vec::new(),
            ..cfg()
        };
        assert_eq!(
            host_target(&none, "[fd00::3]:53".parse().unwrap()),
            Err(Refused::NoDns)
        );
    }

    #[test]
    fn other_virtual_and_special_addresses_are_refused() {
        for d in [
            "10.0.2.77:80",
            "10.0.2.0:80",
            "10.0.2.255:80",
            "127.0.0.1:80",
            "127.1.2.3:80",
            "0.0.0.0:80",
            "0.1.2.3:80",
            "224.0.0.1:5353",
            "255.255.255.255:67",
            "[fd00::9]:80",
            "[::1]:80",
            "[::]:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:198.51.100.1]:80",
            "[::127.0.0.1]:80",
            "[ff02::1]:80",
        ] {
            assert_eq!(
                host_target(&cfg(), d.parse().unwrap()),
                Err(Refused::Unroutable),
                "{d}"
            );
        }
    }

    #[test]
    fn outside_addresses_are_reached_as_themselves() {
        let d: SocketAddr = "198.51.100.1:7".parse().unwrap();
        assert_eq!(host_target(&cfg(), d), Ok(d));
        let closed = StackConfig {
            outbound: false,
            ..cfg()
        };
        assert_eq!(host_target(&closed, d), Err(Refused::OutboundDisabled));
        let gw = "10.0.2.2:80".parse().unwrap();
        assert!(
            host_target(&closed, gw).is_ok(),
            "the gateway stays reachable"
        );
    }
}
