//! Forwarder tests: hand-built queries from the sandbox, upstreams that are real UDP sockets on
//! 127.0.0.1 or ::1 (port 0) driven by hand, and a recording frame sink whose frames are parsed
//! and checksum-checked. Timeouts are driven by passing a later `now` to `on_timer`; the only
//! waits are for a datagram to arrive, each bounded by `DEADLINE`.

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
        eg.learn_sandbox_mac(SANDBOX_MAC);
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
    let q = query(ID, "example.com", 28);
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

#[test]
fn query_is_relayed_and_answer_returns_from_the_v4_server_with_the_id_restored() {
    relay_and_answer(v4(), "127.0.0.1");
}

#[test]
fn query_is_relayed_and_answer_returns_from_the_v6_server_with_the_id_restored() {
    relay_and_answer(v6(), "::1");
}

#[test]
fn upstream_ids_are_fresh_and_unique_among_pending() {
    let up = Upstream::bind("127.0.0.1");
    let mut r = Rig::new(&[up.addr()]);
    let mut ids = Vec::new();
    for i in 0..64u16 {
        // The same sandbox id every time: the upstream ids must still differ.
        r.query(v4(), &query(ID, &format!("h{i}.example"), 1));
        let (relayed, _) = up.recv();
        ids.push(Packet::new_checked(&relayed[..]).unwrap().id());
    }
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "ids unique among pending: {ids:?}");
    assert!(ids.iter().filter(|&&id| id == ID).count() <= 1);
    // Not a counter either.
    assert!(ids.windows(2).any(|w| w[1] != w[0].wrapping_add(1)));
}

#[test]
fn attempt_timeout_fails_over_to_the_second_upstream() {
    let (silent, live) = (Upstream::bind("127.0.0.1"), Upstream::bind("127.0.0.1"));
    let mut r = Rig::new(&[silent.addr(), live.addr()]);
    let q = query(ID, "example.org", 1);
    r.query(v4(), &q);
    let (first, _) = silent.recv();

    r.timer(ATTEMPT_TIMEOUT - Duration::from_millis(1));
    assert!(
        !live.has_datagram(),
        "no failover before the attempt timeout"
    );
    r.timer(ATTEMPT_TIMEOUT);
    let (second, from) = live.recv();
    assert_eq!(second, first, "same query, same upstream id");
    assert_eq!(r.fwd.stats().timeouts, 1);
    assert_eq!(r.fwd.next_timer(), Some(r.now + TOTAL_TIMEOUT));

    live.sock
        .send_to(&answer_to(&second), from)
        .expect("answer");
    let out = r.pump_until_frame();
    assert_eq!(out.payload[..2], ID.to_be_bytes());
    assert_eq!(Packet::new_checked(&out.payload[..]).unwrap().ancount(), 1);
    assert_eq!(r.fwd.stats().servfail, 0);
}

#[test]
fn late_answer_from_the_first_upstream_is_taken_after_failover() {
    let (slow, other) = (Upstream::bind("127.0.0.1"), Upstream::bind("127.0.0.1"));
    let mut r = Rig::new(&[slow.addr(), other.addr()]);
    let q = query(ID, "example.org", 1);
    r.query(v4(), &q);
    let (relayed, from) = slow.recv();
    r.timer(ATTEMPT_TIMEOUT);
    let _ = other.recv();
    slow.sock
        .send_to(&answer_to(&relayed), from)
        .expect("answer");
    let out = r.pump_until_frame();
    assert_eq!(out.payload[..2], ID.to_be_bytes());
    assert_eq!(r.fwd.stats().answers, 1);
}

