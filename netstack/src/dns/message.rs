//! DNS message view: the header fields and question-section bounds the forwarder needs, and
//! the SERVFAIL answer it builds from a query, in place (RFC 1035 section 4.1).
//! Called by `dns::Forwarder` once per query from the sandbox and once per upstream answer;
//! decides nothing (the forwarder does), allocates nothing, never panics on any input.
//!
//! Hand-written rather than smoltcp's `wire::dns`, which we looked at first: its `Question`
//! rejects every class but IN (`dig CH TXT version.bind` would be malformed), it walks
//! compression pointers in a question instead of refusing them, it has no bound on a name's
//! length and no RCODE setter. Parsing resource records (hickory-proto, domain) is more than a
//! forwarder needs and allocates per message. What we read is one 12-byte header and a walk
//! over labels, about as long as the glue around a crate would be.
//!
//! Shape: `Packet` is a view over bytes whose getters cannot panic (its constructor checks
//! the header is there); `Query` is the validated repr of a query, kept by the forwarder so
//! a SERVFAIL is written later without parsing the bytes again.

use std::fmt;

/// Length of the fixed header (RFC 1035 4.1.1).
pub const HEADER_LEN: usize = 12;
/// Longest name on the wire, length octets and root label included (RFC 1035 2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// QTYPE and QCLASS after a question's name (RFC 1035 4.1.2).
const QUESTION_FIXED_LEN: usize = 4;
/// Longest header plus one question: what a SERVFAIL answer can need of its query.
pub const MAX_QUERY_HEAD: usize = HEADER_LEN + MAX_NAME_LEN + QUESTION_FIXED_LEN;

/// Header flag bits (RFC 1035 4.1.1; AD and CD from RFC 4035 3.2).
mod flag {
    /// Query (0) or response (1).
    pub const QR: u16 = 0x8000;
    /// Opcode, four bits.
    pub const OPCODE_SHIFT: u16 = 11;
    pub const OPCODE_MASK: u16 = 0x0f;
    /// Recursion desired.
    pub const RD: u16 = 0x0100;
    /// Recursion available.
    pub const RA: u16 = 0x0080;
    /// Checking disabled: a server copies it into the response (RFC 4035 3.2.2).
    pub const CD: u16 = 0x0010;
    /// Response code, four bits.
    pub const RCODE_MASK: u16 = 0x000f;
}

/// Header field offsets (RFC 1035 4.1.1).
mod field {
    pub const ID: usize = 0;
    pub const FLAGS: usize = 2;
    pub const QDCOUNT: usize = 4;
    pub const ANCOUNT: usize = 6;
    pub const NSCOUNT: usize = 8;
    pub const ARCOUNT: usize = 10;
}

/// Label-type bits of a length octet (RFC 1035 4.1.4; 0x40/0x80 are reserved, RFC 6891 5).
const LABEL_TYPE_MASK: u8 = 0xc0;
const LABEL_POINTER: u8 = 0xc0;
const LABEL_NORMAL: u8 = 0x00;

/// RCODE 2: the server could not process the query (RFC 1035 4.1.1).
pub const RCODE_SERVFAIL: u8 = 2;
/// RCODE 5: the server refuses the query for policy reasons (RFC 1035 4.1.1); the egress
/// policy's answer to a name no rule allows.
pub const RCODE_REFUSED: u8 = 5;

/// Why bytes are not a message the forwarder accepts; the forwarder counts them as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Shorter than the header, or a name or question runs past the end.
    #[error("truncated message")]
    Truncated,
    /// A compression pointer in a question's name (legal only in answers).
    #[error("compression pointer in a question")]
    CompressedName,
    /// A name longer than 255 octets.
    #[error("name longer than 255 octets")]
    NameTooLong,
    /// A length octet with the reserved label types 0x40 or 0x80.
    #[error("reserved label type")]
    LabelType,
    /// QR is set: a response, not a query.
    #[error("not a query")]
    NotQuery,
    /// QDCOUNT is not 1.
    #[error("question count is not 1")]
    QuestionCount,
}

