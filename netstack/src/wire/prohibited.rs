//! Writes the ICMP errors that tell the sandbox a datagram went nowhere: destination
//! unreachable, either "administratively prohibited" (ICMPv4 code 13, RFC 1812 5.2.7.1;
//! ICMPv6 code 1, RFC 4443 3.1) when the egress policy denies it, or "port unreachable"
//! (ICMPv4 code 3, RFC 792; ICMPv6 code 4, RFC 4443 3.1) when the helper has no flow or
//! socket left to carry it (`event_loop::exhaustion`). The sandbox's kernel hands it to the
//! socket the quoted packet came from: a connected UDP socket's next call fails with
//! EHOSTUNREACH or EACCES (prohibited) or ECONNREFUSED (port unreachable), and ping reports it.
//! Called by the event loop; decides nothing, never allocates, never panics.

use std::net::IpAddr;

use smoltcp::wire::{Icmpv4Message, Icmpv4Packet, Icmpv6Message, Icmpv6Packet, IpProtocol};

use super::emit::{l2_l3, EmitError, ICMP_ERROR_HEADER};
use super::L2;

/// ICMPv4 code 13 (RFC 1812 5.2.7.1).
const CODE_V4_PROHIBITED: u8 = 13;
/// ICMPv6 code 1 (RFC 4443 3.1).
const CODE_V6_PROHIBITED: u8 = 1;
/// ICMPv4 code 3, port unreachable (RFC 792).
const CODE_V4_PORT: u8 = 3;
/// ICMPv6 code 4, port unreachable (RFC 4443 3.1).
const CODE_V6_PORT: u8 = 4;
/// Bytes of the offending datagram's payload an ICMPv4 error quotes after its IP header
/// (RFC 792: "the first 64 bits"; enough for the ports).
const V4_QUOTE_PAYLOAD: usize = 8;
/// Whole IPv6 error packets stay within the minimum MTU (RFC 4443 2.4 (c)).
const V6_MIN_MTU: usize = 1280;
/// IPv6 header length.
const V6_HEADER: usize = 40;

/// Writes a frame from `from` to `to` saying `original` (the offending IP packet, header
/// first) was administratively prohibited; returns the frame length.
pub fn admin_prohibited(
    buf: &mut [u8],
    l2: L2,
    from: IpAddr,
    to: IpAddr,
    original: &[u8],
) -> Result<usize, EmitError> {
    unreachable(
        buf,
        l2,
        (from, to),
        original,
        (CODE_V4_PROHIBITED, CODE_V6_PROHIBITED),
    )
}

/// Writes a frame from `from` to `to` saying nothing listens where `original` (the offending
/// IP packet, header first) went: port unreachable; returns the frame length.
pub fn port_unreachable(
    buf: &mut [u8],
    l2: L2,
    from: IpAddr,
    to: IpAddr,
    original: &[u8],
) -> Result<usize, EmitError> {
    unreachable(buf, l2, (from, to), original, (CODE_V4_PORT, CODE_V6_PORT))
}

