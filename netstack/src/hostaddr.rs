//! Addresses of this host, for `--outbound-addr` and `--outbound-addr6` (and all of them for
//! the egress presets, `all_addrs`): an interface's first
//! address of a family (for IPv6 the first that is not link-local, which would need a scope to
//! bind), and the check that an address belongs to this host (binding a UDP socket to it once),
//! so a wrong value fails at start, not per connection. Called by both binaries before they
//! fork; the messages name no flag (callers prefix theirs).

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};

/// Why an outbound address is not usable.
#[derive(Debug, thiserror::Error)]
pub enum HostAddrError {
    /// No interface has that name.
    #[error("no such interface")]
    NoInterface,
    /// getifaddrs(3) failed.
    #[error("cannot list the interface addresses")]
    List(#[source] nix::Error),
    /// The interface has no address of the family.
    #[error("the interface has no {} address", if *.v6 { "global IPv6" } else { "IPv4" })]
    NoAddress {
        /// IPv6 was asked for.
        v6: bool,
    },
    /// Binding to the address failed: it is not this host's.
    #[error("not a usable address of this host")]
    NotLocal(#[source] io::Error),
}

/// The first address of `family` (`v6`) on interface `name`.
pub fn interface_addr(name: &str, v6: bool) -> Result<IpAddr, HostAddrError> {
    if nix::net::if_::if_nametoindex(name).is_err() {
        return Err(HostAddrError::NoInterface);
    }
    let addrs = nix::ifaddrs::getifaddrs().map_err(HostAddrError::List)?;
    addrs
        .filter(|a| a.interface_name == name)
        .filter_map(|a| {
            let sa = a.address?;
            match (sa.as_sockaddr_in(), sa.as_sockaddr_in6()) {
                (Some(sin), _) if !v6 => Some(IpAddr::V4(sin.ip())),
                (_, Some(sin6)) if v6 && !is_link_local_v6(sin6.ip()) => {
                    Some(IpAddr::V6(sin6.ip()))
                }
                _ => None,
            }
        })
        .next()
        .ok_or(HostAddrError::NoAddress { v6 })
}

/// Every address of every interface of this host (for the egress presets `--no-lan` and
/// `--no-host`), in getifaddrs order, without duplicates.
pub fn all_addrs() -> Result<Vec<IpAddr>, HostAddrError> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(HostAddrError::List)?;
    let mut out: Vec<IpAddr> = Vec::new();
    for a in addrs {
        let Some(sa) = a.address else {
            continue;
        };
        let ip = match (sa.as_sockaddr_in(), sa.as_sockaddr_in6()) {
            (Some(sin), _) => IpAddr::V4(sin.ip()),
            (_, Some(sin6)) => IpAddr::V6(sin6.ip()),
            _ => continue,
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

/// Checks that `ip` is an address of this host by binding a UDP socket to it once.
pub fn check_local(ip: IpAddr) -> Result<IpAddr, HostAddrError> {
    UdpSocket::bind(SocketAddr::new(ip, 0)).map_err(HostAddrError::NotLocal)?;
    Ok(ip)
}

/// fe80::/10 (RFC 4291 section 2.5.6).
fn is_link_local_v6(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_127_0_0_1_and_unknown_names_are_refused() {
        assert_eq!(
            interface_addr("lo", false).expect("lo has an IPv4 address"),
            IpAddr::from([127, 0, 0, 1])
        );
        assert!(matches!(
            interface_addr("nosuch0", false),
            Err(HostAddrError::NoInterface)
        ));
        assert!(check_local(IpAddr::from([127, 0, 0, 1])).is_ok());
        assert!(all_addrs()
            .expect("getifaddrs")
            .contains(&IpAddr::from([127, 0, 0, 1])));
        assert!(matches!(
            check_local(IpAddr::from([198, 51, 100, 77])),
            Err(HostAddrError::NotLocal(_))
        ));
    }
}
