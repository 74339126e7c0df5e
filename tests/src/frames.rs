//! Raw Ethernet frames for the tests that must send what no socket would, or see what a
//! listener would miss: `rr-probe craft` writes hand-built TCP SYNs and UDP datagrams onto
//! the sandbox's tap0 (to 127.0.0.1, ::1, ::ffff:127.0.0.1, 0.0.0.0 ...: the sandbox's kernel
//! would keep those on its own loopback), after learning the gateway's MAC by ARP; and
//! `rr-probe sniff` reports every IP packet, of any protocol or port, addressed into a set of
//! prefixes, on every interface of the namespace it runs in (the bait side of the leak test).
//! `segment` and `datagram` build any TCP segment or UDP datagram for the hostile-sandbox
//! tests (`rr-probe forge-rst-syn` ...), and `Link::next_data_segment` reads a flow's sequence
//! number off the wire.
//! Frames are built and read with smoltcp's wire Reprs (checksums computed and verified there).
//! Needs CAP_NET_RAW in the namespace's owning user namespace; nothing here panics on a frame.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    bind, getsockname, recv, send, setsockopt, socket, sockopt, AddressFamily, LinkAddr, MsgFlags,
    SockFlag, SockProtocol, SockType, SockaddrStorage,
};
use nix::sys::time::TimeVal;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpControl, TcpPacket,
    TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};

/// ETH_P_ALL (linux/if_ether.h): every protocol.
const ETH_P_ALL: u16 = 0x0003;
/// Largest frame read (the sandbox's MTU is 65520; a GSO frame may be larger still).
const MAX_FRAME: usize = 65536 + 128;
/// Hop limit of crafted packets.
const HOP_LIMIT: u8 = 64;
/// Payload of crafted UDP datagrams.
pub const BAIT_PAYLOAD: &[u8] = b"rr-bait";
/// Sequence number of crafted SYNs: any value works, a fixed one reads well in a capture.
const SYN_SEQ: u32 = 0x5252_0000;
/// Window of crafted SYNs.
const SYN_WINDOW: u16 = 64240;
/// MSS option of crafted SYNs (Ethernet MTU less 40 bytes of headers).
const SYN_MSS: u16 = 1460;

/// TCP or UDP, for a crafted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// A TCP SYN.
    Tcp,
    /// A UDP datagram carrying `BAIT_PAYLOAD`.
    Udp,
}

/// One packet to craft: `tcp:ADDR:PORT` or `udp:ADDR:PORT` (IPv6 in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// TCP SYN or UDP datagram.
    pub proto: Proto,
    /// Destination address and port.
    pub dst: SocketAddr,
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        let (proto, addr) = match s.split_once(':') {
            Some(("tcp", rest)) => (Proto::Tcp, rest),
            Some(("udp", rest)) => (Proto::Udp, rest),
            _ => return Err(format!("{s}: not tcp:ADDR:PORT or udp:ADDR:PORT")),
        };
        let dst = addr
            .parse()
            .map_err(|e| format!("{s}: {addr} is not ADDR:PORT: {e}"))?;
        Ok(Target { proto, dst })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        write!(f, "{proto}:{}", self.dst)
    }
}

/// An address prefix, `ADDR/LEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl std::str::FromStr for Prefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Prefix, String> {
        let (addr, len) = s.split_once('/').ok_or(format!("{s}: not ADDR/LEN"))?;
        let addr: IpAddr = addr.parse().map_err(|e| format!("{s}: {e}"))?;
        let len: u8 = len.parse().map_err(|e| format!("{s}: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(format!("{s}: prefix longer than {max}"));
        }
        Ok(Prefix { addr, len })
    }
}

impl Prefix {
    /// True if `ip` lies inside this prefix (families must match).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (a, b, bits) = match (self.addr, ip) {
            (IpAddr::V4(p), IpAddr::V4(x)) => (
                u128::from(u32::from(p)) << 96,
                u128::from(u32::from(x)) << 96,
                self.len,
            ),
            (IpAddr::V6(p), IpAddr::V6(x)) => (u128::from(p), u128::from(x), self.len),
            _ => return false,
        };
        let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
        a & mask == b & mask
    }
}