/// A destination unreachable error with code `codes.0` (ICMPv4) or `codes.1` (ICMPv6).
fn unreachable(
    buf: &mut [u8],
    l2: L2,
    (from, to): (IpAddr, IpAddr),
    original: &[u8],
    (code_v4, code_v6): (u8, u8),
) -> Result<usize, EmitError> {
    let quote = match from {
        IpAddr::V4(_) => {
            let ihl = usize::from(original.first().copied().unwrap_or(0) & 0x0f) * 4;
            &original[..original.len().min(ihl + V4_QUOTE_PAYLOAD)]
        }
        IpAddr::V6(_) => {
            let room = V6_MIN_MTU - V6_HEADER - ICMP_ERROR_HEADER;
            &original[..original.len().min(room)]
        }
    };
    let proto = match from {
        IpAddr::V4(_) => IpProtocol::Icmp,
        IpAddr::V6(_) => IpProtocol::Icmpv6,
    };
    let len = ICMP_ERROR_HEADER + quote.len();
    let off = l2_l3(buf, l2, from, to, proto, len)?;
    let msg = buf
        .get_mut(off..off + len)
        .ok_or(EmitError::BufferTooSmall)?;
    msg.fill(0);
    msg[ICMP_ERROR_HEADER..].copy_from_slice(quote);
    match (from, to) {
        (IpAddr::V4(_), IpAddr::V4(_)) => {
            let mut icmp = Icmpv4Packet::new_unchecked(msg);
            icmp.set_msg_type(Icmpv4Message::DstUnreachable);
            icmp.set_msg_code(code_v4);
            icmp.fill_checksum();
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut icmp = Icmpv6Packet::new_unchecked(msg);
            icmp.set_msg_type(Icmpv6Message::DstUnreachable);
            icmp.set_msg_code(code_v6);
            icmp.fill_checksum(&s, &d);
        }
        _ => return Err(EmitError::FamilyMismatch),
    }
    Ok(off + len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{EthernetAddress, EthernetFrame, Ipv4Packet, Ipv6Packet};

    const L: L2 = L2 {
        src: EthernetAddress([0x52, 0x55, 10, 0, 2, 2]),
        dst: EthernetAddress([2, 0, 0, 0, 0, 1]),
    };

    #[test]
    fn v4_error_quotes_header_and_eight_bytes_with_valid_checksums() {
        // A 20-byte IPv4 header (UDP) then 12 bytes of UDP header and payload.
        let mut original = vec![
            0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 2, 100, 198, 51, 100, 1,
        ];
        original.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]);
        let mut buf = [0u8; 200];
        let n = admin_prohibited(
            &mut buf,
            L,
            "10.0.2.2".parse().unwrap(),
            "10.0.2.100".parse().unwrap(),
            &original,
        )
        .unwrap();
        let eth = EthernetFrame::new_checked(&buf[..n]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(
            (icmp.msg_type(), icmp.msg_code()),
            (Icmpv4Message::DstUnreachable, 13)
        );
        assert_eq!(icmp.data(), &original[..28]);
    }

    #[test]
    fn port_unreachable_is_code_3_in_v4_and_code_4_in_v6() {
        let original = [
            0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 2, 100, 10, 0, 2, 2, 0x30, 0x39, 0,
            9, 0, 8, 0, 0,
        ];
        let mut buf = [0u8; 200];
        let (gw, me) = ("10.0.2.2".parse().unwrap(), "10.0.2.100".parse().unwrap());
        let n = port_unreachable(&mut buf, L, gw, me, &original).unwrap();
        let eth = EthernetFrame::new_checked(&buf[..n]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(
            (icmp.msg_type(), icmp.msg_code()),
            (Icmpv4Message::DstUnreachable, 3)
        );
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        v6.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        v6.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        v6.extend_from_slice(&[0x30, 0x39, 0, 9, 0, 8, 0, 0]);
        let (s, d): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
            ("fd00::2".parse().unwrap(), "fd00::100".parse().unwrap());
        let n = port_unreachable(&mut buf, L, s.into(), d.into(), &v6).unwrap();
        let eth = EthernetFrame::new_checked(&buf[..n]).unwrap();
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(&s, &d));
        assert_eq!(
            (icmp.msg_type(), icmp.msg_code()),
            (Icmpv6Message::DstUnreachable, 4)
        );
    }

    #[test]
    fn v6_error_is_code_one_and_fits_the_minimum_mtu() {
        let mut original = vec![0x60, 0, 0, 0, 0x07, 0xd0, 17, 64];
        original.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        original.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        original.resize(40 + 2000, 0xab);
        let mut buf = [0u8; 4000];
        let (s, d): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
            ("fd00::2".parse().unwrap(), "fd00::100".parse().unwrap());
        let n = admin_prohibited(&mut buf, L, s.into(), d.into(), &original).unwrap();
        assert_eq!(n, 14 + 1280);
        let eth = EthernetFrame::new_checked(&buf[..n]).unwrap();
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(&s, &d));
        assert_eq!(
            (icmp.msg_type(), icmp.msg_code()),
            (Icmpv6Message::DstUnreachable, 1)
        );
        assert_eq!(icmp.payload(), &original[..1280 - 48]);
        assert!(admin_prohibited(
            &mut buf,
            L,
            s.into(),
            "10.0.2.100".parse().unwrap(),
            &original
        )
        .is_err());
    }
}
