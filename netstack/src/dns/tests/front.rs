//! `SocketFront`: the forwarder reached through host sockets (kernel mode). A client socket
//! on 127.0.0.1 plays the sandbox, `Upstream` the resolver.

use std::io::{Read, Write};
use std::net::TcpStream;

use super::*;
use crate::dns::front::SocketFront;

fn loopback_any() -> SocketAddr {
    "127.0.0.1:0".parse().expect("literal")
}

fn client() -> StdUdp {
    let c = StdUdp::bind(loopback_any()).expect("bind client");
    c.set_read_timeout(Some(DEADLINE)).expect("timeout");
    c
}

#[test]
fn front_relays_a_query_and_returns_the_answer_with_the_clients_id_from_its_socket() {
    let up = Upstream::bind("127.0.0.1");
    let front = SocketFront::start(&[loopback_any()], &[up.addr()]).expect("front starts");
    let at = front.endpoints()[0].udp;
    assert_ne!(at.port(), 0, "a port of the kernel's choice");
    let c = client();
    let q = query(0x1234, "example.test", 1);
    c.send_to(&q, at).expect("send query");
    let (relayed, from) = up.recv();
    assert_eq!(
        Packet::new_checked(&relayed[..]).unwrap().question(),
        Packet::new_checked(&q[..]).unwrap().question()
    );
    up.sock.send_to(&answer_to(&relayed), from).expect("answer");
    let mut buf = [0u8; 2048];
    let (n, src) = c.recv_from(&mut buf).expect("the answer comes back");
    assert_eq!(src, at, "answered from the socket the query went to");
    let a = Packet::new_checked(&buf[..n]).unwrap();
    assert_eq!(a.id(), 0x1234, "the client's id restored");
    assert_eq!(a.ancount(), 1);
}

#[test]
fn front_without_upstreams_answers_servfail_over_udp_and_tcp() {
    let front = SocketFront::start(&[loopback_any()], &[]).expect("front starts");
    let ends = front.endpoints()[0];
    let c = client();
    let q = query(7, "example.test", 1);
    c.send_to(&q, ends.udp).expect("send query");
    let mut buf = [0u8; 2048];
    let (n, _) = c.recv_from(&mut buf).expect("a SERVFAIL comes back");
    let a = Packet::new_checked(&buf[..n]).unwrap();
    assert_eq!((a.id(), a.rcode()), (7, RCODE_SERVFAIL));

    let mut t = TcpStream::connect(ends.tcp).expect("the TCP relay listens");
    t.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut msg = (q.len() as u16).to_be_bytes().to_vec();
    msg.extend_from_slice(&q);
    t.write_all(&msg).expect("send over TCP");
    let mut len = [0u8; 2];
    t.read_exact(&mut len).expect("length prefix");
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    t.read_exact(&mut body).expect("answer");
    let a = Packet::new_checked(&body[..]).unwrap();
    assert_eq!((a.id(), a.rcode()), (7, RCODE_SERVFAIL));
}
