//! DNS over TCP framing (RFC 1035 4.2.2, RFC 7766 8): every message travels behind a two-byte
//! big-endian length. `read_message` takes one message off a byte stream into the caller's
//! buffer, `write_message` puts one on with its prefix. Used by the relay (`tcp`) on both of
//! its sides: the sandbox's connections, where the bytes are the sandbox's to choose, and the
//! upstreams'. Knows nothing of what a message holds (`message` reads that) and does no I/O
//! but the given stream's; the `dns_tcp_framing` fuzz target drives the reader with any bytes.
//! Small by nature; grows only if the relay learns pipelining (RFC 7766 6.2.1.1).

use std::io::{self, Read, Write};

/// Length prefix of a message.
pub const PREFIX: usize = 2;
/// Longest message the prefix can announce.
pub const MAX_MESSAGE: usize = u16::MAX as usize;

/// Reads one length-prefixed message from `conn` into `buf` and returns its length. A zero
/// length, or one longer than `buf`, is `InvalidData` (the stream is then out of step: the
/// caller closes it); EOF before a whole message is `UnexpectedEof`. A buffer of `MAX_MESSAGE`
/// bytes takes any message.
pub fn read_message<R: Read>(conn: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut prefix = [0u8; PREFIX];
    conn.read_exact(&mut prefix)?;
    let len = usize::from(u16::from_be_bytes(prefix));
    let body = buf.get_mut(..len).ok_or(io::ErrorKind::InvalidData)?;
    if len == 0 {
        return Err(io::ErrorKind::InvalidData.into());
    }
    conn.read_exact(body)?;
    Ok(len)
}

/// Writes `msg` to `conn` behind its length prefix, in one `write_all` (a message split
/// across writes would cost the peer a wakeup per part). Longer than `MAX_MESSAGE`:
/// `InvalidData`, nothing written.
pub fn write_message<W: Write>(conn: &mut W, msg: &[u8]) -> io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| io::ErrorKind::InvalidData)?;
    let mut out = Vec::with_capacity(PREFIX + msg.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    conn.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_off_a_stream_one_by_one_as_they_were_written() {
        let mut stream = Vec::new();
        write_message(&mut stream, b"first").unwrap();
        write_message(&mut stream, &[7; 300]).unwrap();
        assert_eq!(&stream[..7], b"\0\x05first");
        let (mut rest, mut buf) = (&stream[..], vec![0u8; MAX_MESSAGE]);
        assert_eq!(read_message(&mut rest, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"first");
        assert_eq!(read_message(&mut rest, &mut buf).unwrap(), 300);
        assert_eq!(buf[..300], [7; 300]);
        let end = read_message(&mut rest, &mut buf).unwrap_err();
        assert_eq!(end.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_zero_length_an_oversized_or_a_cut_message_is_an_error() {
        let mut buf = [0u8; 4];
        let kind =
            |bytes: &[u8], buf: &mut [u8]| read_message(&mut &bytes[..], buf).unwrap_err().kind();
        assert_eq!(kind(b"\0\0abc", &mut buf), io::ErrorKind::InvalidData);
        assert_eq!(kind(b"\0\x05abcde", &mut buf), io::ErrorKind::InvalidData);
        assert_eq!(kind(b"\0\x03ab", &mut buf), io::ErrorKind::UnexpectedEof);
        assert_eq!(kind(b"\0", &mut buf), io::ErrorKind::UnexpectedEof);
        let too_long = vec![0u8; MAX_MESSAGE + 1];
        let refused = write_message(&mut Vec::new(), &too_long).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::InvalidData);
    }
}