/// A packet socket on one interface.
pub struct Link {
    fd: OwnedFd,
    mac: EthernetAddress,
}

impl Link {
    /// Opens a packet socket bound to `ifname`, for every protocol.
    pub fn open(ifname: &str) -> io::Result<Link> {
        let fd = packet_socket()?;
        let ifindex = nix::net::if_::if_nametoindex(ifname)
            .map_err(|e| io::Error::other(format!("no interface {ifname}: {e}")))?;
        bind(fd.as_raw_fd(), &crate::sys::link_addr(ifindex, ETH_P_ALL))
            .map_err(|e| io::Error::other(format!("bind a packet socket to {ifname}: {e}")))?;
        // The kernel returns only as much of the sockaddr_ll as the address needs (packet(7)),
        // which LinkAddr refuses and SockaddrStorage takes.
        let local: SockaddrStorage = getsockname(fd.as_raw_fd())
            .map_err(|e| io::Error::other(format!("getsockname on {ifname}: {e}")))?;
        let mac = local
            .as_link_addr()
            .and_then(LinkAddr::addr)
            .map(EthernetAddress)
            .ok_or_else(|| io::Error::other(format!("{ifname} has no hardware address")))?;
        Ok(Link { fd, mac })
    }

    /// The interface's own MAC.
    pub fn mac(&self) -> EthernetAddress {
        self.mac
    }

    /// Writes one frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        send(self.fd.as_raw_fd(), frame, MsgFlags::empty())
            .map(|_| ())
            .map_err(|e| io::Error::other(format!("send a {}-byte frame: {e}", frame.len())))
    }

    /// The MAC that answers ARP for `target`, asking as `src` (one request per `retry`, until
    /// `timeout`).
    pub fn resolve(
        &self,
        src: Ipv4Addr,
        target: Ipv4Addr,
        retry: Duration,
        timeout: Duration,
    ) -> io::Result<EthernetAddress> {
        let request = arp_request(self.mac, src, target);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            self.send(&request)?;
            let until = deadline.min(Instant::now() + retry);
            if let Some(mac) = recv_until(&self.fd, until, |f| arp_reply_from(f, target))? {
                return Ok(mac);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no ARP reply for {target} within {timeout:?}"),
        ))
    }
}

impl Link {
    /// The next TCP segment with payload from `src` to `dst` seen on the link (ours going out
    /// included), as its sequence number and payload length, within `timeout`.
    pub fn next_data_segment(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
        timeout: Duration,
    ) -> io::Result<(u32, usize)> {
        let deadline = Instant::now() + timeout;
        let pick = |f: &[u8]| tcp_segment_of(f, src, dst).filter(|&(_, len)| len > 0);
        recv_until(&self.fd, deadline, pick)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no TCP segment {src} -> {dst} within {timeout:?}"),
            )
        })
    }
}

/// Sequence number and payload length of `frame` if it is a TCP segment from `src` to `dst`.
fn tcp_segment_of(frame: &[u8], src: SocketAddr, dst: SocketAddr) -> Option<(u32, usize)> {
    let (s, d, proto, payload) = ip_parts(frame)?;
    if proto != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(payload).ok()?;
    let seen = (
        SocketAddr::new(s, tcp.src_port()),
        SocketAddr::new(d, tcp.dst_port()),
    );
    (seen == (src, dst)).then(|| (tcp.seq_number().0 as u32, tcp.payload().len()))
}

/// Source, destination, protocol and payload of the IP packet in an Ethernet frame.
fn ip_parts(frame: &[u8]) -> Option<(IpAddr, IpAddr, IpProtocol, &[u8])> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            let (s, d, p) = (ip.src_addr(), ip.dst_addr(), ip.next_header());
            let payload = eth.payload().get(usize::from(ip.header_len())..)?;
            Some((s.into(), d.into(), p, payload))
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            let (s, d, p) = (ip.src_addr(), ip.dst_addr(), ip.next_header());
            Some((s.into(), d.into(), p, eth.payload().get(ip.header_len()..)?))
        }
        _ => None,
    }
}

fn packet_socket() -> io::Result<OwnedFd> {
    socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::EthAll,
    )
    .map_err(|e| {
        io::Error::other(format!(
            "socket(AF_PACKET, SOCK_RAW): {e} (needs CAP_NET_RAW)"
        ))
    })
}

