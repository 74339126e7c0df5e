//! Fuzz target for the DNS-over-TCP relay's framing (`dns::framing`), which reads what the
//! sandbox writes on a TCP connection to the DNS address: the input is that byte stream.
//! Messages are read off it with the relay's 64 KiB buffer until the reader stops, and each is
//! given to the query view as the relay gives it (`message::Packet`, `Query::parse`). Checks:
//! - every message is the bytes its prefix announced, at least one, taken in order, nothing
//!   skipped or doubled: written back with `write_message`, they are the stream read so far;
//! - the reader stops only at a zero length (`InvalidData`) or when the stream ends before a
//!   whole prefix or message (`UnexpectedEof`), and says which;
//! - a message the relay takes as a query has its header and question inside the message.
#![no_main]

use std::io::ErrorKind;

use libfuzzer_sys::fuzz_target;
use netstack::dns::framing::{read_message, write_message, MAX_MESSAGE, PREFIX};
use netstack::dns::message::{Packet, Query};

fuzz_target!(|data: &[u8]| {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut rest = data;
    let mut again = Vec::with_capacity(data.len());
    let stop = loop {
        match read_message(&mut rest, &mut buf) {
            Ok(len) => {
                assert!((1..=MAX_MESSAGE).contains(&len));
                let msg = &buf[..len];
                write_message(&mut again, msg).expect("a message read is one that can be written");
                let parsed = Packet::new_checked(msg).and_then(|p| Query::parse(&p));
                if let Ok(query) = parsed {
                    assert!(query.head_len() <= len);
                }
            }
            Err(e) => break e.kind(),
        }
    };
    let read = data.len() - rest.len();
    assert_eq!(&data[..again.len()], &again[..], "messages come off in order, intact");
    let left = &data[again.len()..];
    match stop {
        ErrorKind::InvalidData => {
            assert_eq!(left.get(..PREFIX), Some(&[0u8, 0][..]), "only a zero length");
            assert_eq!(read, again.len() + PREFIX, "the bad prefix is consumed, no more");
        }
        ErrorKind::UnexpectedEof => {
            let announced = left
                .get(..PREFIX)
                .map(|p| usize::from(u16::from_be_bytes([p[0], p[1]])));
            match announced {
                None => assert!(left.len() < PREFIX),
                Some(len) => assert!(left.len() < PREFIX + len, "a whole message was left"),
            }
        }
        other => panic!("the reader stopped with {other:?}"),
    }
});
