//! Writes the frames we send to the sandbox: Ethernet + IPv4/IPv6 + TCP, UDP or ICMP echo reply.
//! The payload is placed first (peeked or received straight into the frame buffer at the
//! offset these functions name), then the headers are written in front of it and checksums
//! filled. Called by `tcp`, `udp` and `icmp`; never allocates, never panics on any input.

use std::net::{IpAddr, SocketAddr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    checksum, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Message,
    Icmpv4Packet, Icmpv6Message, Icmpv6Packet, IpAddress, IpProtocol, IpRepr, TcpPacket,
    TcpSeqNumber, UdpPacket,
};

use super::frame::TcpFlags;

/// Frame could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The buffer is shorter than headers plus payload.
    #[error("frame buffer too small")]
    BufferTooSmall,
    /// Source and destination are of different IP versions.
    #[error("IPv4/IPv6 address mismatch")]
    FamilyMismatch,
    /// Payload longer than an IP packet can carry.
    #[error("payload too long")]
    TooLong,
}

/// Who computes the TCP/UDP checksum of an emitted frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Csum {
    /// We do: a full pass over the payload.
    Full,
    /// The receiving kernel does (vnet_hdr NEEDS_CSUM): we write only the pseudo-header sum.
    Partial,
}

/// Link-layer addresses of an emitted frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2 {
    /// Our (gateway) MAC.
    pub src: EthernetAddress,
    /// The sandbox's MAC.
    pub dst: EthernetAddress,
}

/// TCP header fields of a segment we emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHeader {
    /// Source port (the remote end, as the sandbox sees it).
    pub src_port: u16,
    /// Destination port (the sandbox's).
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (sent when `flags.ack`).
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Raw window field (already scaled down).
    pub window: u16,
    /// For SYN segments: our MSS and, if the peer offered scaling, our window scale.
    pub syn_options: Option<(u16, Option<u8>)>,
    /// Timestamps option (TSval, TSecr), on every segment of a flow that negotiated it.
    pub timestamp: Option<(u32, u32)>,
}

impl TcpHeader {
    /// Bytes of TCP options this header carries.
    pub fn options_len(&self) -> usize {
        options_len(self.syn_options.is_some(), self.timestamp.is_some())
    }
}

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const TCP_LEN: usize = 20;
/// MSS (4) + NOP (1) + window scale (3), RFC 793 / RFC 7323.
const SYN_OPTIONS_LEN: usize = 8;
/// NOP (1) + NOP (1) + timestamps (10), RFC 7323 appendix A's layout.
pub const TIMESTAMP_OPTION_LEN: usize = 12;

/// Bytes of TCP options with the SYN options and/or the timestamps option.
pub fn options_len(syn: bool, timestamp: bool) -> usize {
    let syn = if syn { SYN_OPTIONS_LEN } else { 0 };
    let ts = if timestamp { TIMESTAMP_OPTION_LEN } else { 0 };
    syn + ts
}
const UDP_LEN: usize = 8;
/// TTL / hop limit of packets we originate.
const HOP_LIMIT: u8 = 64;

fn ip_len(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(_) => IPV4_LEN,
        IpAddr::V6(_) => IPV6_LEN,
    }
}

/// Offset of the L4 header in a frame of `ip`'s family.
pub fn l4_offset(ip: IpAddr) -> usize {
    ETH_LEN + ip_len(ip)
}

/// Largest TCP payload one IP packet of `ip`'s family can carry (with GSO, the frame may
/// exceed the link MTU): the 16-bit IPv4 total length, or the IPv6 payload length.
pub fn max_tcp_payload(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(_) => usize::from(u16::MAX) - IPV4_LEN - TCP_LEN,
        IpAddr::V6(_) => usize::from(u16::MAX) - TCP_LEN,
    }
}

/// Offset of the TCP payload in a frame to or from `ip`'s family, with `options` bytes of
/// TCP options (see `options_len`).
pub fn tcp_payload_offset(ip: IpAddr, options: usize) -> usize {
    ETH_LEN + ip_len(ip) + TCP_LEN + options
}