/// Reads frames until `pick` returns a value or `deadline` passes (Ok(None)).
fn recv_until<T>(
    fd: &OwnedFd,
    deadline: Instant,
    mut pick: impl FnMut(&[u8]) -> Option<T>,
) -> io::Result<Option<T>> {
    let mut buf = vec![0u8; MAX_FRAME];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        // SO_RCVTIMEO of zero means "block forever": round up to a microsecond.
        let tv = TimeVal::new(
            left.as_secs() as i64,
            i64::from(left.subsec_micros().max(1)),
        );
        setsockopt(fd, sockopt::ReceiveTimeout, &tv)
            .map_err(|e| io::Error::other(format!("SO_RCVTIMEO: {e}")))?;
        match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => {
                if let Some(v) = pick(&buf[..n]) {
                    return Ok(Some(v));
                }
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::other(format!("recv a frame: {e}"))),
        }
    }
}

/// A broadcast ARP request for `target` as `src`, from a made-up unicast MAC, distinct for
/// each `index` (locally administered, 02:66:..): the kind of frame a hostile sandbox's root
/// writes to make the helper address its frames elsewhere.
pub fn forged_arp_request(index: u32, src: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let [a, b, c, d] = index.to_be_bytes();
    arp_request(EthernetAddress([0x02, 0x66, a, b, c, d]), src, target)
}

fn arp_request(mac: EthernetAddress, src: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: mac,
        source_protocol_addr: src,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let mut payload = vec![0u8; arp.buffer_len()];
    arp.emit(&mut ArpPacket::new_unchecked(&mut payload[..]));
    ethernet(
        mac,
        EthernetAddress::BROADCAST,
        EthernetProtocol::Arp,
        &payload,
    )
}

fn arp_reply_from(frame: &[u8], target: Ipv4Addr) -> Option<EthernetAddress> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    match ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()? {
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr,
            source_protocol_addr,
            ..
        } if source_protocol_addr == target => Some(source_hardware_addr),
        _ => None,
    }
}

fn ethernet(
    src: EthernetAddress,
    dst: EthernetAddress,
    ethertype: EthernetProtocol,
    payload: &[u8],
) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype,
    };
    let mut frame = vec![0u8; repr.buffer_len() + payload.len()];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    frame[repr.buffer_len()..].copy_from_slice(payload);
    frame
}

/// An Ethernet frame from `src_mac` to `dst_mac` carrying `target`'s packet from `src`
/// (whose family must match the target's) and source port `sport`.
pub fn craft(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: IpAddr,
    sport: u16,
    target: Target,
) -> Result<Vec<u8>, String> {
    let from = SocketAddr::new(src, sport);
    match target.proto {
        Proto::Tcp => segment(src_mac, dst_mac, from, target.dst, TcpControl::Syn, SYN_SEQ),
        Proto::Udp => datagram(src_mac, dst_mac, from, target.dst, BAIT_PAYLOAD),
    }
}

/// An Ethernet frame carrying a TCP segment from `src` to `dst` with `control` (SYN, RST,
/// ..) at sequence number `seq`, no ACK: what a hostile sandbox forges against a flow.
pub fn segment(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: SocketAddr,
    dst: SocketAddr,
    control: TcpControl,
    seq: u32,
) -> Result<Vec<u8>, String> {
    same_family(src, dst)?;
    let repr = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: None,
        window_len: SYN_WINDOW,
        window_scale: None,
        max_seg_size: (control == TcpControl::Syn).then_some(SYN_MSS),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let (s, d) = (src.ip().into(), dst.ip().into());
    let mut buf = vec![0u8; repr.buffer_len()];
    let caps = ChecksumCapabilities::default();
    repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), &s, &d, &caps);
    ip_frame(src_mac, dst_mac, src.ip(), dst.ip(), IpProtocol::Tcp, &buf)
}

