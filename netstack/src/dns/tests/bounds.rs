//! Forwarder tests of validation and bounds: malformed, unsolicited and spoofed messages are
//! dropped, a full table and an oversized query servfail, an answer past the MTU is dropped,
//! the data path allocates nothing, and the receive budget holds.
//! Run by `cargo test`; the rig is `super`'s.

use super::*;

#[test]
fn malformed_queries_are_dropped_and_counted_never_relayed() {
    let up = Upstream::bind("127.0.0.1");
    let mut r = Rig::new(&[up.addr()]);
    let good = query(ID, "example.test", 1);
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
    let q = query(ID, "example.test", 1);
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
        r.query(v4(), &query(i as u16, "example.test", 1));
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
    let mut q = query(ID, "example.test", 1);
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
    let q = query(ID, "example.test", 1);
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
