//! DNS messages (RFC 1035 §4) as far as the DNS tests need them: build a query, read a query's
//! question, build a reply with A/AAAA answers or an error rcode, read a reply's rcode and
//! addresses, and frame a message for TCP (§4.2.2). Shared by `rr-probe` (the client in the
//! sandbox) and `resolver` (the fake upstream the test starts on the host's loopback).
//! Pure functions on byte slices: no I/O, never panics on input; a parse error says what broke.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Header length (RFC 1035 §4.1.1).
pub const HEADER_LEN: usize = 12;
/// QTYPE A (RFC 1035 §3.2.2).
pub const TYPE_A: u16 = 1;
/// QTYPE AAAA (RFC 3596 §2.1).
pub const TYPE_AAAA: u16 = 28;
/// CLASS IN (RFC 1035 §3.2.4).
pub const CLASS_IN: u16 = 1;
/// RCODE 0, no error (RFC 1035 §4.1.1).
pub const RCODE_NOERROR: u8 = 0;
/// RCODE 2, server failure (RFC 1035 §4.1.1).
pub const RCODE_SERVFAIL: u8 = 2;
/// RCODE 3, name error (RFC 1035 §4.1.1).
pub const RCODE_NXDOMAIN: u8 = 3;

/// QR bit: the message is a response.
const FLAG_QR: u16 = 0x8000;
/// RD bit: recursion desired.
const FLAG_RD: u16 = 0x0100;
/// RA bit: recursion available.
const FLAG_RA: u16 = 0x0080;
/// Longest label (RFC 1035 §2.3.4).
const MAX_LABEL: usize = 63;
/// Bound on compression pointers followed in one name: more is a loop.
const MAX_POINTERS: usize = 16;
/// TTL of the answers we build.
const TTL: u32 = 60;

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than a header, or a field runs past the end.
    #[error("truncated at byte {0}")]
    Truncated(usize),
    /// A label length with the reserved top bits 01 or 10, or over 63.
    #[error("bad label length byte {0:#04x}")]
    BadLabel(u8),
    /// Compression pointers that loop or go forward.
    #[error("compression pointer loop")]
    PointerLoop,
    /// A query that is a response, or does not ask exactly one question.
    #[error("not a one-question query (flags {flags:#06x}, {questions} questions)")]
    NotAQuery {
        /// The header's flags.
        flags: u16,
        /// QDCOUNT.
        questions: u16,
    },
    /// A reply without the QR bit.
    #[error("not a response (flags {0:#06x})")]
    NotAResponse(u16),
}

/// The fixed header (RFC 1035 §4.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// ID.
    pub id: u16,
    /// QR, OPCODE, AA, TC, RD, RA, Z and RCODE.
    pub flags: u16,
    /// QDCOUNT.
    pub questions: u16,
    /// ANCOUNT.
    pub answers: u16,
}

impl Header {
    /// Reads the header of `msg`.
    pub fn parse(msg: &[u8]) -> Result<Header, WireError> {
        if msg.len() < HEADER_LEN {
            return Err(WireError::Truncated(msg.len()));
        }
        Ok(Header {
            id: be16(msg, 0)?,
            flags: be16(msg, 2)?,
            questions: be16(msg, 4)?,
            answers: be16(msg, 6)?,
        })
    }

    /// RCODE (the low four bits of the flags).
    pub fn rcode(&self) -> u8 {
        (self.flags & 0x000f) as u8
    }
}

/// The one question of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The name, lower-case, dot-separated, without the trailing dot.
    pub name: String,
    /// QTYPE.
    pub qtype: u16,
}

/// A reply as the probe reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The header.
    pub header: Header,
    /// The A and AAAA answers, in order (other types are skipped).
    pub addrs: Vec<IpAddr>,
}

/// A query for `name` (dot-separated) of type `qtype`, recursion desired.
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut msg = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    for word in [id, FLAG_RD, 1, 0, 0, 0] {
        msg.extend_from_slice(&word.to_be_bytes());
    }
    push_name(&mut msg, name);
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&CLASS_IN.to_be_bytes());
    msg
}

