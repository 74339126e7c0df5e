//! Kernel mode's links, through netlink (netlink-packet-route, sent by `netstack::netconf`):
//! the shared bridge (created when missing, marked ours with the alias `rootless-run`, holding
//! the gateway and DNS addresses) and one veth pair per sandbox, whose peer is created directly
//! in the sandbox's network namespace as `eth0`. Message building is apart from sending so the
//! tests check the messages. Called by `kernelnet`; no exec of `ip`, no sysctls, no rules.

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netstack::config::{Addressing, PREFIX_LEN_V6};
use netstack::netconf::{self, NetconfError};

/// The alias that marks a bridge as ours (IFLA_IFALIAS).
pub const OUR_ALIAS: &str = "rootless-run";
/// Name of the sandbox's end of its veth pair.
pub const SANDBOX_IFNAME: &str = "eth0";

/// Failure to build the links.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Netlink itself failed.
    #[error("netlink")]
    Netlink(#[from] NetconfError),
    /// The bridge name is taken by a link that is not our bridge.
    #[error("{name} exists and is not rootless-run's bridge (its alias is not {OUR_ALIAS:?}); remove it or choose another name")]
    NotOurs {
        /// The name.
        name: String,
    },
    /// Creating the bridge failed.
    #[error("cannot create the bridge {name}")]
    CreateBridge {
        /// Its name.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Adding an address to the bridge failed.
    #[error("cannot add {addr} to the bridge {name}")]
    BridgeAddress {
        /// The bridge.
        name: String,
        /// The address.
        addr: IpAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Creating the veth pair failed.
    #[error("cannot create the veth pair {name} (peer eth0 in the sandbox)")]
    Veth {
        /// The host end's name.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The addresses the bridge holds: gateway and DNS of each family, with their prefix length.
pub fn bridge_addresses(addr: &Addressing, ipv6: bool) -> Vec<(IpAddr, u8)> {
    let mut v = vec![
        (IpAddr::V4(addr.gateway_v4()), addr.prefix_v4()),
        (IpAddr::V4(addr.dns_v4()), addr.prefix_v4()),
    ];
    if ipv6 {
        v.push((IpAddr::V6(addr.gateway_v6()), PREFIX_LEN_V6));
        v.push((IpAddr::V6(addr.dns_v6()), PREFIX_LEN_V6));
    }
    v
}

/// The request that creates bridge `name`, up.
pub fn new_bridge(name: &str) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg.attributes.push(LinkAttribute::IfName(name.into()));
    msg.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Bridge,
        )]));
    msg
}

/// The request that marks link `index` as ours and up.
pub fn mark_ours(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg.attributes
        .push(LinkAttribute::IfAlias(OUR_ALIAS.into()));
    msg
}

/// The request that adds `ip/prefix` to link `index` (IPv6 without duplicate detection).
pub fn new_address(index: u32, ip: IpAddr, prefix: u8) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.prefix_len = prefix;
    msg.header.scope = AddressScope::Universe;
    msg.header.index = index;
    msg.attributes.push(AddressAttribute::Local(ip));
    msg.attributes.push(AddressAttribute::Address(ip));
    if ip.is_ipv6() {
        msg.header.flags = AddressHeaderFlags::Nodad;
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    msg
}

/// The request that creates veth `name` (up, MTU `mtu`, on bridge `bridge`) with its peer
/// `eth0` in the network namespace of process `pid`.
pub fn new_veth(name: &str, mtu: u32, bridge: u32, pid: u32) -> LinkMessage {
    let mut peer = LinkMessage::default();
    peer.attributes
        .push(LinkAttribute::IfName(SANDBOX_IFNAME.into()));
    peer.attributes.push(LinkAttribute::Mtu(mtu));
    peer.attributes.push(LinkAttribute::NetNsPid(pid));
    let mut msg = LinkMessage::default();
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg.attributes.push(LinkAttribute::IfName(name.into()));
    msg.attributes.push(LinkAttribute::Mtu(mtu));
    msg.attributes.push(LinkAttribute::Controller(bridge));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    msg
}

/// Whether `link` is a bridge carrying our alias.
pub fn is_our_bridge(link: &LinkMessage) -> bool {
    let bridge = link.attributes.iter().any(|a| {
        matches!(a, LinkAttribute::LinkInfo(infos)
            if infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge))))
    });
    let ours = link
        .attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::IfAlias(s) if s == OUR_ALIAS));
    bridge && ours
}

