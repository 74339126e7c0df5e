//! pasta's addressing for the namespace, decided before anything forks (`Plan::new`) and
//! applied inside it by the namespace child (`Plan::apply`, one netlink batch):
//! - the interface is named like the host's template interface (`-I` overrides), MTU 65520
//!   (`-m`), txqueuelen as rootless-run's tap, optional MAC (`--ns-mac-addr`), up; `lo` up;
//! - per family: the template's addresses with their prefix lengths (IPv6 nodad), or `-a`
//!   with `-n` (else the host's prefix, else /24 and /64); the template's gateway routes, or
//!   one default route via `-g` (else the host's gateway) when `-a`/`-g` replace them. Every
//!   route is `onlink`, so a gateway outside a replaced prefix still works;
//! - each gateway gets a permanent neighbour entry with the stack's MAC, so the kernel never
//!   has to resolve it (the stack answers ARP/NDP only for its own hidden addresses).
//!
//! What the namespace cannot reach: other hosts on the copied prefix are resolved by ARP/NDP,
//! which nobody answers (documented in docs/pasta-compat.md).
//! Called by `run` (new) and `attach`'s child (apply).

use std::net::IpAddr;

use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netstack::netconf::{self, NetconfError, LOOPBACK_IFINDEX, TAP_TXQUEUELEN};

use crate::cli::Options;
use crate::hostnet::{HostAddr, HostRoute, Template};

/// NLM_F_CREATE | NLM_F_EXCL (include/uapi/linux/netlink.h): add, fail if present.
const CREATE_EXCL: u16 = 0x400 | 0x200;
/// NLM_F_CREATE | NLM_F_REPLACE: add or overwrite (a neighbour the kernel may have made).
const CREATE_REPLACE: u16 = 0x400 | 0x100;
/// Prefix lengths for `-a` without `-n` and no matching host address (pasta's defaults).
const DEFAULT_PREFIX_V4: u8 = 24;
const DEFAULT_PREFIX_V6: u8 = 64;
/// Interface name when no template has one (no host default route and `-a` given).
const FALLBACK_IFNAME: &str = "tap0";

/// What the namespace gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Interface name.
    pub ifname: String,
    /// Its MTU.
    pub mtu: u32,
    /// Its MAC address; the kernel's random one if `None`.
    pub mac: Option<[u8; 6]>,
    /// Addresses to add.
    pub addrs: Vec<HostAddr>,
    /// Routes to add (through gateways, onlink).
    pub routes: Vec<HostRoute>,
    /// The host's own first address per family (`[v4, v6]`): what `--map-guest-addr` reaches.
    pub host_addrs: [Option<IpAddr>; 2],
}

/// Why there is nothing to configure.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// No family has an address: no template and no `-a`.
    #[error(
        "no host interface with a default route to copy addresses from; give -a and -g, or -i"
    )]
    NoAddress,
    /// A family's `-g` and `-a` disagree with the families asked for.
    #[error("-g {0}: no address of that family in the namespace")]
    GatewayFamily(IpAddr),
}

impl Plan {
    /// The plan for `o` on a host with templates `(v4, v6)`.
    pub fn new(
        o: &Options,
        v4: Option<&Template>,
        v6: Option<&Template>,
    ) -> Result<Plan, PlanError> {
        let mut addrs = Vec::new();
        let mut routes = Vec::new();
        let mut host_addrs = [None, None];
        for (i, template) in [v4, v6].into_iter().enumerate() {
            let is_v6 = i == 1;
            host_addrs[i] = template.and_then(|t| t.addrs.first()).map(|a| a.addr);
            let probe: IpAddr = if is_v6 {
                "::".parse()
            } else {
                "0.0.0.0".parse()
            }
            .expect("literal addresses parse");
            if !o.family.allows(probe) {
                continue;
            }
            let (a, r) = family(o, template, is_v6);
            if a.is_empty() {
                if let Some(g) = o.gateways.iter().find(|g| g.is_ipv6() == is_v6) {
                    return Err(PlanError::GatewayFamily(*g));
                }
            }
            addrs.extend(a);
            routes.extend(r);
        }
        if addrs.is_empty() {
            return Err(PlanError::NoAddress);
        }
        let ifname = o
            .ns_ifname
            .clone()
            .or_else(|| v4.or(v6).map(|t| t.ifname.clone()))
            .unwrap_or_else(|| FALLBACK_IFNAME.into());
        Ok(Plan {
            ifname,
            mtu: o.mtu,
            mac: o.ns_mac,
            addrs,
            routes,
            host_addrs,
        })
    }

