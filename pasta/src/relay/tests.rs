//! The relay between two loopback sockets of this namespace (the "namespace" side is just
//! another loopback socket here): bytes, half-close, and UDP replies per client.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

fn forward(proto: Transport, fd: OwnedFd, listen: SocketAddr, target: SocketAddr) {
    let f = NsForward {
        proto,
        listen,
        target,
    };
    start(vec![(f, fd)]).expect("relay starts");
}

#[test]
fn tcp_bytes_cross_both_ways_and_a_half_close_is_passed_on() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let ns = TcpListener::bind("127.0.0.1:0").unwrap();
    ns.set_nonblocking(true).unwrap();
    let listen = ns.local_addr().unwrap();
    forward(
        Transport::Tcp,
        ns.into(),
        listen,
        server.local_addr().unwrap(),
    );

    let mut client = TcpStream::connect(listen).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let (mut host, _) = server.accept().unwrap();
    host.set_read_timeout(Some(WAIT)).unwrap();
    let payload: Vec<u8> = (0..3 * BUF).map(|i| (i % 251) as u8).collect();
    client.write_all(&payload).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    host.read_to_end(&mut got).unwrap();
    assert_eq!(got, payload, "the host side reads everything, then EOF");
    host.write_all(b"reply after the client's FIN").unwrap();
    host.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"reply after the client's FIN");
}

#[test]
fn udp_replies_go_back_to_each_client() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server.set_read_timeout(Some(WAIT)).unwrap();
    let ns = UdpSocket::bind("127.0.0.1:0").unwrap();
    ns.set_nonblocking(true).unwrap();
    let listen = ns.local_addr().unwrap();
    forward(
        Transport::Udp,
        ns.into(),
        listen,
        server.local_addr().unwrap(),
    );

    let clients: Vec<UdpSocket> = (0..2)
        .map(|_| {
            let c = UdpSocket::bind("127.0.0.1:0").unwrap();
            c.set_read_timeout(Some(WAIT)).unwrap();
            c
        })
        .collect();
    let mut buf = [0u8; 64];
    let mut seen = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        c.send_to(&[i as u8; 3], listen).unwrap();
        let (n, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[i as u8; 3]);
        assert!(!seen.contains(&from), "one host socket per client");
        seen.push(from);
        server.send_to(&[0xa0 + i as u8], from).unwrap();
    }
    for (i, c) in clients.iter().enumerate() {
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&[0xa0 + i as u8][..], listen));
    }
}
