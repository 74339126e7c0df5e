//! The host's addressing that pasta copies into the namespace: per family, the template
//! interface (`-i NAME`, else the one holding the first default route), its addresses with
//! their prefix lengths (IPv6: not link-local), and the routes through a gateway on it.
//! Routes come from /proc/net/route and /proc/net/ipv6_route (text, no netlink dump), addresses
//! from getifaddrs(3). Called by `plan` before anything forks; reads, decides nothing. The
//! parsers (`routes_v4`, `routes_v6`) and the choice of interface (`template`) are pure, and
//! the `pasta_routes` fuzz target (netstack/fuzz) compiles this file to run them.
//! Prefix routes are not listed: the kernel makes them when the addresses are added.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// RTF_GATEWAY in /proc/net/route's and ipv6_route's flags (include/uapi/linux/route.h).
const RTF_GATEWAY: u32 = 0x2;
/// RTF_UP: the route is usable.
const RTF_UP: u32 = 0x1;
/// Longest IPv6 prefix: a longer one is no route (the kernel would refuse to add it).
const MAX_PREFIX_V6: u8 = 128;

/// An address of the template interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostAddr {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
}

/// A route through a gateway on the template interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRoute {
    /// Destination network (`0.0.0.0` / `::` for the default route).
    pub dst: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// The next hop.
    pub gateway: IpAddr,
    /// The route's metric (priority).
    pub metric: u32,
}

/// One family's template: the interface, its addresses and gateway routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Interface name.
    pub ifname: String,
    /// Its addresses of the family.
    pub addrs: Vec<HostAddr>,
    /// Its routes of the family through a gateway, default route first.
    pub routes: Vec<HostRoute>,
}

impl Template {
    /// The gateway of the first default route, if any.
    pub fn default_gateway(&self) -> Option<IpAddr> {
        self.routes
            .iter()
            .find(|r| r.prefix == 0)
            .map(|r| r.gateway)
    }
}

/// Why the host's addressing could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HostNetError {
    /// A /proc/net route table could not be read.
    #[error("cannot read {path}")]
    Routes {
        /// The file.
        path: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// getifaddrs(3) failed.
    #[error("cannot list the host's interface addresses")]
    Addrs(#[source] nix::Error),
}

/// The template of each family: `(IPv4, IPv6)`; `None` for a family without a default route
/// (or, with `forced`, without an address on that interface).
pub fn templates(
    forced: Option<&str>,
) -> Result<(Option<Template>, Option<Template>), HostNetError> {
    let read = |path: &'static str| {
        std::fs::read_to_string(path).map_err(|source| HostNetError::Routes { path, source })
    };
    let v4 = routes_v4(&read("/proc/net/route")?);
    // A host without IPv6 has no ipv6_route file.
    let v6 = routes_v6(&std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default());
    let addrs = host_addrs()?;
    Ok((
        template(&v4, &addrs, forced, false),
        template(&v6, &addrs, forced, true),
    ))
}

/// The template of one family (`v6`) from the host's gateway routes and addresses, each with
/// its interface: `forced`'s (`None` if it has no address of the family), else the interface
/// of the first default route (`None` without one). Pure; fuzzed (`pasta_routes`).
pub(crate) fn template(
    routes: &[(String, HostRoute)],
    addrs: &[(String, HostAddr)],
    forced: Option<&str>,
    v6: bool,
) -> Option<Template> {
    let ifname = match forced {
        Some(name) => name.to_owned(),
        None => routes.iter().find(|(_, r)| r.prefix == 0)?.0.clone(),
    };
    let addrs: Vec<HostAddr> = addrs
        .iter()
        .filter(|(n, a)| *n == ifname && a.addr.is_ipv6() == v6)
        .map(|(_, a)| *a)
        .collect();
    if addrs.is_empty() && forced.is_some() {
        return None;
    }
    let mut routes: Vec<HostRoute> = routes
        .iter()
        .filter(|(n, _)| *n == ifname)
        .map(|(_, r)| *r)
        .collect();
    routes.sort_by_key(|r| (r.prefix != 0, r.metric));
    Some(Template {
        ifname,
        addrs,
        routes,
    })
}

/// Every address of every interface: IPv4, and IPv6 that is not link-local.
fn host_addrs() -> Result<Vec<(String, HostAddr)>, HostNetError> {
    let list = nix::ifaddrs::getifaddrs().map_err(HostNetError::Addrs)?;
    Ok(list
        .filter_map(|ifa| {
            let (addr, mask) = (ifa.address?, ifa.netmask?);
            let found = match (addr.as_sockaddr_in(), addr.as_sockaddr_in6()) {
                (Some(a), _) => {
                    let m = mask.as_sockaddr_in()?.ip();
                    HostAddr {
                        addr: IpAddr::V4(a.ip()),
                        prefix: u32::from(m).leading_ones() as u8,
                    }
                }
                (None, Some(a)) if a.ip().segments()[0] & 0xffc0 != 0xfe80 => {
                    let m = mask.as_sockaddr_in6()?.ip();
                    HostAddr {
                        addr: IpAddr::V6(a.ip()),
                        prefix: u128::from(m).leading_ones() as u8,
                    }
                }
                _ => return None,
            };
            (!found.addr.is_loopback()).then_some((ifa.interface_name, found))
        })
        .collect())
}

