//! Router advertisements (RFC 4861 section 6.2), as libslirp sends them for slirp4netns's
//! `--enable-ipv6`: from them the sandbox's kernel configures IPv6 with no help from inside
//! (a SLAAC address in the virtual /64, the link MTU, a default route via `ROUTER_LL`).
//! rootlesskit `--ipv6` depends on this: its child sets only the IPv4 address.
//!
//! The `Advertiser`:
//! - answers a router solicitation at once, with an advertisement to all nodes;
//! - advertises unsolicited every `INTERVAL`, so that neither the default route
//!   (`ROUTER_LIFETIME`) nor the prefix expires while the stack runs;
//! - answers neighbour solicitations for `ROUTER_LL`, which the control plane's smoltcp
//!   interface cannot hold (its four address slots are the gateway's and the DNS's) and which
//!   the sandbox probes before it trusts the route.
//!
//! Everything else is left to the caller. One frame in, at most one out, built in a buffer on
//! the stack: no allocation. Called by the event loop (`dispatch`, for ICMPv6 frames other
//! than echo requests, and `run_timers`); present only with
//! `StackConfig::router_advertisements`. It parses the Ethernet, IPv6 and ICMPv6 headers again
//! (the wire view stops at `L4::Other` for these): a cost paid only by neighbour discovery, a
//! few frames a minute.
//!
//! Not done: RFC 4861's random delay (0 to 0.5 s) before an answer and its 3 s spacing between
//! answers, which protect links with many routers and hosts; here one sandbox solicits one
//! router, and a flood of solicitations costs what a flood of pings to the gateway costs. No
//! RDNSS option: the kernel ignores it, and every client we know points resolv.conf at the DNS
//! address itself.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::time::Duration as SmolDuration;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv6Packet, Icmpv6Repr,
    IpProtocol, Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscPrefixInfoFlags,
    NdiscPrefixInformation, NdiscRepr, NdiscRouterFlags, RawHardwareAddress,
};

use crate::config::{Addressing, PREFIX_LEN_V6};
use crate::egress::Egress;
use crate::netconf::IPV6_MIN_MTU;

/// The router's link-local address, the source of every advertisement and the sandbox's
/// default gateway (libslirp uses the same).
pub const ROUTER_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
/// All-nodes multicast (RFC 4291 section 2.7.1), where advertisements go.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// Its Ethernet address (RFC 2464 section 7: 33:33 and the low 32 bits).
const ALL_NODES_MAC: EthernetAddress = EthernetAddress([0x33, 0x33, 0, 0, 0, 1]);
/// Hop limit of every neighbour discovery message; others are forged (RFC 4861 section 6.1).
const NDP_HOP_LIMIT: u8 = 255;
/// Period of unsolicited advertisements: MaxRtrAdvInterval's default (RFC 4861 section 6.2.1).
pub const INTERVAL: Duration = Duration::from_secs(600);
/// How long the sandbox keeps us as default router: AdvDefaultLifetime's default,
/// 3 x MaxRtrAdvInterval (RFC 4861 section 6.2.1), so two lost advertisements are harmless.
const ROUTER_LIFETIME: SmolDuration = SmolDuration::from_secs(1800);
/// Prefix lifetimes: AdvValidLifetime and AdvPreferredLifetime defaults (RFC 4861 6.2.1).
const VALID_LIFETIME: SmolDuration = SmolDuration::from_secs(2_592_000);
const PREFERRED_LIFETIME: SmolDuration = SmolDuration::from_secs(604_800);
/// Room for the largest frame built here (an advertisement: 14 + 40 + 16 + 8 + 8 + 32 bytes)
/// behind the virtio-net header.
const FRAME_CAP: usize = 256;

/// Sends router advertisements and answers for the router's link-local address.
#[derive(Debug, Clone)]
pub struct Advertiser {
    /// Our (gateway) MAC: the advertisements' source and the router's link-layer address.
    mac: EthernetAddress,
    /// The advertised /64.
    prefix: Ipv6Addr,
    /// The MTU option, when the link can carry IPv6 at all.
    mtu: Option<u32>,
    /// When the next unsolicited advertisement is due.
    next: Instant,
}