/// Reads a query: a message without QR, with exactly one well-formed question.
pub fn parse_query(msg: &[u8]) -> Result<(Header, Question), WireError> {
    let header = Header::parse(msg)?;
    if header.flags & FLAG_QR != 0 || header.questions != 1 {
        return Err(WireError::NotAQuery {
            flags: header.flags,
            questions: header.questions,
        });
    }
    let (name, end) = read_name(msg, HEADER_LEN)?;
    let qtype = be16(msg, end)?;
    be16(msg, end + 2)?; // QCLASS must be there too
    Ok((header, Question { name, qtype }))
}

/// A reply to `query` (which `parse_query` accepted) with `rcode` and one answer per address
/// of the asked family, each naming the question through a compression pointer.
pub fn reply(query: &[u8], rcode: u8, addrs: &[IpAddr]) -> Result<Vec<u8>, WireError> {
    let (header, question) = parse_query(query)?;
    let wanted: Vec<&IpAddr> = addrs
        .iter()
        .filter(|a| match question.qtype {
            TYPE_A => a.is_ipv4(),
            TYPE_AAAA => a.is_ipv6(),
            _ => false,
        })
        .collect();
    let flags = FLAG_QR | (header.flags & FLAG_RD) | FLAG_RA | u16::from(rcode & 0x0f);
    let count = u16::try_from(wanted.len()).unwrap_or(u16::MAX);
    let mut msg = Vec::new();
    for word in [header.id, flags, 1, count, 0, 0] {
        msg.extend_from_slice(&word.to_be_bytes());
    }
    push_name(&mut msg, &question.name);
    msg.extend_from_slice(&question.qtype.to_be_bytes());
    msg.extend_from_slice(&CLASS_IN.to_be_bytes());
    for addr in wanted {
        // A pointer to the question's name, at the end of the header (RFC 1035 §4.1.4).
        msg.extend_from_slice(&(0xc000 | HEADER_LEN as u16).to_be_bytes());
        let (rtype, rdata) = match addr {
            IpAddr::V4(a) => (TYPE_A, a.octets().to_vec()),
            IpAddr::V6(a) => (TYPE_AAAA, a.octets().to_vec()),
        };
        msg.extend_from_slice(&rtype.to_be_bytes());
        msg.extend_from_slice(&CLASS_IN.to_be_bytes());
        msg.extend_from_slice(&TTL.to_be_bytes());
        msg.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        msg.extend_from_slice(&rdata);
    }
    Ok(msg)
}

/// Reads a reply: its header and the addresses in its A and AAAA answers.
pub fn parse_reply(msg: &[u8]) -> Result<Reply, WireError> {
    let header = Header::parse(msg)?;
    if header.flags & FLAG_QR == 0 {
        return Err(WireError::NotAResponse(header.flags));
    }
    let mut at = HEADER_LEN;
    for _ in 0..header.questions {
        at = read_name(msg, at)?.1 + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..header.answers {
        at = read_name(msg, at)?.1;
        let rtype = be16(msg, at)?;
        let len = usize::from(be16(msg, at + 8)?);
        let data = msg
            .get(at + 10..at + 10 + len)
            .ok_or(WireError::Truncated(at + 10))?;
        match (rtype, <[u8; 4]>::try_from(data), <[u8; 16]>::try_from(data)) {
            (TYPE_A, Ok(v4), _) => addrs.push(IpAddr::V4(Ipv4Addr::from(v4))),
            (TYPE_AAAA, _, Ok(v6)) => addrs.push(IpAddr::V6(Ipv6Addr::from(v6))),
            _ => {}
        }
        at += 10 + len;
    }
    Ok(Reply { header, addrs })
}

/// `msg` with the two-byte length prefix of DNS over TCP (RFC 1035 §4.2.2).
pub fn tcp_frame(msg: &[u8]) -> Vec<u8> {
    let len = u16::try_from(msg.len()).expect("test messages are far below 64 KiB");
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(msg);
    out
}

fn be16(msg: &[u8], at: usize) -> Result<u16, WireError> {
    msg.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(WireError::Truncated(at))
}

fn push_name(msg: &mut Vec<u8>, name: &str) {
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        let label = &label.as_bytes()[..label.len().min(MAX_LABEL)];
        msg.push(label.len() as u8);
        msg.extend_from_slice(label);
    }
    msg.push(0);
}