/// An Ethernet frame carrying a UDP datagram of `payload` from `src` to `dst`.
pub fn datagram(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    same_family(src, dst)?;
    let repr = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    let (s, d) = (src.ip().into(), dst.ip().into());
    let mut buf = vec![0u8; repr.header_len() + payload.len()];
    repr.emit(
        &mut UdpPacket::new_unchecked(&mut buf[..]),
        &s,
        &d,
        payload.len(),
        |p| p.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
    ip_frame(src_mac, dst_mac, src.ip(), dst.ip(), IpProtocol::Udp, &buf)
}

/// Checksums over mixed families make no sense (smoltcp panics on them): refuse first.
fn same_family(src: SocketAddr, dst: SocketAddr) -> Result<(), String> {
    match src.is_ipv4() == dst.is_ipv4() {
        true => Ok(()),
        false => Err(format!("{dst}: source {src} is of the other family")),
    }
}

/// `transport` in an IPv4 or IPv6 packet from `src` to `dst`, in an Ethernet frame.
fn ip_frame(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: IpAddr,
    dst: IpAddr,
    proto: IpProtocol,
    transport: &[u8],
) -> Result<Vec<u8>, String> {
    let (ethertype, packet) = match (src, dst) {
        (IpAddr::V4(src_addr), IpAddr::V4(dst_addr)) => {
            let repr = Ipv4Repr {
                src_addr,
                dst_addr,
                next_header: proto,
                payload_len: transport.len(),
                hop_limit: HOP_LIMIT,
            };
            let mut buf = vec![0u8; repr.buffer_len() + transport.len()];
            let caps = ChecksumCapabilities::default();
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]), &caps);
            buf[repr.buffer_len()..].copy_from_slice(transport);
            (EthernetProtocol::Ipv4, buf)
        }
        (IpAddr::V6(src_addr), IpAddr::V6(dst_addr)) => {
            let repr = Ipv6Repr {
                src_addr,
                dst_addr,
                next_header: proto,
                payload_len: transport.len(),
                hop_limit: HOP_LIMIT,
            };
            let mut buf = vec![0u8; repr.buffer_len() + transport.len()];
            repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
            buf[repr.buffer_len()..].copy_from_slice(transport);
            (EthernetProtocol::Ipv6, buf)
        }
        _ => return Err(format!("{dst}: source {src} is of the other family")),
    };
    Ok(ethernet(src_mac, dst_mac, ethertype, &packet))
}

/// What `sniff` reports of one IP packet: `PROTO SRC -> DST` with ports for TCP and UDP and
/// the TCP flags, e.g. `tcp 10.0.2.100:41000 -> 10.0.2.3:53 SYN`.
pub fn describe(frame: &[u8]) -> Option<(IpAddr, String)> {
    let (src, dst, proto, payload) = ip_parts(frame)?;
    let text = match proto {
        IpProtocol::Tcp => match TcpPacket::new_checked(payload) {
            Ok(t) => format!(
                "tcp {} -> {}{}{}{}",
                SocketAddr::new(src, t.src_port()),
                SocketAddr::new(dst, t.dst_port()),
                if t.syn() { " SYN" } else { "" },
                if t.ack() { " ACK" } else { "" },
                if t.rst() { " RST" } else { "" },
            ),
            Err(_) => format!("tcp {src} -> {dst} (short)"),
        },
        IpProtocol::Udp => match UdpPacket::new_checked(payload) {
            Ok(u) => format!(
                "udp {} -> {} {} bytes",
                SocketAddr::new(src, u.src_port()),
                SocketAddr::new(dst, u.dst_port()),
                u.payload().len()
            ),
            Err(_) => format!("udp {src} -> {dst} (short)"),
        },
        other => format!("{other} {src} -> {dst}"),
    };
    Some((dst, text))
}