    /// The namespace's first address of `ip`'s family (where published ports deliver).
    pub fn ns_addr_for(&self, v6: bool) -> Option<IpAddr> {
        self.addrs
            .iter()
            .map(|a| a.addr)
            .find(|a| a.is_ipv6() == v6)
    }

    /// The gateways of the routes, each once.
    pub fn gateways(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for r in &self.routes {
            if !out.contains(&r.gateway) {
                out.push(r.gateway);
            }
        }
        out
    }

    /// The netlink batch for interface `index`, with the stack's MAC `gateway_mac`.
    pub fn requests(&self, index: u32, gateway_mac: [u8; 6]) -> Vec<(u16, RouteNetlinkMessage)> {
        let mut link = vec![
            LinkAttribute::Mtu(self.mtu),
            LinkAttribute::TxQueueLen(TAP_TXQUEUELEN),
        ];
        if let Some(mac) = self.mac {
            link.push(LinkAttribute::Address(mac.to_vec()));
        }
        let mut out = vec![
            (
                0,
                RouteNetlinkMessage::SetLink(netconf::link_up(LOOPBACK_IFINDEX, Vec::new())),
            ),
            (
                0,
                RouteNetlinkMessage::SetLink(netconf::link_up(index, link)),
            ),
        ];
        for a in &self.addrs {
            let msg = netconf::address(index, a.addr, a.prefix);
            out.push((CREATE_EXCL, RouteNetlinkMessage::NewAddress(msg)));
        }
        for g in self.gateways() {
            let msg = neighbour(index, g, gateway_mac);
            out.push((CREATE_REPLACE, RouteNetlinkMessage::NewNeighbour(msg)));
        }
        for r in &self.routes {
            out.push((CREATE_EXCL, RouteNetlinkMessage::NewRoute(route(index, r))));
        }
        out
    }

    /// Configures the namespace we are in; interface `index` is the tap device.
    pub fn apply(&self, index: u32, gateway_mac: [u8; 6]) -> Result<(), ApplyError> {
        let requests = self.requests(index, gateway_mac);
        let results = netconf::transact(&requests).map_err(ApplyError::Netlink)?;
        for ((_, msg), errno) in requests.iter().zip(results) {
            if let Some(errno) = errno {
                return Err(ApplyError::Request {
                    what: describe(msg),
                    source: std::io::Error::from_raw_os_error(errno),
                });
            }
        }
        Ok(())
    }
}