/// A view of a DNS message; every getter is safe on any bytes `new_checked` accepted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> fmt::Debug for Packet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("dns::Packet")
            .field("id", &self.id())
            .field("flags", &format_args!("{:#06x}", self.flags()))
            .field("qdcount", &self.qdcount())
            .field("len", &self.buffer.as_ref().len())
            .finish()
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` if it holds at least the 12-byte header.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, MessageError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(MessageError::Truncated);
        }
        Ok(Packet { buffer })
    }

    /// The bytes viewed.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        // `new_checked` guarantees HEADER_LEN bytes and every field lies inside them.
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    /// Transaction id.
    pub fn id(&self) -> u16 {
        self.u16_at(field::ID)
    }

    /// The raw flags word (QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE).
    pub fn flags(&self) -> u16 {
        self.u16_at(field::FLAGS)
    }

    /// QR: a response.
    pub fn is_response(&self) -> bool {
        self.flags() & flag::QR != 0
    }

    /// Opcode (0 = QUERY).
    pub fn opcode(&self) -> u8 {
        ((self.flags() >> flag::OPCODE_SHIFT) & flag::OPCODE_MASK) as u8
    }

    /// RD: recursion desired.
    pub fn recursion_desired(&self) -> bool {
        self.flags() & flag::RD != 0
    }

    /// CD: checking disabled (DNSSEC).
    pub fn checking_disabled(&self) -> bool {
        self.flags() & flag::CD != 0
    }

    /// RCODE, the low four bits (EDNS extended bits live in the OPT record, not read here).
    pub fn rcode(&self) -> u8 {
        (self.flags() & flag::RCODE_MASK) as u8
    }

    /// QDCOUNT.
    pub fn qdcount(&self) -> u16 {
        self.u16_at(field::QDCOUNT)
    }

    /// ANCOUNT.
    pub fn ancount(&self) -> u16 {
        self.u16_at(field::ANCOUNT)
    }

    /// NSCOUNT.
    pub fn nscount(&self) -> u16 {
        self.u16_at(field::NSCOUNT)
    }

    /// ARCOUNT.
    pub fn arcount(&self) -> u16 {
        self.u16_at(field::ARCOUNT)
    }

    /// Length of the question section (QDCOUNT questions after the header): names of plain
    /// labels, no compression pointers, each at most `MAX_NAME_LEN` octets.
    pub fn question_len(&self) -> Result<usize, MessageError> {
        let buf = self.buffer.as_ref();
        let mut at = HEADER_LEN;
        for _ in 0..self.qdcount() {
            at = name_end(buf, at)? + QUESTION_FIXED_LEN;
            if at > buf.len() {
                return Err(MessageError::Truncated);
            }
        }
        Ok(at - HEADER_LEN)
    }

    /// The question section's bytes (see `question_len`).
    pub fn question(&self) -> Result<&[u8], MessageError> {
        let len = self.question_len()?;
        let buf = self.buffer.as_ref();
        buf.get(HEADER_LEN..HEADER_LEN + len)
            .ok_or(MessageError::Truncated)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_u16_at(&mut self, at: usize, value: u16) {
        // `new_checked` guarantees HEADER_LEN bytes and every field lies inside them.
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the transaction id.
    pub fn set_id(&mut self, id: u16) {
        self.set_u16_at(field::ID, id);
    }

    /// Sets the raw flags word.
    pub fn set_flags(&mut self, flags: u16) {
        self.set_u16_at(field::FLAGS, flags);
    }

    /// Sets QDCOUNT, ANCOUNT, NSCOUNT and ARCOUNT.
    pub fn set_counts(&mut self, qd: u16, an: u16, ns: u16, ar: u16) {
        self.set_u16_at(field::QDCOUNT, qd);
        self.set_u16_at(field::ANCOUNT, an);
        self.set_u16_at(field::NSCOUNT, ns);
        self.set_u16_at(field::ARCOUNT, ar);
    }
}

/// Offset just past the name starting at `buf[at]`.
fn name_end(buf: &[u8], mut at: usize) -> Result<usize, MessageError> {
    let mut name_len = 0usize;
    loop {
        let len = *buf.get(at).ok_or(MessageError::Truncated)?;
        match len & LABEL_TYPE_MASK {
            LABEL_NORMAL => {}
            LABEL_POINTER => return Err(MessageError::CompressedName),
            _ => return Err(MessageError::LabelType),
        }
        name_len += 1 + usize::from(len);
        if name_len > MAX_NAME_LEN {
            return Err(MessageError::NameTooLong);
        }
        at += 1 + usize::from(len);
        if len == 0 {
            return Ok(at);
        }
    }
}

/// A validated query: QR = 0, QDCOUNT = 1, its question parses. Any opcode is relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// The sandbox's transaction id.
    pub id: u16,
    /// Opcode, copied into a SERVFAIL (RFC 1035 4.1.1).
    pub opcode: u8,
    /// RD, copied into a SERVFAIL.
    pub recursion_desired: bool,
    /// CD, copied into a SERVFAIL (RFC 4035 3.2.2).
    pub checking_disabled: bool,
    /// Length of the question section.
    pub question_len: usize,
}

impl Query {
    /// Validates `packet` as a query.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Query, MessageError> {
        if packet.is_response() {
            return Err(MessageError::NotQuery);
        }
        if packet.qdcount() != 1 {
            return Err(MessageError::QuestionCount);
        }
        Ok(Query {
            id: packet.id(),
            opcode: packet.opcode(),
            recursion_desired: packet.recursion_desired(),
            checking_disabled: packet.checking_disabled(),
            question_len: packet.question_len()?,
        })
    }

    /// Header plus question: the bytes of the query a SERVFAIL answer keeps (at most
    /// `MAX_QUERY_HEAD`).
    pub fn head_len(&self) -> usize {
        HEADER_LEN + self.question_len
    }

    /// Turns `buf`, which starts with this query's header and question, into a SERVFAIL
    /// answer with id `id`: QR = 1, opcode, RD and CD copied, RA = 1, RCODE = 2, one question,
    /// no records. Returns the answer's length (`head_len`); whatever follows is not part of
    /// it. `Truncated` if `buf` is shorter than that.
    pub fn emit_servfail(&self, buf: &mut [u8], id: u16) -> Result<usize, MessageError> {
        self.emit_rcode(buf, id, RCODE_SERVFAIL)
    }

    /// Like `emit_servfail`, with RCODE `rcode` (e.g. `RCODE_REFUSED`).
    pub fn emit_rcode(&self, buf: &mut [u8], id: u16, rcode: u8) -> Result<usize, MessageError> {
        let len = self.head_len();
        let head = buf.get_mut(..len).ok_or(MessageError::Truncated)?;
        let mut packet = Packet::new_checked(head)?;
        let mut flags = flag::QR
            | (u16::from(self.opcode) & flag::OPCODE_MASK) << flag::OPCODE_SHIFT
            | flag::RA
            | (u16::from(rcode) & flag::RCODE_MASK);
        if self.recursion_desired {
            flags |= flag::RD;
        }
        if self.checking_disabled {
            flags |= flag::CD;
        }
        packet.set_id(id);
        packet.set_flags(flags);
        packet.set_counts(1, 0, 0, 0);
        Ok(len)
    }
}

/// Rewrites the query in `buf` as its SERVFAIL answer (same id and question) and returns the
/// answer's length; an error if `buf` is not a valid query.
pub fn servfail_in_place(buf: &mut [u8]) -> Result<usize, MessageError> {
    let query = Query::parse(&Packet::new_checked(&*buf)?)?;
    query.emit_servfail(buf, query.id)
}

/// Whether two question sections ask the same: names equal ignoring ASCII case (resolvers
/// may randomise it, draft-vixie-dnsext-dns0x20), QTYPE and QCLASS equal. Both must have come
/// from `Packet::question` (so each name is well formed).
pub fn same_question(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() || a.len() < QUESTION_FIXED_LEN {
        return false;
    }
    let split = a.len() - QUESTION_FIXED_LEN;
    let (a_name, a_fixed) = a.split_at(split);
    let (b_name, b_fixed) = b.split_at(split);
    // Length octets are below 0x40, so case folding never changes them.
    a_name.eq_ignore_ascii_case(b_name) && a_fixed == b_fixed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for example.org A, RD set, id 0xbeef, with an EDNS OPT record (RFC 6891).
    const QUERY_A_EDNS: [u8; 40] = [
        0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1, // header: RD, qd 1, ar 1
        7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'o', b'r', b'g', 0, // name
        0, 1, 0, 1, // A IN
        0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0, // OPT, 1232-byte payload, no options
    ];
    const QUESTION_A: std::ops::Range<usize> = 12..29;

    fn header(flags: u16, qd: u16) -> [u8; 12] {
        let mut h = [0u8; 12];
        h[0..2].copy_from_slice(&0x1234u16.to_be_bytes());
        h[2..4].copy_from_slice(&flags.to_be_bytes());
        h[4..6].copy_from_slice(&qd.to_be_bytes());
        h
    }

    #[test]
    fn packet_reads_header_fields_and_question_length() {
        let p = Packet::new_checked(&QUERY_A_EDNS[..]).unwrap();
        assert_eq!(p.id(), 0xbeef);
        assert!(!p.is_response());
        assert_eq!(p.opcode(), 0);
        assert_eq!(p.rcode(), 0);
        assert!(p.recursion_desired());
        assert!(!p.checking_disabled());
        assert_eq!(
            (p.qdcount(), p.ancount(), p.nscount(), p.arcount()),
            (1, 0, 0, 1)
        );
        assert_eq!(p.question_len(), Ok(17));
        assert_eq!(p.question(), Ok(&QUERY_A_EDNS[QUESTION_A]));
    }

    #[test]
    fn short_input_is_truncated_not_a_panic() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&QUERY_A_EDNS[..len]).unwrap_err(),
                MessageError::Truncated
            );
        }
        // Every cut inside the question is truncated.
        for len in HEADER_LEN..QUESTION_A.end {
            let p = Packet::new_checked(&QUERY_A_EDNS[..len]).unwrap();
            assert_eq!(
                Query::parse(&p),
                Err(MessageError::Truncated),
                "cut at {len}"
            );
        }
    }

    #[test]
    fn query_parse_accepts_a_query_with_edns() {
        let q = Query::parse(&Packet::new_checked(&QUERY_A_EDNS[..]).unwrap()).unwrap();
        assert_eq!(
            q,
            Query {
                id: 0xbeef,
                opcode: 0,
                recursion_desired: true,
                checking_disabled: false,
                question_len: 17,
            }
        );
        assert_eq!(q.head_len(), 29);
    }

    #[test]
    fn query_parse_rejects_responses_and_question_counts_other_than_one() {
        let mut response = QUERY_A_EDNS;
        response[2] |= 0x80;
        let p = Packet::new_checked(&response[..]).unwrap();
        assert_eq!(Query::parse(&p), Err(MessageError::NotQuery));

        for qd in [0u16, 2] {
            let mut m = QUERY_A_EDNS;
            m[4..6].copy_from_slice(&qd.to_be_bytes());
            let p = Packet::new_checked(&m[..]).unwrap();
            assert_eq!(Query::parse(&p), Err(MessageError::QuestionCount));
        }
    }

    #[test]
    fn question_rejects_compression_pointers_and_reserved_label_types() {
        let mut m = header(0x0100, 1).to_vec();
        m.extend_from_slice(&[3, b'w', b'w', b'w', 0xc0, 12, 0, 1, 0, 1]);
        let p = Packet::new_checked(&m[..]).unwrap();
        assert_eq!(Query::parse(&p), Err(MessageError::CompressedName));

        for reserved in [0x40u8, 0x80] {
            let mut m = header(0x0100, 1).to_vec();
            m.extend_from_slice(&[reserved | 1, b'x', 0, 0, 1, 0, 1]);
            let p = Packet::new_checked(&m[..]).unwrap();
            assert_eq!(Query::parse(&p), Err(MessageError::LabelType));
        }
    }

    #[test]
    fn names_up_to_255_octets_pass_and_longer_ones_do_not() {
        // Four 63-octet labels = 256 octets with the root label; three + one of 61 = 254.
        let build = |last: u8| {
            let mut m = header(0, 1).to_vec();
            for len in [63u8, 63, 63, last] {
                m.push(len);
                m.extend_from_slice(&[b'a'; 63][..usize::from(len)]);
            }
            m.extend_from_slice(&[0, 0, 1, 0, 1]);
            m
        };
        let ok = build(61);
        let p = Packet::new_checked(&ok[..]).unwrap();
        assert_eq!(p.question_len(), Ok(MAX_NAME_LEN + 4));
        assert_eq!(Query::parse(&p).unwrap().head_len(), MAX_QUERY_HEAD);
        let long = build(62);
        let p = Packet::new_checked(&long[..]).unwrap();
        assert_eq!(Query::parse(&p), Err(MessageError::NameTooLong));
    }

    #[test]
    fn root_name_question_is_valid() {
        let mut m = header(0x0100, 1).to_vec();
        m.extend_from_slice(&[0, 0, 2, 0, 1]); // ". NS IN"
        let p = Packet::new_checked(&m[..]).unwrap();
        assert_eq!(Query::parse(&p).map(|q| q.question_len), Ok(5));
    }

    #[test]
    fn servfail_in_place_keeps_id_and_question_and_drops_the_rest() {
        let mut m = QUERY_A_EDNS;
        m[3] |= 0x10 | 0x20; // CD, AD
        let len = servfail_in_place(&mut m).unwrap();
        assert_eq!(len, 29);
        assert_eq!(&m[..2], &[0xbe, 0xef]);
        // QR, opcode 0, RD copied | RA, CD copied, AD cleared, RCODE 2.
        assert_eq!(&m[2..4], &[0x81, 0x92]);
        assert_eq!(&m[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&m[QUESTION_A], &QUERY_A_EDNS[QUESTION_A]);
        let p = Packet::new_checked(&m[..len]).unwrap();
        assert!(p.is_response());
        assert_eq!(p.rcode(), RCODE_SERVFAIL);
        assert_eq!(p.question(), Ok(&QUERY_A_EDNS[QUESTION_A]));
    }

    #[test]
    fn servfail_copies_opcode_and_clears_rd_when_unset() {
        let mut m = QUERY_A_EDNS;
        m[2] = 0x02 << 3; // opcode 2 (STATUS), RD clear
        m[3] = 0;
        let len = servfail_in_place(&mut m).unwrap();
        let p = Packet::new_checked(&m[..len]).unwrap();
        assert_eq!(p.opcode(), 2);
        assert!(!p.recursion_desired());
        assert_eq!(p.flags(), 0x8000 | 0x1000 | 0x0080 | 2);
    }

    #[test]
    fn servfail_in_place_refuses_what_is_not_a_query() {
        let mut garbage = [0xffu8; 20];
        assert!(servfail_in_place(&mut garbage).is_err());
        let mut short = [0u8; 5];
        assert_eq!(servfail_in_place(&mut short), Err(MessageError::Truncated));
    }

    #[test]
    fn emit_servfail_needs_room_for_the_question() {
        let q = Query::parse(&Packet::new_checked(&QUERY_A_EDNS[..]).unwrap()).unwrap();
        let mut small = [0u8; 28];
        assert_eq!(q.emit_servfail(&mut small, 1), Err(MessageError::Truncated));
        let mut m = QUERY_A_EDNS;
        assert_eq!(q.emit_servfail(&mut m, 0x0102), Ok(29));
        assert_eq!(&m[..2], &[1, 2]);
    }

    #[test]
    fn same_question_ignores_name_case_but_not_type() {
        let a = &QUERY_A_EDNS[QUESTION_A];
        let mut b = a.to_vec();
        b[1] = b'E';
        assert!(same_question(a, &b));
        let mut c = a.to_vec();
        c[14] = 28; // AAAA
        assert!(!same_question(a, &c));
        assert!(!same_question(a, &a[..16]));
    }
}