/// Gateway routes of /proc/net/route: `Iface Destination Gateway Flags RefCnt Use Metric Mask
/// ...`, addresses as the network-order word printed as a native u32 in hex.
pub fn routes_v4(text: &str) -> Vec<(String, HostRoute)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let hex = |i: usize| f.get(i).and_then(|s| u32::from_str_radix(s, 16).ok());
            let flags = hex(3)?;
            if flags & (RTF_GATEWAY | RTF_UP) != RTF_GATEWAY | RTF_UP {
                return None;
            }
            // The kernel prints the network-order word as a native u32.
            let ip = |v: u32| IpAddr::V4(Ipv4Addr::from(v.to_ne_bytes()));
            let route = HostRoute {
                dst: ip(hex(1)?),
                prefix: u32::from_be_bytes(hex(7)?.to_ne_bytes()).leading_ones() as u8,
                gateway: ip(hex(2)?),
                metric: f.get(6)?.parse().ok()?,
            };
            Some(((*f.first()?).to_owned(), route))
        })
        .collect()
}

/// Gateway routes of /proc/net/ipv6_route: `dst dst_len src src_len next_hop metric refcnt
/// use flags dev`, in hex (addresses as 32 digits in network order).
pub fn routes_v6(text: &str) -> Vec<(String, HostRoute)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let addr = |i: usize| {
                f.get(i)
                    .and_then(|s| u128::from_str_radix(s, 16).ok())
                    .map(|v| IpAddr::V6(Ipv6Addr::from(v)))
            };
            let hex = |i: usize| f.get(i).and_then(|s| u32::from_str_radix(s, 16).ok());
            let flags = hex(8)?;
            let gateway = addr(4)?;
            if flags & (RTF_GATEWAY | RTF_UP) != RTF_GATEWAY | RTF_UP || gateway.is_unspecified() {
                return None;
            }
            let route = HostRoute {
                dst: addr(0)?,
                prefix: u8::try_from(hex(1)?).ok().filter(|&p| p <= MAX_PREFIX_V6)?,
                gateway,
                metric: hex(5)?,
            };
            Some(((*f.get(9)?).to_owned(), route))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE_V4: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        ext0\t00000000\tFE0200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
        ext0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
        ext0\t006433C6\tFD0200C0\t0003\t0\t0\t5\t00FFFFFF\t0\t0\t0\n";

    const ROUTE_V6: &str = "20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     ext0\n\
        00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db80000000000000000000000fe 00000400 00000002 00000000 00000003     ext0\n\
        00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_gateway_routes_are_read_in_network_order() {
        let r = routes_v4(ROUTE_V4);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, "ext0");
        assert_eq!(
            r[0].1,
            HostRoute {
                dst: ip("0.0.0.0"),
                prefix: 0,
                gateway: ip("192.0.2.254"),
                metric: 0
            }
        );
        assert_eq!(
            (r[1].1.dst, r[1].1.prefix, r[1].1.gateway, r[1].1.metric),
            (ip("198.51.100.0"), 24, ip("192.0.2.253"), 5)
        );
    }

    #[test]
    fn ipv6_default_route_is_read_and_unreachable_ones_skipped() {
        let r = routes_v6(ROUTE_V6);
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0],
            (
                "ext0".to_owned(),
                HostRoute {
                    dst: ip("::"),
                    prefix: 0,
                    gateway: ip("2001:db8::fe"),
                    metric: 1024
                }
            )
        );
    }

    #[test]
    fn an_ipv6_route_with_a_prefix_over_128_is_skipped() {
        // Found by the pasta_routes fuzz target: /192 was taken as a route.
        let line = "00000000000000000000000000000000 c0 00000000000000000000000000000000 00 20010db80000000000000000000000fe 00000400 00000002 00000000 00000003     ext0\n";
        assert!(routes_v6(line).is_empty());
        let at_most = line.replacen(" c0 ", " 80 ", 1);
        assert_eq!(routes_v6(&at_most)[0].1.prefix, 128);
    }

    #[test]
    fn the_template_is_the_default_routes_interface_with_its_addresses() {
        let routes = routes_v4(ROUTE_V4);
        let addrs = vec![
            (
                "eth9".to_owned(),
                HostAddr {
                    addr: ip("10.1.1.1"),
                    prefix: 8,
                },
            ),
            (
                "ext0".to_owned(),
                HostAddr {
                    addr: ip("192.0.2.1"),
                    prefix: 24,
                },
            ),
            (
                "ext0".to_owned(),
                HostAddr {
                    addr: ip("2001:db8::1"),
                    prefix: 64,
                },
            ),
        ];
        let t = template(&routes, &addrs, None, false).unwrap();
        assert_eq!(t.ifname, "ext0");
        assert_eq!(
            t.addrs,
            [HostAddr {
                addr: ip("192.0.2.1"),
                prefix: 24
            }]
        );
        assert_eq!(t.default_gateway(), Some(ip("192.0.2.254")));
        assert!(template(&[], &addrs, None, false).is_none());
        let forced = template(&routes, &addrs, Some("eth9"), false).unwrap();
        assert_eq!(forced.ifname, "eth9");
        assert!(forced.routes.is_empty());
        assert!(template(&routes, &addrs, Some("nope"), false).is_none());
    }
}