impl Advertiser {
    /// An advertiser for `addr`'s IPv6 prefix on a link of `mtu`, whose first unsolicited
    /// advertisement is due one `INTERVAL` after `now` (the sandbox solicits one when its
    /// link comes up).
    pub fn new(mac: EthernetAddress, addr: &Addressing, mtu: u32, now: Instant) -> Advertiser {
        let bits = u128::from(addr.gateway_v6()) & (u128::MAX << (128 - u32::from(PREFIX_LEN_V6)));
        Advertiser {
            mac,
            prefix: Ipv6Addr::from(bits),
            mtu: (mtu >= IPV6_MIN_MTU).then_some(mtu),
            next: now + INTERVAL,
        }
    }

    /// When `on_timer` has work next.
    pub fn next_timer(&self) -> Instant {
        self.next
    }

    /// Sends the unsolicited advertisement if it is due.
    pub fn on_timer(&mut self, egress: &mut Egress, now: Instant) {
        if now < self.next {
            return;
        }
        self.advertise(egress);
        self.next = now + INTERVAL;
    }

    /// Handles `frame` if it is a router solicitation or a neighbour solicitation for
    /// `ROUTER_LL`, answering it; false (nothing sent) for any other frame.
    pub fn input(&mut self, frame: &[u8], egress: &mut Egress) -> bool {
        let Some((eth_src, ip_src, ndisc)) = solicitation(frame) else {
            return false;
        };
        match ndisc {
            NdiscRepr::RouterSolicit { .. } => {
                self.advertise(egress);
                true
            }
            NdiscRepr::NeighborSolicit { target_addr, .. } if target_addr == ROUTER_LL => {
                // From the unspecified address it is the sandbox's duplicate address
                // detection: the answer goes to all nodes, unsolicited (RFC 4861 7.2.4).
                let (eth_dst, ip_dst, flags) = if ip_src.is_unspecified() {
                    (
                        ALL_NODES_MAC,
                        ALL_NODES,
                        NdiscNeighborFlags::ROUTER | NdiscNeighborFlags::OVERRIDE,
                    )
                } else {
                    (eth_src, ip_src, NdiscNeighborFlags::all())
                };
                let na = NdiscRepr::NeighborAdvert {
                    flags,
                    target_addr: ROUTER_LL,
                    lladdr: Some(self.lladdr()),
                };
                self.send(egress, eth_dst, ip_dst, &na);
                true
            }
            _ => false,
        }
    }

    fn lladdr(&self) -> RawHardwareAddress {
        RawHardwareAddress::from_bytes(self.mac.as_bytes())
    }

    /// One advertisement to all nodes.
    fn advertise(&self, egress: &mut Egress) {
        let ra = NdiscRepr::RouterAdvert {
            // 0: unspecified, the sandbox keeps its own default hop limit.
            hop_limit: 0,
            flags: NdiscRouterFlags::empty(),
            router_lifetime: ROUTER_LIFETIME,
            reachable_time: SmolDuration::ZERO,
            retrans_time: SmolDuration::ZERO,
            lladdr: Some(self.lladdr()),
            mtu: self.mtu,
            prefix_info: Some(NdiscPrefixInformation {
                prefix_len: PREFIX_LEN_V6,
                flags: NdiscPrefixInfoFlags::ON_LINK | NdiscPrefixInfoFlags::ADDRCONF,
                valid_lifetime: VALID_LIFETIME,
                preferred_lifetime: PREFERRED_LIFETIME,
                prefix: self.prefix,
            }),
        };
        self.send(egress, ALL_NODES_MAC, ALL_NODES, &ra);
    }

    /// Builds `msg` from `ROUTER_LL` to `ip_dst` and hands it to `egress`.
    fn send(
        &self,
        egress: &mut Egress,
        eth_dst: EthernetAddress,
        ip_dst: Ipv6Addr,
        msg: &NdiscRepr<'_>,
    ) {
        let mut buf = [0u8; FRAME_CAP];
        let head = egress.headroom();
        let Some(frame) = buf.get_mut(head..) else {
            return;
        };
        match emit(frame, self.mac, eth_dst, ip_dst, msg) {
            Some(len) => egress.raw(&mut buf[..head + len]),
            None => tracing::warn!("neighbour discovery frame does not fit its buffer"),
        }
    }
}