/// Reads the name at `start`: (name, offset just past it where it starts).
fn read_name(msg: &[u8], start: usize) -> Result<(String, usize), WireError> {
    let mut labels: Vec<String> = Vec::new();
    let mut at = start;
    let mut end = None;
    let mut pointers = 0;
    loop {
        let len = *msg.get(at).ok_or(WireError::Truncated(at))?;
        match len {
            0 => {
                let end = end.unwrap_or(at + 1);
                return Ok((labels.join("."), end));
            }
            l if l & 0xc0 == 0xc0 => {
                let target = usize::from(be16(msg, at)? & 0x3fff);
                pointers += 1;
                if pointers > MAX_POINTERS || target >= at {
                    return Err(WireError::PointerLoop);
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            l if l & 0xc0 != 0 || usize::from(l) > MAX_LABEL => return Err(WireError::BadLabel(l)),
            l => {
                let label = msg
                    .get(at + 1..at + 1 + usize::from(l))
                    .ok_or(WireError::Truncated(at + 1))?;
                labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
                at += 1 + usize::from(l);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `example.org A?`, id 0x1234, RD, as dig sends it (without EDNS).
    const QUERY: [u8; 29] = [
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e', b'x', b'a', b'm', b'p', b'l',
        b'e', 3, b'o', b'r', b'g', 0, 0, 1, 0, 1,
    ];

    #[test]
    fn query_encodes_header_name_type_and_class() {
        assert_eq!(query(0x1234, "example.org", TYPE_A), QUERY);
        assert_eq!(query(0x1234, "example.org.", TYPE_A), QUERY);
    }

    #[test]
    fn parse_query_reads_the_question() {
        let (h, q) = parse_query(&QUERY).expect("a valid query");
        assert_eq!((h.id, h.questions), (0x1234, 1));
        assert_eq!(
            q,
            Question {
                name: "example.org".to_owned(),
                qtype: TYPE_A
            }
        );
    }

    #[test]
    fn parse_query_rejects_malformed_messages() {
        assert_eq!(parse_query(&QUERY[..3]), Err(WireError::Truncated(3)));
        assert_eq!(parse_query(&QUERY[..16]), Err(WireError::Truncated(13)));
        let mut response = QUERY;
        response[2] |= 0x80;
        assert!(matches!(
            parse_query(&response),
            Err(WireError::NotAQuery { .. })
        ));
        let mut bad_label = QUERY;
        bad_label[12] = 0x47;
        assert_eq!(parse_query(&bad_label), Err(WireError::BadLabel(0x47)));
        let mut looped = QUERY.to_vec();
        looped.truncate(12);
        looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_query(&looped), Err(WireError::PointerLoop));
    }

    #[test]
    fn reply_answers_the_asked_family_through_a_pointer() {
        let addrs = [
            IpAddr::from([198, 51, 100, 53]),
            IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x53)),
        ];
        let msg = reply(&QUERY, RCODE_NOERROR, &addrs).expect("reply");
        assert_eq!(&msg[..4], &[0x12, 0x34, 0x81, 0x80]);
        assert_eq!(
            &msg[msg.len() - 16..msg.len() - 4],
            &[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]
        );
        let r = parse_reply(&msg).expect("parse our reply");
        assert_eq!((r.header.rcode(), r.addrs.as_slice()), (0, &addrs[..1]));
    }

    #[test]
    fn reply_with_error_rcode_has_no_answers() {
        let msg = reply(&QUERY, RCODE_SERVFAIL, &[]).expect("reply");
        let r = parse_reply(&msg).expect("parse");
        assert_eq!((r.header.rcode(), r.header.answers), (RCODE_SERVFAIL, 0));
        assert!(r.addrs.is_empty());
    }

    #[test]
    fn parse_reply_refuses_a_query() {
        assert!(matches!(
            parse_reply(&QUERY),
            Err(WireError::NotAResponse(_))
        ));
    }

    #[test]
    fn tcp_frame_prefixes_the_length() {
        assert_eq!(tcp_frame(&[7, 8, 9]), [0, 3, 7, 8, 9]);
    }
}
