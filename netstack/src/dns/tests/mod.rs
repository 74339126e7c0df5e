//! Forwarder tests: hand-built queries from the sandbox, upstreams that are real UDP sockets on
//! 127.0.0.1 or ::1 (port 0) driven by hand, and a recording frame sink whose frames are parsed
//! and checksum-checked. Timeouts are driven by passing a later `now` to `on_timer`; the only
//! waits are for a datagram to arrive, each bounded by `DEADLINE`.
//!
//! This file holds the rig the tests share (sink, frame decoding, hand-played upstreams); the
//! tests are in `forwarding` (relay, failover, SERVFAIL) and `bounds` (what is dropped, what
//! the table, MTU, allocation and receive budgets allow). No test belongs here.

mod bounds;
mod forwarding;
mod front;

use std::cell::{Cell, RefCell};
use std::net::UdpSocket as StdUdp;
use std::rc::Rc;

use mio::{Events, Interest, Poll, Token};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress, Ipv4Packet, Ipv6Packet, UdpPacket,
};

use super::message::RCODE_SERVFAIL;
use super::*;
use crate::config::{DNS_V4, DNS_V6, GATEWAY_MAC, SANDBOX_V4, SANDBOX_V6};
use crate::egress::FrameSink;
use crate::sys::alloc_count::allocations;

const MTU: usize = 1500;
const DEADLINE: Duration = Duration::from_secs(10);
const SANDBOX_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0x64]);
const SANDBOX_PORT: u16 = 40000;
const ID: u16 = 0x4242;

#[derive(Clone, Default)]
struct Sink {
    frames: Rc<RefCell<Vec<Vec<u8>>>>,
    /// Count frames without keeping them (the allocation test).
    count_only: Rc<Cell<bool>>,
    count: Rc<Cell<usize>>,
}

impl FrameSink for Sink {
    fn send_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        self.count.set(self.count.get() + 1);
        if !self.count_only.get() {
            self.frames.borrow_mut().push(frame.to_vec());
        }
        Ok(())
    }
}

/// A UDP datagram we emitted toward the sandbox, its checksum verified.
#[derive(Debug)]
struct Out {
    src: SocketAddr,
    dst: SocketAddr,
    payload: Vec<u8>,
}

fn decode(frame: &[u8]) -> Out {
    let eth = EthernetFrame::new_checked(frame).expect("ethernet");
    assert_eq!(eth.dst_addr(), SANDBOX_MAC);
    let (src, dst, l4): (IpAddr, IpAddr, &[u8]) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
            assert!(ip.verify_checksum(), "ipv4 header checksum");
            (ip.src_addr().into(), ip.dst_addr().into(), ip.payload())
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).expect("ipv6");
            (ip.src_addr().into(), ip.dst_addr().into(), ip.payload())
        }
        other => panic!("not IP: {other}"),
    };
    let udp = UdpPacket::new_checked(l4).expect("udp");
    assert!(
        udp.verify_checksum(&IpAddress::from(src), &IpAddress::from(dst)),
        "udp checksum"
    );
    Out {
        src: SocketAddr::new(src, udp.src_port()),
        dst: SocketAddr::new(dst, udp.dst_port()),
        payload: udp.payload().to_vec(),
    }
}

/// A query for `name` (dotted) of type `qtype`, RD set, with an EDNS OPT record.
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]); // IN
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]); // OPT
    m
}

/// The answer an upstream gives to `relayed`: same id and question, one A record.
fn answer_to(relayed: &[u8]) -> Vec<u8> {
    let p = Packet::new_checked(relayed).expect("relayed query");
    let question = p.question().expect("question");
    let mut m = Vec::new();
    m.extend_from_slice(&p.id().to_be_bytes());
    m.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    m.extend_from_slice(question);
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
    m
}

fn v4() -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::new(IpAddr::V4(SANDBOX_V4), SANDBOX_PORT),
        SocketAddr::new(IpAddr::V4(DNS_V4), 53),
    )
}

fn v6() -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::new(IpAddr::V6(SANDBOX_V6), SANDBOX_PORT),
        SocketAddr::new(IpAddr::V6(DNS_V6), 53),
    )
}

/// A resolver the test plays by hand.
struct Upstream {
    sock: StdUdp,
}

impl Upstream {
    fn bind(ip: &str) -> Upstream {
        let sock = StdUdp::bind((ip, 0)).expect("bind upstream");
        sock.set_read_timeout(Some(DEADLINE)).expect("timeout");
        Upstream { sock }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("local addr")
    }

    /// Waits (at most DEADLINE) for a relayed query; returns it and who sent it.
    fn recv(&self) -> (Vec<u8>, SocketAddr) {
        let mut buf = [0u8; 2048];
        let (n, from) = self
            .sock
            .recv_from(&mut buf)
            .expect("query reaches upstream");
        (buf[..n].to_vec(), from)
    }

    /// Whether a datagram is queued now (without waiting).
    fn has_datagram(&self) -> bool {
        self.sock.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 16];
        let got = self.sock.peek_from(&mut buf).is_ok();
        self.sock.set_nonblocking(false).expect("blocking");
        got
    }
}