/// Why configuring the namespace failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The netlink exchange itself failed.
    #[error("netlink")]
    Netlink(#[source] NetconfError),
    /// The kernel refused one request.
    #[error("cannot {what}")]
    Request {
        /// The request, in words.
        what: String,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
}

fn describe(msg: &RouteNetlinkMessage) -> String {
    match msg {
        RouteNetlinkMessage::SetLink(l) if l.header.index == LOOPBACK_IFINDEX => {
            "bring lo up".into()
        }
        RouteNetlinkMessage::SetLink(_) => {
            "set the MTU and MAC address and bring the interface up".into()
        }
        RouteNetlinkMessage::NewAddress(a) => format!("add address {:?}", a.attributes.first()),
        RouteNetlinkMessage::NewNeighbour(_) => "add the gateway's neighbour entry".into(),
        RouteNetlinkMessage::NewRoute(r) => format!("add route {:?}", r.attributes),
        _ => "configure the namespace".into(),
    }
}

/// One family's addresses and routes.
fn family(o: &Options, t: Option<&Template>, v6: bool) -> (Vec<HostAddr>, Vec<HostRoute>) {
    let of_family = |list: &[IpAddr]| list.iter().copied().find(|a| a.is_ipv6() == v6);
    let given_addr = of_family(&o.addresses);
    let given_gw = of_family(&o.gateways);
    let addrs = match given_addr {
        Some(addr) => {
            let host_prefix = t
                .and_then(|t| t.addrs.iter().find(|a| a.addr == addr))
                .map(|a| a.prefix);
            let prefix = match (v6, o.netmask) {
                (false, Some(n)) => n,
                _ => host_prefix.unwrap_or(if v6 {
                    DEFAULT_PREFIX_V6
                } else {
                    DEFAULT_PREFIX_V4
                }),
            };
            vec![HostAddr { addr, prefix }]
        }
        None => t.map(|t| t.addrs.clone()).unwrap_or_default(),
    };
    let unspecified: IpAddr =
        if v6 { "::".parse() } else { "0.0.0.0".parse() }.expect("literal addresses parse");
    let routes = match (given_addr, given_gw) {
        (None, None) => t.map(|t| t.routes.clone()).unwrap_or_default(),
        _ => given_gw
            .or_else(|| t.and_then(Template::default_gateway))
            .map(|gateway| HostRoute {
                dst: unspecified,
                prefix: 0,
                gateway,
                metric: 0,
            })
            .into_iter()
            .collect(),
    };
    (addrs, routes)
}

fn neighbour(index: u32, ip: IpAddr, mac: [u8; 6]) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = af(ip);
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(ip)));
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    msg
}

fn route(index: u32, r: &HostRoute) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header = RouteHeader {
        address_family: af(r.gateway),
        destination_prefix_length: r.prefix,
        table: RouteHeader::RT_TABLE_MAIN,
        protocol: RouteProtocol::Boot,
        scope: RouteScope::Universe,
        kind: RouteType::Unicast,
        flags: RouteFlags::Onlink,
        ..Default::default()
    };
    if r.prefix > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(r.dst)));
    }
    msg.attributes
        .push(RouteAttribute::Gateway(RouteAddress::from(r.gateway)));
    msg.attributes.push(RouteAttribute::Oif(index));
    if r.metric > 0 {
        msg.attributes.push(RouteAttribute::Priority(r.metric));
    }
    msg
}

