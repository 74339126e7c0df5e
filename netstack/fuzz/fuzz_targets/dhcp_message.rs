//! Fuzz target for the DHCP server (`dhcp`): every datagram the sandbox sends to port 67 is
//! parsed (smoltcp's `DhcpPacket`/`DhcpRepr`) and answered by `Server::answer`. It must never
//! panic; an answer exists only for a full BOOTP header, echoes the request's xid and chaddr,
//! offers or acks only pool addresses, and its reply is written inside a 576-byte buffer
//! (the smallest datagram every host takes, RFC 791) as a BOOTREPLY of at least 300 bytes.
//! The same bytes are then answered a second time, against the lease table the first left.
#![no_main]

use std::net::Ipv4Addr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use netstack::config::Addressing;
use netstack::dhcp::{Kind, Server, POOL_SIZE};

/// The first pool address of the default network.
const FIRST: u32 = u32::from_be_bytes([10, 0, 2, 15]);

fuzz_target!(|data: &[u8]| {
    let mut server = Server::new(&Addressing::default(), true);
    let now = Instant::now();
    for _ in 0..2 {
        let Some(reply) = server.answer(data, now) else {
            continue;
        };
        assert!(data.len() >= 240, "an answer needs the fixed header and cookie");
        assert_eq!(reply.xid.to_be_bytes(), data[4..8]);
        assert_eq!(reply.chaddr.as_bytes(), &data[28..34]);
        match reply.kind {
            Kind::Offer | Kind::Ack => {
                let host = u32::from(reply.your_ip).wrapping_sub(FIRST);
                assert!((host as usize) < POOL_SIZE, "{} not in the pool", reply.your_ip);
            }
            Kind::Nak => assert_eq!(reply.your_ip, Ipv4Addr::UNSPECIFIED),
        }
        let mut buf = [0u8; 576];
        let len = server.emit(&reply, &mut buf).expect("a reply fits 576 bytes");
        assert!((300..=576).contains(&len));
        assert_eq!(buf[0], 2, "BOOTREPLY");
        assert_eq!(buf[4..8], data[4..8]);
        assert_eq!(buf[236..240], [0x63, 0x82, 0x53, 0x63], "magic cookie");
    }
});
