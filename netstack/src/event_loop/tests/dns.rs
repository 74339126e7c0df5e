//! The DNS forwarder wired into the loop: a query to 10.0.2.3:53 reaches the configured
//! upstream with a fresh id, the answer comes back from 10.0.2.3:53 with the sandbox's id;
//! with DNS disabled the address is refused and the upstream sees nothing.

use std::net::{SocketAddr, UdpSocket};

use super::forward::{prime_link, recv_udp};
use super::*;

/// A query for "a.test" type A, id 0x1234, RD set.
const QUERY: [u8; 24] = [
    0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 4, b't', b'e', b's', b't', 0, 0, 1, 0,
    1,
];

fn dns_server() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(DNS_V4), 53)
}

fn rig_with_upstream(dns: bool) -> (Rig, UdpSocket) {
    let upstream = UdpSocket::bind("127.0.0.1:0").expect("upstream");
    upstream.set_nonblocking(true).expect("nonblocking");
    let cfg = StackConfig {
        mtu: MTU,
        dns,
        dns_upstreams: vec![upstream.local_addr().unwrap()],
        ..StackConfig::default()
    };
    let mut rig = Rig::with(cfg, None);
    prime_link(&mut rig);
    (rig, upstream)
}

#[test]
fn a_query_to_the_dns_address_is_relayed_and_answered_from_it() {
    let (mut rig, upstream) = rig_with_upstream(true);
    send_udp(&rig, 5353, dns_server(), &QUERY);
    let mut buf = [0u8; 512];
    let start = Instant::now();
    let (n, from) = loop {
        rig.turn();
        match upstream.recv_from(&mut buf) {
            Ok(r) => break r,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("upstream recv: {e}"),
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the query never reached the upstream"
        );
    };
    assert_eq!(&buf[2..n], &QUERY[2..], "relayed unchanged but for the id");
    // Answer: the query with QR set and one answer record would do; QR alone is enough here.
    let mut answer = buf[..n].to_vec();
    answer[2] |= 0x80;
    upstream.send_to(&answer, from).expect("answer");
    let (src, dst, payload) = recv_udp(&mut rig);
    assert_eq!(src, dns_server());
    assert_eq!(dst, SocketAddr::new(sandbox_ip(), 5353));
    assert_eq!(
        &payload[..2],
        &[0x12, 0x34],
        "the sandbox's own id restored"
    );
    assert_eq!(payload[2] & 0x80, 0x80);
    let stats = rig.lp.dns.as_ref().expect("forwarder on").stats();
    assert_eq!(
        (stats.queries, stats.answers),
        (1, 1),
        "through the forwarder, not the NAT"
    );
}

#[test]
fn with_dns_disabled_the_dns_address_is_refused_and_nothing_is_relayed() {
    let (mut rig, upstream) = rig_with_upstream(false);
    send_udp(&rig, 5353, dns_server(), &QUERY);
    for _ in 0..20 {
        rig.turn();
    }
    let mut buf = [0u8; 512];
    assert!(
        upstream.recv_from(&mut buf).is_err(),
        "a query reached the upstream with DNS off"
    );
    assert!(rig.lp.drops.refused >= 1, "counted as refused");
}
