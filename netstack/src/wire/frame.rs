//! Parses one Ethernet frame from the tap into a `Frame`: ARP, or IP with a TCP/UDP/ICMP view.
//! Called once per frame by `event_loop`; borrows the frame, copies nothing, never panics.
//! Checksums are not verified: frames come from the sandbox's own kernel over a local tap.

use std::net::IpAddr;

use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet,
    TcpOption, TcpPacket, UdpPacket,
};

/// Why a frame was not understood; each variant is a drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than the header it claims to carry, or inconsistent lengths.
    #[error("truncated or malformed header")]
    Malformed,
    /// An IPv4 fragment; we do not reassemble (neither does pasta).
    #[error("IP fragment")]
    Fragment,
    /// IPv6 with extension headers we do not walk.
    #[error("unsupported IPv6 extension header")]
    Ipv6Extension,
}

/// Addresses and protocol of an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpMeta {
    /// Source address (the sandbox, for frames we read).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Next-header protocol.
    pub proto: IpProtocol,
}

/// TCP header flags we act on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpFlags {
    /// SYN
    pub syn: bool,
    /// ACK
    pub ack: bool,
    /// FIN
    pub fin: bool,
    /// RST
    pub rst: bool,
}

/// A parsed TCP segment: the header fields the translator needs and the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful when `flags.ack`).
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Raw (unscaled) window field.
    pub window: u16,
    /// MSS option, if present (SYN only).
    pub mss: Option<u16>,
    /// Window scale option, if present (SYN only).
    pub window_scale: Option<u8>,
    /// Timestamps option (TSval, TSecr), if present (RFC 7323).
    pub timestamp: Option<(u32, u32)>,
    /// Payload bytes.
    pub payload: &'a [u8],
}

/// The transport part of an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4<'a> {
    /// TCP segment.
    Tcp(TcpSegment<'a>),
    /// UDP datagram: ports and payload.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Payload bytes.
        payload: &'a [u8],
    },
    /// ICMP or ICMPv6 echo request: identifier, sequence number and data.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq: u16,
        /// The whole ICMP message (header and data), as a ping socket takes it.
        message: &'a [u8],
    },
    /// Any other protocol (other ICMP, ICMPv6): for the control plane or dropped.
    Other,
}

/// A classified frame from the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// ARP: goes to the control plane.
    Arp,
    /// An IP packet.
    Ip {
        /// Addresses and protocol.
        meta: IpMeta,
        /// The transport view.
        l4: L4<'a>,
    },
    /// An EtherType we do not carry.
    Unsupported,
}

/// Ethernet header of a frame read from the tap: who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ethernet {
    /// Source MAC (the sandbox's tap0).
    pub src: EthernetAddress,
}

const ICMPV4_ECHO_REQUEST: u8 = 8; // RFC 792
const ICMPV6_ECHO_REQUEST: u8 = 128; // RFC 4443

/// Parses `buf` (one Ethernet frame) into its source MAC and a `Frame` view.
pub fn parse(buf: &[u8]) -> Result<(Ethernet, Frame<'_>), ParseError> {
    let eth = EthernetFrame::new_checked(buf).map_err(|_| ParseError::Malformed)?;
    let src = Ethernet {
        src: eth.src_addr(),
    };
    let payload = &buf[EthernetFrame::<&[u8]>::header_len()..];
    let frame = match eth.ethertype() {
        EthernetProtocol::Arp => Frame::Arp,
        EthernetProtocol::Ipv4 => parse_ipv4(payload)?,
        EthernetProtocol::Ipv6 => parse_ipv6(payload)?,
        _ => Frame::Unsupported,
    };
    Ok((src, frame))
}

fn parse_ipv4(buf: &[u8]) -> Result<Frame<'_>, ParseError> {
    let ip = Ipv4Packet::new_checked(buf).map_err(|_| ParseError::Malformed)?;
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Err(ParseError::Fragment);
    }
    let header_len = usize::from(ip.header_len());
    let total_len = usize::from(ip.total_len());
    let payload = buf
        .get(header_len..total_len)
        .ok_or(ParseError::Malformed)?;
    let meta = IpMeta {
        src: IpAddr::V4(ip.src_addr()),
        dst: IpAddr::V4(ip.dst_addr()),
        proto: ip.next_header(),
    };
    Ok(Frame::Ip {
        meta,
        l4: parse_l4(meta.proto, payload)?,
    })
}

fn parse_ipv6(buf: &[u8]) -> Result<Frame<'_>, ParseError> {
    let ip = Ipv6Packet::new_checked(buf).map_err(|_| ParseError::Malformed)?;
    let header_len = ip.header_len();
    let payload_len = usize::from(ip.payload_len());
    let payload = buf
        .get(header_len..header_len + payload_len)
        .ok_or(ParseError::Malformed)?;
    let meta = IpMeta {
        src: IpAddr::V6(ip.src_addr()),
        dst: IpAddr::V6(ip.dst_addr()),
        proto: ip.next_header(),
    };
    let l4 = match meta.proto {
        IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Icmpv6 => parse_l4(meta.proto, payload)?,
        IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Frag => {
            return Err(ParseError::Ipv6Extension)
        }
        _ => L4::Other,
    };
    Ok(Frame::Ip { meta, l4 })
}

