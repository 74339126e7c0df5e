//! `--outbound-addr` and `--outbound-addr6`: the address outbound sockets bind to, given as
//! an address or as an interface name (its first address of the family; for IPv6 the first
//! that is not link-local, which would need a scope). Binding a UDP socket to it once checks
//! that it belongs to this host, so a wrong value fails at start, not per connection.
//! Called by `run` before the fork. The launcher has the same rule in its `network::outbound`;
//! both should move to one library function (left for the launcher's refactor).

use std::net::{IpAddr, SocketAddr, UdpSocket};

use anyhow::{bail, Context};

use crate::config::Outbound;

/// The address for `flag`'s value `o`, of the IPv6 family if `v6`.
pub fn resolve(flag: &str, o: &Outbound, v6: bool) -> anyhow::Result<IpAddr> {
    let family = if v6 { "IPv6" } else { "IPv4" };
    let ip = match o {
        Outbound::Addr(ip) => *ip,
        Outbound::Interface(name) => {
            if nix::net::if_::if_nametoindex(name.as_str()).is_err() {
                bail!("{flag}={name}: has to be a valid {family} address or interface name");
            }
            let addrs = nix::ifaddrs::getifaddrs()
                .with_context(|| format!("{flag}={name}: cannot list interface addresses"))?;
            addrs
                .filter(|a| a.interface_name == *name)
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
                .with_context(|| format!("{flag}={name}: the interface has no {family} address"))?
        }
    };
    UdpSocket::bind(SocketAddr::new(ip, 0))
        .with_context(|| format!("{flag}={ip}: not a usable {family} address of this host"))?;
    Ok(ip)
}

/// fe80::/10 (RFC 4291 section 2.5.6).
fn is_link_local_v6(ip: std::net::Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn loopback_by_address_and_by_name() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(
            resolve("--outbound-addr", &Outbound::Addr(lo), false).unwrap(),
            lo
        );
        assert_eq!(
            resolve("--outbound-addr", &Outbound::Interface("lo".into()), false).unwrap(),
            lo
        );
    }

    #[test]
    fn unknown_interface_and_foreign_address_fail_naming_the_flag() {
        let e = resolve(
            "--outbound-addr",
            &Outbound::Interface("nosuch0".into()),
            false,
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").starts_with("--outbound-addr=nosuch0: "),
            "{e:#}"
        );
        // 192.0.2.77 (TEST-NET-1) is on no interface here.
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77));
        let e = resolve("--outbound-addr", &Outbound::Addr(ip), false).unwrap_err();
        assert!(
            format!("{e:#}").contains("not a usable IPv4 address"),
            "{e:#}"
        );
    }
}
