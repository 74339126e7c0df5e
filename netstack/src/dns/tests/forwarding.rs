//! Forwarder tests of relaying and failover: answers come back with the sandbox's id, upstream
//! ids are fresh, a timeout or a refusal fails over, and SERVFAIL comes when every upstream
//! fails or the total bound passes. Run by `cargo test`; the rig is `super`'s.

use super::*;

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
    let q = query(ID, "example.test", 28);
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
    let q = query(ID, "example.test", 1);
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
    let q = query(ID, "example.test", 1);
    r.query(v4(), &q);
    let out = r.frames();
    assert_eq!(out.len(), 1);
    assert_servfail(&out[0], v4(), &q);
    assert_eq!(r.fwd.next_timer(), None);
    assert_eq!(r.fwd.stats().servfail, 1);
}
#[test]
fn upstream_that_cannot_be_connected_is_skipped() {
    // A link-local address without its scope: connect(2) fails with EINVAL, sending nothing.
    let live = Upstream::bind("127.0.0.1");
    let unscoped: SocketAddr = "[fe80::1]:53".parse().unwrap();
    let mut r = Rig::new(&[unscoped, live.addr()]);
    assert_eq!(r.fwd.socket_count(), 1);
    let q = query(ID, "example.test", 1);
    r.query(v4(), &q);
    let (relayed, _) = live.recv();
    assert_eq!(relayed[2..], q[2..]);
}