fn parse_l4(proto: IpProtocol, buf: &[u8]) -> Result<L4<'_>, ParseError> {
    match proto {
        IpProtocol::Tcp => parse_tcp(buf).map(L4::Tcp),
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(buf).map_err(|_| ParseError::Malformed)?;
            Ok(L4::Udp {
                src_port: udp.src_port(),
                dst_port: udp.dst_port(),
                payload: udp.payload(),
            })
        }
        IpProtocol::Icmp => Ok(parse_echo(buf, ICMPV4_ECHO_REQUEST)),
        IpProtocol::Icmpv6 => Ok(parse_echo(buf, ICMPV6_ECHO_REQUEST)),
        _ => Ok(L4::Other),
    }
}

/// An echo request (of the family whose request type is `request`), or `Other`.
fn parse_echo(buf: &[u8], request: u8) -> L4<'_> {
    match buf {
        [t, 0, _, _, i0, i1, s0, s1, ..] if *t == request => L4::EchoRequest {
            ident: u16::from_be_bytes([*i0, *i1]),
            seq: u16::from_be_bytes([*s0, *s1]),
            message: buf,
        },
        _ => L4::Other,
    }
}

fn parse_tcp(buf: &[u8]) -> Result<TcpSegment<'_>, ParseError> {
    let tcp = TcpPacket::new_checked(buf).map_err(|_| ParseError::Malformed)?;
    let mut mss = None;
    let mut window_scale = None;
    let mut timestamp = None;
    let mut options = tcp.options();
    while !options.is_empty() {
        let (rest, option) = TcpOption::parse(options).map_err(|_| ParseError::Malformed)?;
        match option {
            TcpOption::EndOfList => break,
            TcpOption::MaxSegmentSize(v) => mss = Some(v),
            TcpOption::WindowScale(v) => window_scale = Some(v),
            TcpOption::TimeStamp { tsval, tsecr } => timestamp = Some((tsval, tsecr)),
            _ => {}
        }
        options = rest;
    }
    Ok(TcpSegment {
        src_port: tcp.src_port(),
        dst_port: tcp.dst_port(),
        seq: tcp.seq_number().0 as u32,
        ack: tcp.ack_number().0 as u32,
        flags: TcpFlags {
            syn: tcp.syn(),
            ack: tcp.ack(),
            fin: tcp.fin(),
            rst: tcp.rst(),
        },
        window: tcp.window_len(),
        mss,
        window_scale,
        timestamp,
        payload: tcp.payload(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::emit::{self, TcpHeader, L2};

    fn l2() -> L2 {
        L2 {
            src: EthernetAddress([0x52, 0x55, 10, 0, 2, 2]),
            dst: EthernetAddress([2, 0, 0, 0, 0, 1]),
        }
    }

    #[test]
    fn emitted_tcp_syn_parses_back_with_options_and_valid_checksum() {
        let mut buf = [0u8; 128];
        let hdr = TcpHeader {
            src_port: 80,
            dst_port: 4000,
            seq: 7,
            ack: 9,
            flags: TcpFlags {
                syn: true,
                ack: true,
                ..TcpFlags::default()
            },
            window: 1000,
            syn_options: Some((1460, Some(7))),
            timestamp: Some((0x0102_0304, 0x0506_0708)),
        };
        let (src, dst) = ("10.0.2.2".parse().unwrap(), "10.0.2.100".parse().unwrap());
        let len = emit::tcp(&mut buf, l2(), src, dst, &hdr, 0, emit::Csum::Full).unwrap();
        let (eth, frame) = parse(&buf[..len]).unwrap();
        assert_eq!(eth.src, l2().src);
        let Frame::Ip {
            meta,
            l4: L4::Tcp(seg),
        } = frame
        else {
            panic!("not tcp: {frame:?}");
        };
        assert_eq!((meta.src, meta.dst), (src, dst));
        assert_eq!((seg.seq, seg.ack, seg.window), (7, 9, 1000));
        assert_eq!((seg.mss, seg.window_scale), (Some(1460), Some(7)));
        assert_eq!(seg.timestamp, Some((0x0102_0304, 0x0506_0708)));
        let tcp = TcpPacket::new_checked(&buf[34..len]).unwrap();
        assert!(tcp.verify_checksum(&src.into(), &dst.into()));
        let ip = Ipv4Packet::new_checked(&buf[14..len]).unwrap();
        assert!(ip.verify_checksum());
    }

    #[test]
    fn emitted_udp_v6_parses_back() {
        let mut buf = [0u8; 128];
        let src: std::net::SocketAddr = "[fd00::2]:53".parse().unwrap();
        let dst: std::net::SocketAddr = "[fd00::100]:5000".parse().unwrap();
        let off = emit::udp_payload_offset(src.ip());
        buf[off..off + 3].copy_from_slice(b"abc");
        let len = emit::udp(&mut buf, l2(), src, dst, 3, emit::Csum::Full).unwrap();
        let (_, frame) = parse(&buf[..len]).unwrap();
        assert!(matches!(
            frame,
            Frame::Ip {
                l4: L4::Udp {
                    src_port: 53,
                    dst_port: 5000,
                    payload: b"abc"
                },
                ..
            }
        ));
    }

    #[test]
    fn truncated_frames_are_errors_not_panics() {
        let mut buf = [0u8; 128];
        let src: std::net::SocketAddr = "10.0.2.2:53".parse().unwrap();
        let dst: std::net::SocketAddr = "10.0.2.100:5000".parse().unwrap();
        let len = emit::udp(&mut buf, l2(), src, dst, 20, emit::Csum::Full).unwrap();
        for cut in 0..len {
            let _ = parse(&buf[..cut]);
        }
        assert_eq!(parse(&buf[..20]), Err(ParseError::Malformed));
    }

    #[test]
    fn ipv4_fragments_are_refused() {
        let mut buf = [0u8; 128];
        let src: std::net::SocketAddr = "10.0.2.100:1".parse().unwrap();
        let dst: std::net::SocketAddr = "198.51.100.1:2".parse().unwrap();
        let len = emit::udp(&mut buf, l2(), src, dst, 8, emit::Csum::Full).unwrap();
        buf[14 + 6] = 0x20; // more-fragments flag
        assert_eq!(parse(&buf[..len]), Err(ParseError::Fragment));
    }

    /// An Ethernet frame carrying an echo request (ICMP or ICMPv6 by the addresses' family)
    /// with 4 bytes of data.
    fn echo_request_frame(
        src: std::net::IpAddr,
        dst: std::net::IpAddr,
        ident: u16,
        seq: u16,
    ) -> Vec<u8> {
        use std::net::IpAddr;
        let [i0, i1] = ident.to_be_bytes();
        let [s0, s1] = seq.to_be_bytes();
        let (ethertype, request) = match src {
            IpAddr::V4(_) => ([0x08, 0x00], 8),
            IpAddr::V6(_) => ([0x86, 0xdd], 128),
        };
        let icmp = [request, 0, 0, 0, i0, i1, s0, s1, b'p', b'i', b'n', b'g'];
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&ethertype);
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                frame.extend_from_slice(&[0x45, 0, 0, 32, 0, 0, 0, 0, 64, 1, 0, 0]);
                frame.extend_from_slice(&s.octets());
                frame.extend_from_slice(&d.octets());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                frame.extend_from_slice(&[0x60, 0, 0, 0, 0, 12, 58, 64]);
                frame.extend_from_slice(&s.octets());
                frame.extend_from_slice(&d.octets());
            }
            _ => panic!("mixed families"),
        }
        frame.extend_from_slice(&icmp);
        frame
    }

    /// (ident, seq, message length) of the echo request `frame` parses to.
    fn parsed_echo(frame: &[u8]) -> (u16, u16, usize) {
        match parse(frame) {
            Ok((
                _,
                Frame::Ip {
                    l4:
                        L4::EchoRequest {
                            ident,
                            seq,
                            message,
                        },
                    ..
                },
            )) => (ident, seq, message.len()),
            other => panic!("not an echo request: {other:?}"),
        }
    }

    #[test]
    fn echo_request_carries_whole_message() {
        let frame = echo_request_frame(
            "10.0.2.100".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
            0x1234,
            5,
        );
        assert_eq!(parsed_echo(&frame), (0x1234, 5, 12));
    }

    #[test]
    fn icmpv6_echo_request_parses_and_reply_is_emitted_with_valid_checksum() {
        use smoltcp::wire::{Icmpv6Packet, Ipv6Address};
        let src: std::net::IpAddr = "fd00::100".parse().unwrap();
        let dst: std::net::IpAddr = "2001:db8::1".parse().unwrap();
        let frame = echo_request_frame(src, dst, 0xabcd, 9);
        assert_eq!(parsed_echo(&frame), (0xabcd, 9, 12));

        // A reply as a ping socket returns it (kernel's identifier), turned into a frame.
        let mut buf = [0u8; 128];
        let off = emit::l4_offset(dst);
        buf[off..off + 12]
            .copy_from_slice(&[129, 0, 0, 0, 0x11, 0x11, 0, 9, b'p', b'i', b'n', b'g']);
        let len = emit::echo_reply(&mut buf, l2(), dst, src, 0xabcd, 12).unwrap();
        let icmp = Icmpv6Packet::new_checked(&buf[off..len]).unwrap();
        assert_eq!((icmp.echo_ident(), icmp.echo_seq_no()), (0xabcd, 9));
        let (s, d): (Ipv6Address, Ipv6Address) = match (dst, src) {
            (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => (s, d),
            _ => unreachable!(),
        };
        assert!(icmp.verify_checksum(&s, &d));
    }
}
