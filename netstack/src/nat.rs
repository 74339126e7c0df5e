//! Address translation policy: where a destination the sandbox chose is reached on the host.
//! Called once per new flow by the flow table; pure function of the config, no I/O.
//!
//! - the gateway (10.0.2.2 / fd00::2) is the host's loopback (127.0.0.1 / ::1), same port,
//!   unless host loopback is disabled;
//! - the DNS address (10.0.2.3 / fd00::3) port 53 is the configured upstream resolver;
//! - any other address inside the virtual networks, and loopback, multicast, broadcast or
//!   unspecified destinations are refused (nothing lives there);
//! - everything else is reached as itself, from the host's own addresses (like slirp4netns).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::{
    StackConfig, DNS_V4, DNS_V6, GATEWAY_V4, GATEWAY_V6, PREFIX_LEN_V4, PREFIX_LEN_V6,
};

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
    if ip == IpAddr::V4(GATEWAY_V4) || ip == IpAddr::V6(GATEWAY_V6) {
        if !cfg.host_loopback {
            return Err(Refused::HostLoopbackDisabled);
        }
        let lo = match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        return Ok(SocketAddr::new(lo, dst.port()));
    }
    if ip == IpAddr::V4(DNS_V4) || ip == IpAddr::V6(DNS_V6) {
        return match cfg.dns_upstream {
            Some(up) if dst.port() == DNS_PORT => Ok(up),
            _ => Err(Refused::NoDns),
        };
    }
    if in_virtual_net(ip) || !is_global_unicast(ip) {
        return Err(Refused::Unroutable);
    }
    if !cfg.outbound {
        return Err(Refused::OutboundDisabled);
    }
    Ok(dst)
}

fn in_virtual_net(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let mask = u32::MAX << (32 - u32::from(PREFIX_LEN_V4));
            u32::from(a) & mask == u32::from(GATEWAY_V4) & mask
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX << (128 - u32::from(PREFIX_LEN_V6));
            u128::from(a) & mask == u128::from(GATEWAY_V6) & mask
        }
    }
}

fn is_global_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_loopback() || a.is_multicast() || a.is_broadcast() || a.is_unspecified())
        }
        IpAddr::V6(a) => !(a.is_loopback() || a.is_multicast() || a.is_unspecified()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> StackConfig {
        StackConfig {
            dns_upstream: Some("127.0.0.53:53".parse().unwrap()),
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
    fn other_virtual_and_special_addresses_are_refused() {
        for d in [
            "10.0.2.77:80",
            "127.0.0.1:80",
            "224.0.0.1:5353",
            "255.255.255.255:67",
            "[fd00::9]:80",
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