fn af(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::options;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn host() -> (Template, Template) {
        let v4 = Template {
            ifname: "ext0".into(),
            addrs: vec![HostAddr {
                addr: ip("192.0.2.1"),
                prefix: 24,
            }],
            routes: vec![
                HostRoute {
                    dst: ip("0.0.0.0"),
                    prefix: 0,
                    gateway: ip("192.0.2.254"),
                    metric: 0,
                },
                HostRoute {
                    dst: ip("198.51.100.0"),
                    prefix: 24,
                    gateway: ip("192.0.2.253"),
                    metric: 5,
                },
            ],
        };
        let v6 = Template {
            ifname: "ext0".into(),
            addrs: vec![HostAddr {
                addr: ip("2001:db8::1"),
                prefix: 64,
            }],
            routes: vec![HostRoute {
                dst: ip("::"),
                prefix: 0,
                gateway: ip("2001:db8::fe"),
                metric: 1024,
            }],
        };
        (v4, v6)
    }

    #[test]
    fn the_hosts_addresses_and_gateway_routes_are_copied_under_its_name() {
        let (v4, v6) = host();
        let p = Plan::new(&options(&[]), Some(&v4), Some(&v6)).unwrap();
        assert_eq!(p.ifname, "ext0");
        assert_eq!(p.mtu, 65520);
        assert_eq!(p.addrs.len(), 2);
        assert_eq!(p.routes.len(), 3);
        assert_eq!(
            p.gateways(),
            [ip("192.0.2.254"), ip("192.0.2.253"), ip("2001:db8::fe")]
        );
        assert_eq!(
            p.host_addrs,
            [Some(ip("192.0.2.1")), Some(ip("2001:db8::1"))]
        );
        assert_eq!(p.ns_addr_for(true), Some(ip("2001:db8::1")));
    }

    #[test]
    fn address_netmask_and_gateway_replace_one_family_only() {
        let (v4, v6) = host();
        let o = options(&[
            "-a",
            "10.0.2.100",
            "-n",
            "24",
            "-g",
            "10.0.2.2",
            "-I",
            "eth0",
        ]);
        let p = Plan::new(&o, Some(&v4), Some(&v6)).unwrap();
        assert_eq!(p.ifname, "eth0");
        assert_eq!(
            p.addrs[0],
            HostAddr {
                addr: ip("10.0.2.100"),
                prefix: 24
            }
        );
        assert_eq!(p.gateways(), [ip("10.0.2.2"), ip("2001:db8::fe")]);
        assert_eq!(
            p.host_addrs[0],
            Some(ip("192.0.2.1")),
            "the host keeps its address"
        );
        // -a alone keeps the host's gateway, and the default prefix when the host has none.
        let p = Plan::new(&options(&["-a", "10.9.9.9"]), Some(&v4), None).unwrap();
        assert_eq!(
            p.addrs,
            [HostAddr {
                addr: ip("10.9.9.9"),
                prefix: 24
            }]
        );
        assert_eq!(p.gateways(), [ip("192.0.2.254")]);
    }

    #[test]
    fn families_can_be_left_out_and_nothing_to_copy_is_an_error() {
        let (v4, v6) = host();
        let p = Plan::new(&options(&["-4"]), Some(&v4), Some(&v6)).unwrap();
        assert!(p.addrs.iter().all(|a| a.addr.is_ipv4()));
        assert!(matches!(
            Plan::new(&options(&[]), None, None),
            Err(PlanError::NoAddress)
        ));
        assert!(matches!(
            Plan::new(&options(&["-g", "2001:db8::9"]), Some(&v4), None),
            Err(PlanError::GatewayFamily(_))
        ));
    }

    #[test]
    fn the_batch_adds_neighbours_before_the_onlink_routes_through_them() {
        let (v4, _) = host();
        let p = Plan::new(
            &options(&["--ns-mac-addr", "02:00:00:00:00:09"]),
            Some(&v4),
            None,
        )
        .unwrap();
        let batch = p.requests(7, [0x52, 0x55, 10, 0, 2, 2]);
        let kinds: Vec<&str> = batch
            .iter()
            .map(|(_, m)| match m {
                RouteNetlinkMessage::SetLink(_) => "link",
                RouteNetlinkMessage::NewAddress(_) => "addr",
                RouteNetlinkMessage::NewNeighbour(_) => "neigh",
                RouteNetlinkMessage::NewRoute(_) => "route",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            ["link", "link", "addr", "neigh", "neigh", "route", "route"]
        );
        let RouteNetlinkMessage::SetLink(link) = &batch[1].1 else {
            unreachable!()
        };
        assert_eq!(link.header.index, 7);
        assert!(link.attributes.contains(&LinkAttribute::Mtu(65520)));
        assert!(link
            .attributes
            .contains(&LinkAttribute::Address(vec![2, 0, 0, 0, 0, 9])));
        let RouteNetlinkMessage::NewNeighbour(n) = &batch[3].1 else {
            unreachable!()
        };
        assert_eq!(n.header.state, NeighbourState::Permanent);
        assert!(n
            .attributes
            .contains(&NeighbourAttribute::LinkLayerAddress(vec![
                0x52, 0x55, 10, 0, 2, 2
            ])));
        let RouteNetlinkMessage::NewRoute(r) = &batch[6].1 else {
            unreachable!()
        };
        assert_eq!(r.header.flags, RouteFlags::Onlink);
        assert_eq!(r.header.destination_prefix_length, 24);
        assert!(r.attributes.contains(&RouteAttribute::Priority(5)));
        assert_eq!(batch[6].0, CREATE_EXCL);
    }
}
