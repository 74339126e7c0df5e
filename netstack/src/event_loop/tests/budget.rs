//! The new-flow budget wired into the loop (`bucket`, `exhaustion`): a flood of new UDP flows
//! at one port opens that port's share, the datagrams over it are answered ICMP port
//! unreachable within that port's share of the answers, and a new flow to another port still
//! opens meanwhile; a flood at many ports has every datagram over budget answered (their
//! limit is not the policy denials' 100 a second). Real time passes while the loop runs, so
//! counts are bounded, not exact.
//! Host servers on 127.0.0.1, reached as the gateway.

use std::net::{SocketAddr, UdpSocket};

use super::forward::prime_link;
use super::*;

/// New flows the test opens at one port: well over that port's burst of 128.
const FLOOD: u16 = 600;
/// Datagrams written before the loop gets a turn (the socketpair's buffer holds them).
const WRITE_BATCH: u16 = 50;

/// A UDP server on 127.0.0.1, non-blocking, and its address as the sandbox reaches it.
fn server() -> (UdpSocket, SocketAddr) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_nonblocking(true).expect("nonblocking");
    let port = sock.local_addr().expect("addr").port();
    (sock, SocketAddr::new(gateway_ip(), port))
}

/// Datagrams waiting at `sock`.
fn drain(sock: &UdpSocket) -> usize {
    let mut buf = [0u8; 64];
    std::iter::from_fn(|| sock.recv_from(&mut buf).ok()).count()
}

/// The ICMP port unreachable frames waiting for the sandbox, each checked: from the gateway,
/// quoting a datagram to `to`.
fn port_unreachables(rig: &Rig, to: SocketAddr) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while let Ok(len) = nix::unistd::read(&rig.sandbox, &mut buf) {
        let eth = smoltcp::wire::EthernetFrame::new_checked(&buf[..len]).expect("ethernet");
        let ip = smoltcp::wire::Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
        assert_eq!(IpAddr::V4(ip.src_addr()), gateway_ip());
        let icmp = smoltcp::wire::Icmpv4Packet::new_checked(ip.payload()).expect("icmp");
        assert_eq!((u8::from(icmp.msg_type()), icmp.msg_code()), (3, 3));
        assert!(icmp.verify_checksum());
        let quoted = smoltcp::wire::Ipv4Packet::new_unchecked(icmp.data());
        assert_eq!(IpAddr::V4(quoted.dst_addr()), to.ip());
        // The quote holds the IP header and 8 bytes after it: the UDP header.
        let after_ip = &icmp.data()[usize::from(quoted.header_len())..];
        let udp = smoltcp::wire::UdpPacket::new_unchecked(after_ip);
        assert_eq!(udp.dst_port(), to.port());
        n += 1;
    }
    n
}

#[test]
fn a_flow_flood_at_one_port_is_refused_aloud_and_another_port_still_opens() {
    let mut rig = Rig::new();
    prime_link(&mut rig);
    let (flooded, flood_to) = server();
    let (other, other_to) = server();
    let began = Instant::now();
    for batch in 0..FLOOD / WRITE_BATCH {
        for i in 0..WRITE_BATCH {
            send_udp(&rig, 10_000 + batch * WRITE_BATCH + i, flood_to, b"flood");
        }
        rig.turn();
    }
    while rig.lp.drops.over_budget == 0 {
        assert!(began.elapsed() < DEADLINE, "the flood was not refused");
        rig.turn();
    }
    rig.turn();
    let answered = port_unreachables(&rig, flood_to);
    send_udp(&rig, 30_000, other_to, b"other");
    let start = Instant::now();
    while drain(&other) == 0 {
        assert!(
            start.elapsed() < DEADLINE,
            "a new flow to another port was not opened"
        );
        rig.turn();
    }
    let (opened, refused) = (drain(&flooded), rig.lp.drops.over_budget);
    // The port's burst (128) and what it earned at 500 a second meanwhile; its answers, 10 and
    // what they earned at 10 a second.
    let slack = began.elapsed().as_millis() as usize / 2 + 1;
    assert!(
        (128..=128 + slack).contains(&opened),
        "{opened} flows opened"
    );
    assert_eq!(refused as usize, usize::from(FLOOD) - opened);
    assert_eq!(
        rig.lp.new_udp.over_global, 0,
        "the flood never spent the global budget"
    );
    assert!(
        (10..=10 + slack / 50).contains(&answered),
        "{answered} of {refused} refusals answered"
    );
}

/// New flows the spray test opens, each to its own port: over the global burst (512) by far
/// more than the policy denials' 100 answers a second.
const SPRAY: u16 = 1_000;

#[test]
fn a_flood_at_many_ports_has_every_datagram_over_budget_answered() {
    let mut rig = Rig::new();
    prime_link(&mut rig);
    // Ports of the host's loopback that nothing listens on: a flow opens, its datagram is
    // refused by the host kernel, which the sandbox never sees. Only the answers count here.
    let to = |i: u16| SocketAddr::new(gateway_ip(), 40_000 + i);
    let mut answered = 0;
    for batch in 0..SPRAY / WRITE_BATCH {
        for i in 0..WRITE_BATCH {
            let n = batch * WRITE_BATCH + i;
            send_udp(&rig, 10_000 + n, to(n), b"spray");
        }
        rig.turn();
        answered += unreachables(&rig);
    }
    rig.turn();
    answered += unreachables(&rig);
    let refused = rig.lp.drops.over_budget as usize;
    assert!(
        refused > 300,
        "the spray went over the global budget: {refused}"
    );
    assert_eq!(answered, refused, "every datagram over budget answered");
}

/// ICMP port unreachable frames waiting for the sandbox, from the gateway (to any port).
fn unreachables(rig: &Rig) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while let Ok(len) = nix::unistd::read(&rig.sandbox, &mut buf) {
        let eth = smoltcp::wire::EthernetFrame::new_checked(&buf[..len]).expect("ethernet");
        let ip = smoltcp::wire::Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
        let icmp = smoltcp::wire::Icmpv4Packet::new_checked(ip.payload()).expect("icmp");
        if (u8::from(icmp.msg_type()), icmp.msg_code()) == (3, 3) {
            n += 1;
        }
    }
    n
}
