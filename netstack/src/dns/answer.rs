//! What the egress policy reads from DNS messages: a question's name as lowercase text, and
//! the A/AAAA records of an answer section with their TTLs (RFC 1035 4.1.3, RFC 3596).
//! Called by `dns::gate` once per query and per answer when a policy watches DNS; decides
//! nothing, allocates nothing (the name goes into the caller's buffer), never panics.
//!
//! Extending our own walker rather than taking a crate (simple-dns, hickory-proto, domain):
//! the forwarder already validated the header and question, so all that is left is skipping
//! owner names (labels, or a compression pointer that ends them: we never follow one, since
//! only the record's type, class, TTL and data are read) and reading four fixed fields, some
//! forty lines; simple-dns would parse every record of every section into owned or borrowed
//! structures, and the others allocate per message.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::message::{Packet, HEADER_LEN, MAX_NAME_LEN};

/// Record types read (RFC 1035 3.2.2, RFC 3596 2.1).
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
/// Class IN (RFC 1035 3.2.4).
const CLASS_IN: u16 = 1;
/// TYPE, CLASS, TTL and RDLENGTH after an owner name (RFC 1035 4.1.3).
const RR_FIXED: usize = 10;
/// A length octet with both top bits set is a compression pointer, two octets long.
const POINTER: u8 = 0xc0;

/// The first question's name of `packet` as lowercase dotted text in `buf` (the root is the
/// empty string). `None` when the question does not parse or a label holds a byte no rule
/// can name (anything but letters, digits, `-` and `_`): such a name matches no rule.
pub fn question_name<'b, T: AsRef<[u8]>>(
    packet: &Packet<T>,
    buf: &'b mut [u8; MAX_NAME_LEN],
) -> Option<&'b str> {
    let question = packet.question().ok()?;
    let mut at = 0;
    let mut len = 0;
    loop {
        let n = usize::from(*question.get(at)?);
        if n == 0 {
            break;
        }
        let label = question.get(at + 1..at + 1 + n)?;
        if len > 0 {
            *buf.get_mut(len)? = b'.';
            len += 1;
        }
        for &b in label {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return None;
            }
            *buf.get_mut(len)? = b.to_ascii_lowercase();
            len += 1;
        }
        at += 1 + n;
    }
    std::str::from_utf8(buf.get(..len)?).ok()
}

/// The A and AAAA records (class IN) of `packet`'s answer section, with their TTLs; stops
/// quietly at the first record that does not parse.
pub fn addresses<T: AsRef<[u8]>>(packet: &Packet<T>) -> Addresses<'_> {
    let start = packet.question_len().ok().map(|q| HEADER_LEN + q);
    Addresses {
        buf: packet.as_bytes(),
        at: start.unwrap_or(usize::MAX),
        left: packet.ancount(),
    }
}

/// Iterator over an answer section's addresses (see `addresses`).
#[derive(Debug)]
pub struct Addresses<'a> {
    buf: &'a [u8],
    at: usize,
    left: u16,
}

impl Iterator for Addresses<'_> {
    type Item = (IpAddr, u32);

    fn next(&mut self) -> Option<(IpAddr, u32)> {
        while self.left > 0 {
            self.left -= 1;
            let Some((record, next)) = self.record() else {
                self.left = 0;
                return None;
            };
            self.at = next;
            if record.is_some() {
                return record;
            }
        }
        None
    }
}

impl Addresses<'_> {
    /// The record at `at`: its address if it is an A or AAAA of class IN, and where the
    /// next record starts.
    fn record(&self) -> Option<(Option<(IpAddr, u32)>, usize)> {
        let at = skip_name(self.buf, self.at)?;
        let fixed = self.buf.get(at..at + RR_FIXED)?;
        let u16_at = |i: usize| u16::from_be_bytes([fixed[i], fixed[i + 1]]);
        let (rtype, class) = (u16_at(0), u16_at(2));
        let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let rdlen = usize::from(u16_at(8));
        let data = self.buf.get(at + RR_FIXED..at + RR_FIXED + rdlen)?;
        let next = at + RR_FIXED + rdlen;
        let ip = match (class, rtype, data.len()) {
            (CLASS_IN, TYPE_A, 4) => {
                let o: [u8; 4] = data.try_into().ok()?;
                Some(IpAddr::V4(Ipv4Addr::from(o)))
            }
            (CLASS_IN, TYPE_AAAA, 16) => {
                let o: [u8; 16] = data.try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(o)))
            }
            _ => None,
        };
        // A TTL with the top bit set is treated as zero (RFC 2181 8).
        let ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
        Some((ip.map(|ip| (ip, ttl)), next))
    }
}

/// Offset just past the owner name at `at`: plain labels ending in the root, or ending in a
/// compression pointer (two octets, not followed).
fn skip_name(buf: &[u8], mut at: usize) -> Option<usize> {
    for _ in 0..MAX_NAME_LEN {
        let len = *buf.get(at)?;
        if len & POINTER == POINTER {
            buf.get(at + 1)?;
            return Some(at + 2);
        }
        if len & POINTER != 0 {
            return None;
        }
        at += 1 + usize::from(len);
        if len == 0 {
            return Some(at);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer for Pypi.Org A: a CNAME to x.fastly.example (pointer-compressed owner), then
    /// an A and an AAAA for it, and a TXT that is skipped.
    fn answer() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 4, 0, 0, 0, 0];
        m.extend_from_slice(&[
            4, b'P', b'y', b'p', b'i', 3, b'O', b'r', b'g', 0, 0, 1, 0, 1,
        ]);
        // CNAME, owner = pointer to the question name (offset 12).
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4, 1, b'x', 0xc0, 12]);
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 198, 51, 100, 7]);
        m.extend_from_slice(&[0xc0, 12, 0, 28, 0, 1, 0x80, 0, 0, 0, 0, 16]);
        m.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        m.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 2, 1, b'z']);
        m
    }

    #[test]
    fn reads_a_and_aaaa_past_cnames_and_compressed_owners() {
        let m = answer();
        let p = Packet::new_checked(&m[..]).unwrap();
        let got: Vec<(IpAddr, u32)> = addresses(&p).collect();
        assert_eq!(
            got,
            [
                ("198.51.100.7".parse().unwrap(), 300),
                ("2001:db8::9".parse().unwrap(), 0),
            ]
        );
        let mut buf = [0; MAX_NAME_LEN];
        assert_eq!(question_name(&p, &mut buf), Some("pypi.org"));
    }

    #[test]
    fn every_truncation_stops_quietly() {
        let m = answer();
        for len in HEADER_LEN..m.len() {
            let p = Packet::new_checked(&m[..len]).unwrap();
            let n = addresses(&p).count();
            assert!(n <= 2, "cut at {len}");
        }
        let mut lying = answer();
        lying[7] = 200; // ANCOUNT far above what follows
        let p = Packet::new_checked(&lying[..]).unwrap();
        assert_eq!(addresses(&p).count(), 2);
    }

    #[test]
    fn names_with_bytes_no_rule_can_hold_are_none_and_the_root_is_empty() {
        let mut m = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[3, b'a', b'.', b'b', 0, 0, 1, 0, 1]);
        let p = Packet::new_checked(&m[..]).unwrap();
        let mut buf = [0; MAX_NAME_LEN];
        assert_eq!(question_name(&p, &mut buf), None);
        let mut root = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        root.extend_from_slice(&[0, 0, 2, 0, 1]);
        let p = Packet::new_checked(&root[..]).unwrap();
        assert_eq!(question_name(&p, &mut buf), Some(""));
    }
}