#[test]
fn connection_refused_fails_over_at_once() {
    let live = Upstream::bind("127.0.0.1");
    let mut r = Rig::new(&[closed_port(), live.addr()]);
    let q = query(ID, "example.net", 1);
    r.query(v4(), &q);
    // The ICMP port unreachable raises an error event on socket 0; no timer runs.
    let start = Instant::now();
    while r.fwd.stats().upstream_errors == 0 {
        r.pump_once(DEADLINE);
        assert!(
            start.elapsed() < DEADLINE,
            "no ECONNREFUSED from the closed port"
        );
    }
    let (relayed, from) = live.recv();
    assert_eq!(r.fwd.stats().upstream_errors, 1);
    assert_eq!(r.fwd.stats().timeouts, 0);
    live.sock
        .send_to(&answer_to(&relayed), from)
        .expect("answer");
    let out = r.pump_until_frame();
    assert_eq!(out.payload[..2], ID.to_be_bytes());
}

#[test]
fn servfail_with_id_and_question_when_every_upstream_fails() {
    let (a, b) = (Upstream::bind("127.0.0.1"), Upstream::bind("127.0.0.1"));
    let mut r = Rig::new(&[a.addr(), b.addr()]);
    let q = query(ID, "example.com", 28);
    r.query(v6(), &q);
    let _ = a.recv();
    r.timer(ATTEMPT_TIMEOUT);
    let _ = b.recv();
    assert!(r.frames().is_empty());
    r.timer(2 * ATTEMPT_TIMEOUT);
    let out = r.frames();
    assert_eq!(out.len(), 1);
    assert_servfail(&out[0], v6(), &q);
    let s = r.fwd.stats();
    assert_eq!((s.servfail, s.timeouts, s.answers), (1, 2, 0));
    assert_eq!(r.fwd.next_timer(), None);
}

#[test]
fn servfail_at_the_total_bound_even_with_upstreams_left() {
    let ups = [
        Upstream::bind("127.0.0.1"),
        Upstream::bind("127.0.0.1"),
        Upstream::bind("127.0.0.1"),
    ];
    let addrs: Vec<_> = ups.iter().map(Upstream::addr).collect();
    let mut r = Rig::new(&addrs);
    let q = query(ID, "example.com", 1);
    r.query(v4(), &q);
    r.timer(ATTEMPT_TIMEOUT);
    assert_eq!(r.fwd.next_timer(), Some(r.now + TOTAL_TIMEOUT));
    r.timer(TOTAL_TIMEOUT);
    let out = r.frames();
    assert_eq!(out.len(), 1);
    assert_servfail(&out[0], v4(), &q);
    let _ = ups[1].recv();
    assert!(!ups[2].has_datagram(), "third upstream never tried");
}

#[test]
fn no_upstreams_means_immediate_servfail() {
    let mut r = Rig::new(&[]);
    assert_eq!(r.fwd.socket_count(), 0);
    let q = query(ID, "example.com", 1);
    r.query(v4(), &q);
    let out = r.frames();
    assert_eq!(out.len(), 1);
    assert_servfail(&out[0], v4(), &q);
    assert_eq!(r.fwd.next_timer(), None);
    assert_eq!(r.fwd.stats().servfail, 1);
}

#[test]
fn malformed_queries_are_dropped_and_counted_never_relayed() {
    let up = Upstream::bind("127.0.0.1");
    let mut r = Rig::new(&[up.addr()]);
    let good = query(ID, "example.com", 1);
    let mut response = good.clone();
    response[2] |= 0x80;
    let mut two_questions = good.clone();
    two_questions[5] = 2;
    let truncated_name = &good[..20];
    let garbage = [0xffu8; 7];
    for bad in [&response[..], &two_questions, truncated_name, &garbage, &[]] {
        r.query(v4(), bad);
    }
    let s = r.fwd.stats();
    assert_eq!((s.malformed, s.queries, s.servfail), (5, 0, 0));
    assert!(r.frames().is_empty());
    assert_eq!(r.fwd.next_timer(), None);
    // A valid query after them is the first thing the upstream sees.
    r.query(v4(), &good);
    let (relayed, _) = up.recv();
    assert_eq!(relayed[2..], good[2..]);
}