/// Offset of the UDP payload in a frame of `ip`'s family.
pub fn udp_payload_offset(ip: IpAddr) -> usize {
    ETH_LEN + ip_len(ip) + UDP_LEN
}

/// Length of an ICMP or ICMPv6 error's own header (type, code, checksum, 4 unused bytes).
pub const ICMP_ERROR_HEADER: usize = 8;

/// Writes Ethernet and IP headers for an L4 part of `l4_len` bytes; returns the L4 offset.
pub(super) fn l2_l3(
    buf: &mut [u8],
    l2: L2,
    src: IpAddr,
    dst: IpAddr,
    proto: IpProtocol,
    l4_len: usize,
) -> Result<usize, EmitError> {
    let ip = match (IpAddress::from(src), IpAddress::from(dst)) {
        (s @ IpAddress::Ipv4(_), d @ IpAddress::Ipv4(_))
        | (s @ IpAddress::Ipv6(_), d @ IpAddress::Ipv6(_)) => {
            IpRepr::new(s, d, proto, l4_len, HOP_LIMIT)
        }
        _ => return Err(EmitError::FamilyMismatch),
    };
    if l4_len > usize::from(u16::MAX) - ip.header_len() {
        return Err(EmitError::TooLong);
    }
    let total = ETH_LEN + ip.header_len() + l4_len;
    let frame = buf.get_mut(..total).ok_or(EmitError::BufferTooSmall)?;
    let ethertype = match ip {
        IpRepr::Ipv4(_) => EthernetProtocol::Ipv4,
        IpRepr::Ipv6(_) => EthernetProtocol::Ipv6,
    };
    let eth = EthernetRepr {
        src_addr: l2.src,
        dst_addr: l2.dst,
        ethertype,
    };
    eth.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    ip.emit(&mut frame[ETH_LEN..], &ChecksumCapabilities::default());
    Ok(ETH_LEN + ip.header_len())
}

/// Writes `hdr`'s options into `out` (exactly `hdr.options_len()` bytes).
fn write_options(out: &mut [u8], hdr: &TcpHeader) {
    let mut at = 0;
    if let Some((mss, scale)) = hdr.syn_options {
        let [m0, m1] = mss.to_be_bytes();
        // MSS (kind 2), then NOP + window scale (kind 3), or NOPs when not scaling.
        let opts: [u8; SYN_OPTIONS_LEN] = match scale {
            Some(shift) => [2, 4, m0, m1, 1, 3, 3, shift],
            None => [2, 4, m0, m1, 1, 1, 1, 1],
        };
        if let Some(o) = out.get_mut(..SYN_OPTIONS_LEN) {
            o.copy_from_slice(&opts);
        }
        at = SYN_OPTIONS_LEN;
    }
    if let Some((tsval, tsecr)) = hdr.timestamp {
        let mut opts = [1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0];
        opts[4..8].copy_from_slice(&tsval.to_be_bytes());
        opts[8..12].copy_from_slice(&tsecr.to_be_bytes());
        if let Some(o) = out.get_mut(at..at + TIMESTAMP_OPTION_LEN) {
            o.copy_from_slice(&opts);
        }
    }
}