/// A bridge `ensure_bridge` found or made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bridge {
    /// Its interface index.
    pub index: u32,
    /// This call created it (so a setup that fails later removes it again).
    pub created: bool,
}

/// Finds our bridge `name` or creates it (up, marked ours), and gives it the gateway and DNS
/// addresses of `addr` (IPv6 too with `ipv6`). A link of that name that is not our bridge is
/// `NotOurs`, and nothing is changed. A bridge this call created is removed again if adding
/// its addresses fails.
pub fn ensure_bridge(name: &str, addr: &Addressing, ipv6: bool) -> Result<Bridge, LinkError> {
    let bridge = match netconf::get_link(name)? {
        Some(link) if is_our_bridge(&link) => Bridge {
            index: link.header.index,
            created: false,
        },
        Some(_) => return Err(LinkError::NotOurs { name: name.into() }),
        None => create_bridge(name)?,
    };
    if let Err(e) = add_addresses(name, bridge.index, addr, ipv6) {
        if bridge.created {
            delete_link(bridge.index);
        }
        return Err(e);
    }
    Ok(bridge)
}

/// Creates bridge `name` and marks it ours. A concurrent run may make it first (EEXIST): it is
/// then checked like any other link of that name, and `created` is false.
fn create_bridge(name: &str) -> Result<Bridge, LinkError> {
    let r = netconf::transact(&[(
        NLM_F_CREATE | NLM_F_EXCL,
        RouteNetlinkMessage::NewLink(new_bridge(name)),
    )])?;
    let created = match r.first() {
        Some(Some(errno)) if *errno == (nix::errno::Errno::EEXIST as i32) => false,
        Some(Some(errno)) => {
            return Err(LinkError::CreateBridge {
                name: name.into(),
                source: io::Error::from_raw_os_error(*errno),
            })
        }
        _ => true,
    };
    let link = netconf::get_link(name)?.ok_or_else(|| LinkError::CreateBridge {
        name: name.into(),
        source: io::Error::from_raw_os_error(nix::errno::Errno::ENODEV as i32),
    })?;
    if !created {
        return match is_our_bridge(&link) {
            true => Ok(Bridge {
                index: link.header.index,
                created,
            }),
            false => Err(LinkError::NotOurs { name: name.into() }),
        };
    }
    netconf::transact(&[(
        0,
        RouteNetlinkMessage::SetLink(mark_ours(link.header.index)),
    )])?;
    Ok(Bridge {
        index: link.header.index,
        created,
    })
}

/// Removes link `index`, best effort: a failure is logged (it is only ever a clean-up).
pub fn delete_link(index: u32) {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    let result = netconf::transact(&[(0, RouteNetlinkMessage::DelLink(msg))]);
    match result.as_ref().map(|r| r.first().copied().flatten()) {
        Ok(None) => {}
        Ok(Some(errno)) => {
            tracing::warn!(index, errno, "cannot remove the bridge made for this run")
        }
        Err(error) => tracing::warn!(index, %error, "cannot remove the bridge made for this run"),
    }
}

/// Adds the gateway and DNS addresses to the bridge (EEXIST: already there, fine).
fn add_addresses(name: &str, index: u32, addr: &Addressing, ipv6: bool) -> Result<(), LinkError> {
    let wanted = bridge_addresses(addr, ipv6);
    let requests: Vec<_> = wanted
        .iter()
        .map(|(ip, prefix)| {
            (
                NLM_F_CREATE | NLM_F_EXCL,
                RouteNetlinkMessage::NewAddress(new_address(index, *ip, *prefix)),
            )
        })
        .collect();
    for ((ip, _), result) in wanted.iter().zip(netconf::transact(&requests)?) {
        match result {
            None => {}
            Some(errno) if errno == (nix::errno::Errno::EEXIST as i32) => {}
            Some(errno) => {
                return Err(LinkError::BridgeAddress {
                    name: name.into(),
                    addr: *ip,
                    source: io::Error::from_raw_os_error(errno),
                })
            }
        }
    }
    Ok(())
}