/// The Ethernet source, IPv6 source and message of a well-formed neighbour discovery
/// solicitation (router or neighbour) with hop limit 255 and a valid checksum.
fn solicitation(frame: &[u8]) -> Option<(EthernetAddress, Ipv6Addr, NdiscRepr<'_>)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv6 {
        return None;
    }
    let eth_src = eth.src_addr();
    let ip = Ipv6Packet::new_checked(&frame[EthernetFrame::<&[u8]>::header_len()..]).ok()?;
    if ip.next_header() != IpProtocol::Icmpv6 || ip.hop_limit() != NDP_HOP_LIMIT {
        return None;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let payload = ip.payload();
    let icmp = Icmpv6Packet::new_checked(payload).ok()?;
    match Icmpv6Repr::parse(&src, &dst, &icmp, &ChecksumCapabilities::default()).ok()? {
        Icmpv6Repr::Ndisc(
            m @ (NdiscRepr::RouterSolicit { .. } | NdiscRepr::NeighborSolicit { .. }),
        ) => Some((eth_src, src, m)),
        _ => None,
    }
}

/// Writes Ethernet + IPv6 (hop limit 255, from `ROUTER_LL`) + `msg` into `buf`; its length,
/// or `None` if `buf` is too small.
fn emit(
    buf: &mut [u8],
    mac: EthernetAddress,
    eth_dst: EthernetAddress,
    ip_dst: Ipv6Addr,
    msg: &NdiscRepr<'_>,
) -> Option<usize> {
    let icmp = Icmpv6Repr::Ndisc(*msg);
    let ip = Ipv6Repr {
        src_addr: ROUTER_LL,
        dst_addr: ip_dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit: NDP_HOP_LIMIT,
    };
    let eth = EthernetRepr {
        src_addr: mac,
        dst_addr: eth_dst,
        ethertype: EthernetProtocol::Ipv6,
    };
    let ip_at = eth.buffer_len();
    let icmp_at = ip_at + ip.buffer_len();
    let len = icmp_at + icmp.buffer_len();
    let frame = buf.get_mut(..len)?;
    eth.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    ip.emit(&mut Ipv6Packet::new_unchecked(&mut frame[ip_at..]));
    icmp.emit(
        &ROUTER_LL,
        &ip_dst,
        &mut Icmpv6Packet::new_unchecked(&mut frame[icmp_at..]),
        &ChecksumCapabilities::default(),
    );
    Some(len)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::RefCell;
    use std::io;
    use std::rc::Rc;

    use super::*;
    use crate::config::GATEWAY_MAC;
    use crate::egress::FrameSink;

    const SANDBOX_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0x64]);
    const SANDBOX_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x64);
    const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
    const MTU: u32 = 65520;

    #[derive(Clone, Default)]
    struct Sink(Rc<RefCell<Vec<Vec<u8>>>>);

    impl FrameSink for Sink {
        fn send_frame(&mut self, frame: &[u8]) -> io::Result<()> {
            self.0.borrow_mut().push(frame.to_vec());
            Ok(())
        }
    }

    fn rig() -> (Advertiser, Egress, Sink, Instant) {
        let sink = Sink::default();
        let mac = EthernetAddress(GATEWAY_MAC);
        let egress = Egress::new(MTU as usize, mac, Box::new(sink.clone()), false);
        let now = Instant::now();
        (
            Advertiser::new(mac, &Addressing::default(), MTU, now),
            egress,
            sink,
            now,
        )
    }

    /// A frame from the sandbox: `msg` from `src` to `dst`, hop limit `hops`.
    fn from_sandbox(src: Ipv6Addr, dst: Ipv6Addr, hops: u8, msg: NdiscRepr<'_>) -> Vec<u8> {
        let mut buf = vec![0u8; FRAME_CAP];
        let len = emit(&mut buf, SANDBOX_MAC, ALL_NODES_MAC, dst, &msg).unwrap();
        buf.truncate(len);
        // emit writes ROUTER_LL and 255; put the sandbox's source and hop limit in, then redo
        // the checksum over the new pseudo-header.
        let mut ip = Ipv6Packet::new_unchecked(&mut buf[14..]);
        ip.set_src_addr(src);
        ip.set_hop_limit(hops);
        let mut icmp = Icmpv6Packet::new_unchecked(ip.payload_mut());
        icmp.fill_checksum(&src, &dst);
        buf
    }

    /// A router solicitation from the sandbox's link-local address, as its kernel sends it.
    pub(crate) fn rs() -> Vec<u8> {
        let msg = NdiscRepr::RouterSolicit {
            lladdr: Some(RawHardwareAddress::from_bytes(SANDBOX_MAC.as_bytes())),
        };
        from_sandbox(SANDBOX_LL, ALL_ROUTERS, 255, msg)
    }

    fn ns(src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
        let msg = NdiscRepr::NeighborSolicit {
            target_addr: target,
            lladdr: None,
        };
        from_sandbox(src, target, 255, msg)
    }

    /// The one frame sent, decoded: Ethernet destination, IPv6 destination and the message,
    /// after checking the source addresses, the hop limit and the ICMPv6 checksum.
    fn sent(sink: &Sink) -> (EthernetAddress, Ipv6Addr, NdiscRepr<'static>) {
        let frames = sink.0.borrow();
        assert_eq!(frames.len(), 1, "exactly one frame sent");
        let frame: &'static [u8] = Box::leak(frames[0].clone().into_boxed_slice());
        let eth = EthernetFrame::new_checked(frame).unwrap();
        assert_eq!(eth.src_addr(), EthernetAddress(GATEWAY_MAC));
        assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
        let ip = Ipv6Packet::new_checked(&frame[14..]).unwrap();
        assert_eq!(ip.src_addr(), ROUTER_LL);
        assert_eq!(ip.hop_limit(), 255);
        assert_eq!(usize::from(ip.payload_len()), frame.len() - 54);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let icmp = Icmpv6Packet::new_checked(&frame[54..]).unwrap();
        assert!(icmp.verify_checksum(&src, &dst), "ICMPv6 checksum");
        match Icmpv6Repr::parse(&src, &dst, &icmp, &ChecksumCapabilities::default()).unwrap() {
            Icmpv6Repr::Ndisc(m) => (eth.dst_addr(), dst, m),
            other => panic!("not neighbour discovery: {other:?}"),
        }
    }

    fn assert_advert(sink: &Sink) {
        let (eth_dst, ip_dst, msg) = sent(sink);
        assert_eq!((eth_dst, ip_dst), (ALL_NODES_MAC, ALL_NODES));
        let NdiscRepr::RouterAdvert {
            router_lifetime,
            lladdr,
            mtu,
            prefix_info: Some(p),
            ..
        } = msg
        else {
            panic!("not an advertisement with a prefix: {msg:?}")
        };
        assert_eq!(router_lifetime, SmolDuration::from_secs(1800));
        assert_eq!(
            lladdr.map(|l| l.as_bytes().to_vec()),
            Some(GATEWAY_MAC.to_vec())
        );
        assert_eq!(mtu, Some(MTU));
        assert_eq!(p.prefix, Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0));
        assert_eq!(p.prefix_len, 64);
        assert_eq!(
            p.flags,
            NdiscPrefixInfoFlags::ON_LINK | NdiscPrefixInfoFlags::ADDRCONF
        );
        assert!(p.valid_lifetime >= p.preferred_lifetime && p.preferred_lifetime > ROUTER_LIFETIME);
    }

    #[test]
    fn router_solicitation_gets_an_advertisement_of_the_prefix_mtu_and_router() {
        let (mut ra, mut egress, sink, _) = rig();
        assert!(ra.input(&rs(), &mut egress));
        assert_advert(&sink);
    }

    #[test]
    fn solicitation_with_a_forwarded_hop_limit_is_ignored() {
        let (mut ra, mut egress, sink, _) = rig();
        let msg = NdiscRepr::RouterSolicit { lladdr: None };
        let forged = from_sandbox(SANDBOX_LL, ALL_ROUTERS, 254, msg);
        assert!(!ra.input(&forged, &mut egress));
        assert!(sink.0.borrow().is_empty());
    }

    #[test]
    fn solicitation_with_a_bad_checksum_is_ignored() {
        let (mut ra, mut egress, sink, _) = rig();
        let mut bad = rs();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(!ra.input(&bad, &mut egress));
        assert!(sink.0.borrow().is_empty());
    }

    #[test]
    fn neighbour_solicitation_for_the_router_is_answered_to_its_sender() {
        let (mut ra, mut egress, sink, _) = rig();
        assert!(ra.input(&ns(SANDBOX_LL, ROUTER_LL), &mut egress));
        let (eth_dst, ip_dst, msg) = sent(&sink);
        assert_eq!((eth_dst, ip_dst), (SANDBOX_MAC, SANDBOX_LL));
        let NdiscRepr::NeighborAdvert {
            flags,
            target_addr,
            lladdr,
        } = msg
        else {
            panic!("not a neighbour advertisement: {msg:?}")
        };
        assert_eq!(target_addr, ROUTER_LL);
        assert_eq!(
            flags,
            NdiscNeighborFlags::ROUTER
                | NdiscNeighborFlags::SOLICITED
                | NdiscNeighborFlags::OVERRIDE
        );
        assert_eq!(
            lladdr.map(|l| l.as_bytes().to_vec()),
            Some(GATEWAY_MAC.to_vec())
        );
    }

    #[test]
    fn duplicate_address_detection_of_the_router_address_is_answered_to_all_nodes() {
        let (mut ra, mut egress, sink, _) = rig();
        assert!(ra.input(&ns(Ipv6Addr::UNSPECIFIED, ROUTER_LL), &mut egress));
        let (eth_dst, ip_dst, msg) = sent(&sink);
        assert_eq!((eth_dst, ip_dst), (ALL_NODES_MAC, ALL_NODES));
        assert!(
            matches!(msg, NdiscRepr::NeighborAdvert { flags, .. } if !flags.contains(NdiscNeighborFlags::SOLICITED))
        );
    }

    #[test]
    fn other_neighbour_discovery_is_left_to_the_control_plane() {
        let (mut ra, mut egress, sink, _) = rig();
        // The gateway's global address belongs to the control plane.
        let gw = Addressing::default().gateway_v6();
        assert!(!ra.input(&ns(SANDBOX_LL, gw), &mut egress));
        assert!(sink.0.borrow().is_empty());
    }

    #[test]
    fn unsolicited_advertisements_come_every_interval() {
        let (mut ra, mut egress, sink, start) = rig();
        assert_eq!(ra.next_timer(), start + INTERVAL);
        ra.on_timer(&mut egress, start + INTERVAL - Duration::from_secs(1));
        assert!(sink.0.borrow().is_empty(), "not before it is due");
        let due = start + INTERVAL;
        ra.on_timer(&mut egress, due);
        assert_advert(&sink);
        assert_eq!(ra.next_timer(), due + INTERVAL);
    }

    #[test]
    fn truncated_or_mutated_solicitations_never_panic() {
        let (mut ra, mut egress, _, _) = rig();
        let frame = rs();
        for len in 0..frame.len() {
            ra.input(&frame[..len], &mut egress);
        }
        for i in 0..frame.len() {
            for bit in 0..8 {
                let mut m = frame.clone();
                m[i] ^= 1 << bit;
                ra.input(&m, &mut egress);
            }
        }
    }

    #[test]
    fn no_mtu_option_on_a_link_too_small_for_ipv6() {
        let sink = Sink::default();
        let mac = EthernetAddress(GATEWAY_MAC);
        let mut egress = Egress::new(1279, mac, Box::new(sink.clone()), false);
        let mut ra = Advertiser::new(mac, &Addressing::default(), 1279, Instant::now());
        assert!(ra.input(&rs(), &mut egress));
        let (_, _, msg) = sent(&sink);
        assert!(
            matches!(msg, NdiscRepr::RouterAdvert { mtu: None, .. }),
            "{msg:?}"
        );
    }
}