#[test]
fn unsolicited_and_spoofed_answers_are_ignored() {
    let (a, b) = (Upstream::bind("127.0.0.1"), Upstream::bind("127.0.0.1"));
    let mut r = Rig::new(&[a.addr(), b.addr()]);
    let q = query(ID, "example.com", 1);
    r.query(v4(), &q);
    let (relayed, from) = a.recv();
    let good = answer_to(&relayed);

    let mut wrong_id = good.clone();
    wrong_id[0] ^= 0xff;
    let mut other_question = answer_to(&query(0, "example.org", 1));
    other_question[..2].copy_from_slice(&good[..2]);
    let mut not_response = good.clone();
    not_response[2] &= 0x7f;
    for spoof in [&wrong_id, &other_question, &not_response] {
        a.sock.send_to(spoof, from).expect("send");
        r.pump_until_stats_change();
    }
    // The right id, but from upstream 1, which the query never went to.
    let to_b = r.socket_addr(1);
    b.sock.send_to(&good, to_b).expect("send");
    r.pump_until_stats_change();
    assert_eq!(r.fwd.stats().unmatched, 4);
    assert!(r.frames().is_empty());

    // The real answer still gets through.
    a.sock.send_to(&good, from).expect("send");
    let out = r.pump_until_frame();
    assert_eq!(out.payload[..2], ID.to_be_bytes());
    assert_eq!(r.fwd.stats().answers, 1);
}

#[test]
fn full_table_answers_new_queries_servfail_at_once() {
    let up = Upstream::bind("127.0.0.1");
    let mut r = Rig::new(&[up.addr()]);
    let mut relayed = Vec::new();
    for i in 0..pending::MAX_PENDING {
        r.query(v4(), &query(i as u16, "example.com", 1));
        relayed.push(up.recv());
    }
    assert!(r.frames().is_empty());
    let extra = query(ID, "full.example", 1);
    r.query(v4(), &extra);
    let out = r.frames();
    assert_eq!(out.len(), 1);
    assert_servfail(&out[0], v4(), &extra);
    let s = r.fwd.stats();
    assert_eq!((s.dropped, s.servfail, s.queries), (1, 1, 257));
    assert!(!up.has_datagram(), "the refused query was not relayed");

    // Nothing pending was evicted: answering the oldest frees a slot for the next query.
    let (first, from) = &relayed[0];
    up.sock.send_to(&answer_to(first), *from).expect("answer");
    let out = r.pump_until_frame();
    assert_eq!(out.payload[..2], 0u16.to_be_bytes());
    r.query(v4(), &extra);
    let _ = up.recv();
    assert_eq!(r.fwd.stats().dropped, 1);
}

#[test]
fn oversized_query_is_relayed_whole_and_servfails_instead_of_failing_over() {
    let (a, b) = (Upstream::bind("127.0.0.1"), Upstream::bind("127.0.0.1"));
    let mut r = Rig::new(&[a.addr(), b.addr()]);
    let mut q = query(ID, "example.com", 1);
    // Grow the OPT record with a 600-byte padding option (RFC 7830).
    let pad = 600u16;
    let rdlen_at = q.len() - 2;
    q[rdlen_at..].copy_from_slice(&(pad + 4).to_be_bytes());
    q.extend_from_slice(&[0, 12]);
    q.extend_from_slice(&pad.to_be_bytes());
    q.resize(q.len() + usize::from(pad), 0);
    r.query(v4(), &q);
    let (relayed, _) = a.recv();
    assert_eq!(relayed.len(), q.len());
    assert_eq!(relayed[2..], q[2..]);
    assert_eq!(r.fwd.stats().oversized, 1);

    r.timer(ATTEMPT_TIMEOUT);
    let out = r.frames();
    assert_eq!(out.len(), 1);
    assert_servfail(&out[0], v4(), &q);
    assert!(!b.has_datagram());
}