/// A closed port on 127.0.0.1: a socket bound and dropped.
fn closed_port() -> SocketAddr {
    let s = StdUdp::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("local addr")
}

struct Rig {
    fwd: Forwarder,
    eg: Egress,
    sink: Sink,
    poll: Poll,
    events: Events,
    now: Instant,
}

impl Rig {
    fn new(upstreams: &[SocketAddr]) -> Rig {
        let now = Instant::now();
        let mut fwd = Forwarder::new(upstreams, now).expect("forwarder");
        let poll = Poll::new().expect("poll");
        for i in 0..fwd.socket_count() {
            let sock = fwd.socket_mut(i).expect("socket");
            poll.registry()
                .register(sock, Token(i), Interest::READABLE)
                .expect("register");
        }
        let sink = Sink::default();
        let mut eg = Egress::new(
            MTU,
            EthernetAddress(GATEWAY_MAC),
            Box::new(sink.clone()),
            false,
        );
        eg.set_sandbox_mac(SANDBOX_MAC);
        Rig {
            fwd,
            eg,
            sink,
            poll,
            events: Events::with_capacity(16),
            now,
        }
    }

    fn query(&mut self, ends: (SocketAddr, SocketAddr), payload: &[u8]) {
        self.fwd
            .query(ends.0, ends.1, payload, &mut self.eg, self.now);
    }

    /// Waits for socket events (at most DEADLINE) and hands them to the forwarder until a
    /// frame for the sandbox appears.
    fn pump_until_frame(&mut self) -> Out {
        let start = Instant::now();
        while self.sink.frames.borrow().is_empty() {
            self.pump_once(DEADLINE);
            assert!(start.elapsed() < DEADLINE, "no frame for the sandbox");
        }
        self.frames().pop().expect("one frame")
    }

    /// Waits for socket events until the forwarder's stats change.
    fn pump_until_stats_change(&mut self) {
        let before = self.fwd.stats();
        let start = Instant::now();
        while self.fwd.stats() == before {
            self.pump_once(DEADLINE);
            assert!(start.elapsed() < DEADLINE, "forwarder saw nothing");
        }
    }

    fn pump_once(&mut self, timeout: Duration) {
        self.poll
            .poll(&mut self.events, Some(timeout))
            .expect("poll");
        for ev in self.events.iter() {
            self.fwd.on_readable(ev.token().0, &mut self.eg, self.now);
        }
    }

    fn frames(&self) -> Vec<Out> {
        self.sink
            .frames
            .borrow_mut()
            .drain(..)
            .map(|f| decode(&f))
            .collect()
    }

    fn timer(&mut self, at: Duration) {
        self.fwd.on_timer(&mut self.eg, self.now + at);
    }

    /// The forwarder socket's address as seen from upstream `index` (loopback).
    fn socket_addr(&mut self, index: usize) -> SocketAddr {
        self.fwd
            .socket_mut(index)
            .expect("socket")
            .local_addr()
            .expect("local addr")
    }
}

fn assert_servfail(out: &Out, ends: (SocketAddr, SocketAddr), query: &[u8]) {
    assert_eq!(
        (out.dst, out.src),
        ends,
        "SERVFAIL from the server to the sandbox"
    );
    let q = Packet::new_checked(query).unwrap();
    let a = Packet::new_checked(&out.payload[..]).unwrap();
    assert_eq!(a.id(), q.id());
    assert!(a.is_response());
    assert_eq!(a.rcode(), RCODE_SERVFAIL);
    assert_eq!(a.recursion_desired(), q.recursion_desired());
    assert_eq!(
        (a.qdcount(), a.ancount(), a.nscount(), a.arcount()),
        (1, 0, 0, 0)
    );
    assert_eq!(a.question(), q.question());
    assert_eq!(
        out.payload.len(),
        12 + q.question_len().unwrap(),
        "OPT dropped"
    );
}

fn relay_and_answer(ends: (SocketAddr, SocketAddr), upstream_ip: &str) {
    let up = Upstream::bind(upstream_ip);
    let mut r = Rig::new(&[up.addr()]);
    let q = query(ID, "example.test", 28);
    r.query(ends, &q);

    let (relayed, from) = up.recv();
    assert_eq!(relayed.len(), q.len());
    assert_eq!(relayed[2..], q[2..], "relayed unchanged but for the id");
    assert_eq!(r.fwd.next_timer(), Some(r.now + ATTEMPT_TIMEOUT));

    let answer = answer_to(&relayed);
    up.sock.send_to(&answer, from).expect("answer");
    let out = r.pump_until_frame();
    assert_eq!((out.dst, out.src), ends);
    assert_eq!(out.payload[..2], ID.to_be_bytes(), "sandbox's id restored");
    assert_eq!(out.payload[2..], answer[2..]);
    assert_eq!(r.fwd.next_timer(), None, "slot freed");
    let s = r.fwd.stats();
    assert_eq!(
        (s.queries, s.answers, s.servfail, s.unmatched),
        (1, 1, 0, 0)
    );

    // The same datagram again is late: no pending id matches.
    up.sock.send_to(&answer, from).expect("answer");
    r.pump_until_stats_change();
    assert_eq!(r.fwd.stats().unmatched, 1);
    assert!(r.frames().is_empty());
}