/// Writes the headers of a TCP segment whose `payload_len` bytes already sit at
/// `tcp_payload_offset(src, hdr.options_len())`; returns the frame length.
pub fn tcp(
    buf: &mut [u8],
    l2: L2,
    src: IpAddr,
    dst: IpAddr,
    hdr: &TcpHeader,
    payload_len: usize,
    csum: Csum,
) -> Result<usize, EmitError> {
    let opt_len = hdr.options_len();
    let l4_len = TCP_LEN + opt_len + payload_len;
    let off = l2_l3(buf, l2, src, dst, IpProtocol::Tcp, l4_len)?;
    let seg = buf
        .get_mut(off..off + l4_len)
        .ok_or(EmitError::BufferTooSmall)?;
    let mut tcp = TcpPacket::new_unchecked(seg);
    tcp.set_src_port(hdr.src_port);
    tcp.set_dst_port(hdr.dst_port);
    tcp.set_seq_number(TcpSeqNumber(hdr.seq as i32));
    tcp.set_ack_number(TcpSeqNumber(if hdr.flags.ack { hdr.ack as i32 } else { 0 }));
    tcp.set_header_len((TCP_LEN + opt_len) as u8);
    tcp.clear_flags();
    tcp.set_syn(hdr.flags.syn);
    tcp.set_ack(hdr.flags.ack);
    tcp.set_fin(hdr.flags.fin);
    tcp.set_rst(hdr.flags.rst);
    tcp.set_psh(payload_len > 0);
    tcp.set_window_len(hdr.window);
    tcp.set_urgent_at(0);
    write_options(tcp.options_mut(), hdr);
    match csum {
        Csum::Full => tcp.fill_checksum(&src.into(), &dst.into()),
        Csum::Partial => {
            tcp.set_checksum(checksum::pseudo_header(
                &src.into(),
                &dst.into(),
                IpProtocol::Tcp,
                l4_len as u32,
            ));
        }
    }
    Ok(off + l4_len)
}

/// Writes the headers of a UDP datagram whose `payload_len` bytes already sit at
/// `udp_payload_offset(src.ip())`; returns the frame length.
pub fn udp(
    buf: &mut [u8],
    l2: L2,
    src: SocketAddr,
    dst: SocketAddr,
    payload_len: usize,
    csum: Csum,
) -> Result<usize, EmitError> {
    let l4_len = UDP_LEN + payload_len;
    let off = l2_l3(buf, l2, src.ip(), dst.ip(), IpProtocol::Udp, l4_len)?;
    let dgram = buf
        .get_mut(off..off + l4_len)
        .ok_or(EmitError::BufferTooSmall)?;
    let mut udp = UdpPacket::new_unchecked(dgram);
    udp.set_src_port(src.port());
    udp.set_dst_port(dst.port());
    udp.set_len(l4_len as u16);
    match csum {
        Csum::Full => udp.fill_checksum(&src.ip().into(), &dst.ip().into()),
        Csum::Partial => {
            udp.set_checksum(checksum::pseudo_header(
                &src.ip().into(),
                &dst.ip().into(),
                IpProtocol::Udp,
                l4_len as u32,
            ));
        }
    }
    Ok(off + l4_len)
}

/// Turns the ICMP or ICMPv6 message of `msg_len` bytes at `l4_offset(src)` (an echo reply as
/// a ping socket returns it) into a frame to the sandbox carrying `ident`; returns its length.
pub fn echo_reply(
    buf: &mut [u8],
    l2: L2,
    src: IpAddr,
    dst: IpAddr,
    ident: u16,
    msg_len: usize,
) -> Result<usize, EmitError> {
    let proto = match src {
        IpAddr::V4(_) => IpProtocol::Icmp,
        IpAddr::V6(_) => IpProtocol::Icmpv6,
    };
    let off = l2_l3(buf, l2, src, dst, proto, msg_len)?;
    let msg = buf
        .get_mut(off..off + msg_len)
        .ok_or(EmitError::BufferTooSmall)?;
    match (src, dst) {
        (IpAddr::V4(_), _) => {
            let mut icmp = Icmpv4Packet::new_checked(msg).map_err(|_| EmitError::BufferTooSmall)?;
            icmp.set_msg_type(Icmpv4Message::EchoReply);
            icmp.set_msg_code(0);
            icmp.set_echo_ident(ident);
            icmp.fill_checksum();
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut icmp = Icmpv6Packet::new_checked(msg).map_err(|_| EmitError::BufferTooSmall)?;
            icmp.set_msg_type(Icmpv6Message::EchoReply);
            icmp.set_msg_code(0);
            icmp.set_echo_ident(ident);
            icmp.fill_checksum(&s, &d);
        }
        _ => return Err(EmitError::FamilyMismatch),
    }
    Ok(off + msg_len)
}
