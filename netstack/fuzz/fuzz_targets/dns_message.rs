//! Fuzz target for `dns::message`, the view the DNS forwarder applies to every datagram the
//! sandbox sends to the DNS address: the header getters and question walk must never panic,
//! a query is valid exactly when the SERVFAIL builder accepts it, and the SERVFAIL it builds
//! keeps the query's id and question and stays inside the bytes it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::dns::message::{self, Packet, Query, HEADER_LEN, MAX_QUERY_HEAD, RCODE_SERVFAIL};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::new_checked(data) else {
        assert!(data.len() < HEADER_LEN);
        return;
    };
    let _ = (packet.flags(), packet.rcode(), packet.ancount(), packet.nscount());
    let _ = packet.arcount();
    if let Ok(question) = packet.question() {
        assert!(HEADER_LEN + question.len() <= data.len());
    }

    let parsed = Query::parse(&packet);
    let mut buf = data.to_vec();
    let built = message::servfail_in_place(&mut buf);
    match parsed {
        Ok(query) => {
            assert!(query.head_len() <= data.len().min(MAX_QUERY_HEAD));
            assert_eq!(built, Ok(query.head_len()));
            let answer = Packet::new_checked(&buf[..query.head_len()]).expect("header kept");
            assert!(answer.is_response());
            assert_eq!(answer.rcode(), RCODE_SERVFAIL);
            assert_eq!(answer.id(), packet.id());
            assert_eq!(answer.opcode(), packet.opcode());
            assert_eq!(answer.recursion_desired(), packet.recursion_desired());
            assert_eq!(answer.qdcount(), 1);
            assert_eq!(answer.question(), packet.question());
            assert_eq!(buf[query.head_len()..], data[query.head_len()..]);
        }
        Err(error) => {
            assert_eq!(built, Err(error));
            assert_eq!(buf, data, "a refused query is left as it was");
        }
    }
});