/// Creates veth `name` on bridge `bridge` with its peer `eth0` in `pid`'s network namespace.
pub fn create_veth(name: &str, mtu: u32, bridge: u32, pid: u32) -> Result<(), LinkError> {
    let r = netconf::transact(&[(
        NLM_F_CREATE | NLM_F_EXCL,
        RouteNetlinkMessage::NewLink(new_veth(name, mtu, bridge, pid)),
    )])?;
    match r.first() {
        Some(Some(errno)) => Err(LinkError::Veth {
            name: name.into(),
            source: io::Error::from_raw_os_error(*errno),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    fn bytes(msg: &LinkMessage) -> Vec<u8> {
        let mut v = vec![0; msg.buffer_len()];
        msg.emit(&mut v);
        v
    }

    /// An rtattr: length, type, payload, padded to 4 bytes.
    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    /// ifinfomsg: family 0, type 0, index, flags, change mask (IFF_UP = 1).
    fn ifinfo(index: u32, up: bool) -> Vec<u8> {
        let mut v = vec![0, 0, 0, 0];
        v.extend_from_slice(&index.to_ne_bytes());
        let f: u32 = if up { 1 } else { 0 };
        v.extend_from_slice(&f.to_ne_bytes());
        v.extend_from_slice(&f.to_ne_bytes());
        v
    }

    // Attribute numbers from include/uapi/linux/if_link.h and veth.h.
    const IFLA_IFNAME: u16 = 3;
    const IFLA_MTU: u16 = 4;
    const IFLA_MASTER: u16 = 10;
    const IFLA_LINKINFO: u16 = 18;
    const IFLA_NET_NS_PID: u16 = 19;
    const IFLA_IFALIAS: u16 = 20;
    const IFLA_INFO_KIND: u16 = 1;
    const IFLA_INFO_DATA: u16 = 2;
    const VETH_INFO_PEER: u16 = 1;

    #[test]
    fn bridge_request_names_kind_bridge_and_up() {
        let mut expected = ifinfo(0, true);
        expected.extend(attr(IFLA_IFNAME, b"rrbr0\0"));
        expected.extend(attr(IFLA_LINKINFO, &attr(IFLA_INFO_KIND, b"bridge\0")));
        assert_eq!(bytes(&new_bridge("rrbr0")), expected);
    }

    #[test]
    fn mark_ours_sets_the_alias() {
        let mut expected = ifinfo(9, true);
        expected.extend(attr(IFLA_IFALIAS, b"rootless-run\0"));
        assert_eq!(bytes(&mark_ours(9)), expected);
    }

    #[test]
    fn veth_request_puts_eth0_in_the_sandbox_and_the_host_end_on_the_bridge() {
        let mut peer = ifinfo(0, false);
        peer.extend(attr(IFLA_IFNAME, b"eth0\0"));
        peer.extend(attr(IFLA_MTU, &65520u32.to_ne_bytes()));
        peer.extend(attr(IFLA_NET_NS_PID, &4242u32.to_ne_bytes()));
        let mut info = attr(IFLA_INFO_KIND, b"veth\0");
        info.extend(attr(IFLA_INFO_DATA, &attr(VETH_INFO_PEER, &peer)));
        let mut expected = ifinfo(0, true);
        expected.extend(attr(IFLA_IFNAME, b"rrv4242\0"));
        expected.extend(attr(IFLA_MTU, &65520u32.to_ne_bytes()));
        expected.extend(attr(IFLA_MASTER, &7u32.to_ne_bytes()));
        expected.extend(attr(IFLA_LINKINFO, &info));
        assert_eq!(bytes(&new_veth("rrv4242", 65520, 7, 4242)), expected);
    }

    #[test]
    fn bridge_holds_gateway_and_dns_of_each_family() {
        let a = Addressing::default();
        let got: Vec<String> = bridge_addresses(&a, true)
            .iter()
            .map(|(ip, p)| format!("{ip}/{p}"))
            .collect();
        assert_eq!(
            got,
            ["10.0.2.2/24", "10.0.2.3/24", "fd00::2/64", "fd00::3/64"]
        );
        assert_eq!(bridge_addresses(&a, false).len(), 2);
    }

    #[test]
    fn a_bridge_without_our_alias_is_not_ours() {
        let mut link = new_bridge("rrbr0");
        assert!(!is_our_bridge(&link));
        link.attributes
            .push(LinkAttribute::IfAlias(OUR_ALIAS.into()));
        assert!(is_our_bridge(&link));
    }
}