#[test]
fn answer_larger_than_the_mtu_is_dropped_by_egress() {
    let up = Upstream::bind("127.0.0.1");
    let mut r = Rig::new(&[up.addr()]);
    r.query(v4(), &query(ID, "big.example", 16));
    let (relayed, from) = up.recv();
    let mut big = answer_to(&relayed);
    big.resize(MTU, 0);
    up.sock.send_to(&big, from).expect("answer");
    r.pump_until_stats_change();
    assert_eq!(r.fwd.stats().answers, 1);
    assert_eq!(r.eg.stats.too_big, 1);
    assert!(r.frames().is_empty());
}

#[test]
fn query_and_answer_allocate_nothing_after_new() {
    let up = Upstream::bind("127.0.0.1");
    let mut r = Rig::new(&[up.addr()]);
    r.sink.count_only.set(true);
    let q = query(ID, "example.com", 1);
    let mut buf = [0u8; 512];
    let mut allocs = 0;
    for round in 0..20 {
        let before = allocations();
        r.fwd.query(v4().0, v4().1, &q, &mut r.eg, r.now);
        allocs += allocations() - before;
        let (n, from) = up.sock.recv_from(&mut buf).expect("query");
        let answer = answer_to(&buf[..n]);
        up.sock.send_to(&answer, from).expect("answer");
        while r.sink.count.get() == round {
            r.poll.poll(&mut r.events, Some(DEADLINE)).expect("poll");
            for ev in r.events.iter() {
                let before = allocations();
                r.fwd.on_readable(ev.token().0, &mut r.eg, r.now);
                allocs += allocations() - before;
            }
        }
    }
    // Timeouts and SERVFAIL too.
    let before = allocations();
    r.fwd.query(v4().0, v4().1, &q, &mut r.eg, r.now);
    r.fwd
        .on_timer(&mut r.eg, r.now + TOTAL_TIMEOUT + Duration::from_secs(1));
    allocs += allocations() - before;
    assert_eq!(r.fwd.stats().servfail, 1);
    assert_eq!(allocs, 0);
}

#[test]
fn datagrams_past_the_receive_budget_are_read_from_the_timer() {
    let up = Upstream::bind("127.0.0.1");
    let mut r = Rig::new(&[up.addr()]);
    let to = r.socket_addr(0);
    // Junk the forwarder reads and ignores: more than one `on_readable` takes.
    let n = RECV_BUDGET as u64 + 16;
    let junk = answer_to(&query(7, "junk.example", 1));
    for _ in 0..n {
        up.sock.send_to(&junk, to).expect("send");
    }
    // Drive it as the event loop does: wait for I/O or the next timer, whichever is first.
    // With the socket left unread past its budget and no new edge, only the timer reads on.
    let start = Instant::now();
    while r.fwd.stats().unmatched < n {
        let due = r.fwd.next_timer().is_some_and(|t| t <= r.now);
        r.pump_once(if due { Duration::ZERO } else { DEADLINE });
        if r.fwd.next_timer().is_some_and(|t| t <= r.now) {
            r.fwd.on_timer(&mut r.eg, r.now);
        }
        assert!(start.elapsed() < DEADLINE, "datagrams left unread");
    }
    assert_eq!(r.fwd.next_timer(), None);
}

#[test]
fn upstream_that_cannot_be_connected_is_skipped() {
    // A link-local address without its scope: connect(2) fails with EINVAL, sending nothing.
    let live = Upstream::bind("127.0.0.1");
    let unscoped: SocketAddr = "[fe80::1]:53".parse().unwrap();
    let mut r = Rig::new(&[unscoped, live.addr()]);
    assert_eq!(r.fwd.socket_count(), 1);
    let q = query(ID, "example.com", 1);
    r.query(v4(), &q);
    let (relayed, _) = live.recv();
    assert_eq!(relayed[2..], q[2..]);
}