/// Reports every IP packet addressed into one of `prefixes`, on any interface of this
/// namespace, through `seen`, until reading fails. `ready` is called once the socket is open.
pub fn sniff(
    prefixes: &[Prefix],
    ready: impl FnOnce(),
    mut seen: impl FnMut(&str),
) -> io::Result<()> {
    let fd = packet_socket()?;
    ready();
    let mut buf = vec![0u8; MAX_FRAME];
    loop {
        match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => {
                if let Some((dst, text)) = describe(&buf[..n]) {
                    if prefixes.iter().any(|p| p.contains(dst)) {
                        seen(&text);
                    }
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::other(format!("recv a frame: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const B: EthernetAddress = EthernetAddress([0x52, 0x55, 10, 0, 2, 2]);

    fn target(s: &str) -> Target {
        s.parse().expect("a valid target")
    }

    #[test]
    fn target_parses_both_families_and_rejects_others() {
        assert_eq!(
            target("udp:[::ffff:127.0.0.1]:53").dst,
            "[::ffff:127.0.0.1]:53".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(target("tcp:0.0.0.0:80").proto, Proto::Tcp);
        assert!("icmp:1.2.3.4:0".parse::<Target>().is_err());
        assert!("tcp:::1:80".parse::<Target>().is_err());
    }

    #[test]
    fn prefix_contains_only_its_own_family_and_range() {
        let p: Prefix = "10.0.2.0/24".parse().expect("prefix");
        assert!(p.contains("10.0.2.255".parse().expect("ip")));
        assert!(!p.contains("10.0.3.0".parse().expect("ip")));
        assert!(!p.contains("::ffff:10.0.2.3".parse().expect("ip")));
        let all: Prefix = "::/0".parse().expect("prefix");
        assert!(all.contains("fd00::3".parse().expect("ip")));
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
    }

    #[test]
    fn crafted_tcp_syn_to_loopback_parses_back_with_valid_checksums() {
        let src: IpAddr = "10.0.2.100".parse().expect("ip");
        let frame = craft(A, B, src, 40000, target("tcp:127.0.0.1:8080")).expect("craft");
        let eth = EthernetFrame::new_checked(&frame[..]).expect("ethernet");
        assert_eq!((eth.src_addr(), eth.dst_addr()), (A, B));
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
        assert!(ip.verify_checksum());
        let tcp = TcpPacket::new_checked(ip.payload()).expect("tcp");
        assert!(tcp.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into()));
        assert!(tcp.syn() && !tcp.ack());
        assert_eq!(
            describe(&frame).map(|(_, t)| t).as_deref(),
            Some("tcp 10.0.2.100:40000 -> 127.0.0.1:8080 SYN")
        );
    }

    #[test]
    fn crafted_udp_to_mapped_v6_loopback_parses_back() {
        let src: IpAddr = "fd00::100".parse().expect("ip");
        let frame = craft(A, B, src, 40001, target("udp:[::ffff:127.0.0.1]:53")).expect("craft");
        let eth = EthernetFrame::new_checked(&frame[..]).expect("ethernet");
        let ip = Ipv6Packet::new_checked(eth.payload()).expect("ipv6");
        let udp = UdpPacket::new_checked(ip.payload()).expect("udp");
        assert!(udp.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into()));
        assert_eq!(udp.payload(), BAIT_PAYLOAD);
        assert_eq!(
            describe(&frame).map(|(_, t)| t).as_deref(),
            Some("udp [fd00::100]:40001 -> [::ffff:127.0.0.1]:53 7 bytes")
        );
    }

    #[test]
    fn craft_refuses_mixed_families() {
        let src: IpAddr = "10.0.2.100".parse().expect("ip");
        assert!(craft(A, B, src, 1, target("tcp:[::1]:80")).is_err());
    }

    #[test]
    fn arp_request_is_broadcast_and_a_reply_is_recognised() {
        let (me, gw) = (Ipv4Addr::new(10, 0, 2, 100), Ipv4Addr::new(10, 0, 2, 2));
        let req = arp_request(A, me, gw);
        let eth = EthernetFrame::new_checked(&req[..]).expect("ethernet");
        assert_eq!(eth.dst_addr(), EthernetAddress::BROADCAST);
        assert_eq!(arp_reply_from(&req, gw), None, "a request is not a reply");
        let reply = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: B,
            source_protocol_addr: gw,
            target_hardware_addr: A,
            target_protocol_addr: me,
        };
        let mut payload = vec![0u8; reply.buffer_len()];
        reply.emit(&mut ArpPacket::new_unchecked(&mut payload[..]));
        let frame = ethernet(B, A, EthernetProtocol::Arp, &payload);
        assert_eq!(arp_reply_from(&frame, gw), Some(B));
        assert_eq!(arp_reply_from(&frame, me), None);
    }
}
