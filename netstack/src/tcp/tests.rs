//! Translator tests for flows the sandbox opens: hand-built segments against the scripted
//! host socket and recording frame sink of `fake`.

use std::io;
use std::time::{Duration, Instant};

use super::fake::{egress, payload_lens, Challenges, FakeHost, Rig, Sink};
use super::*;

const MTU: usize = 1500;
pub(super) const ISS: u32 = 5000;
pub(super) const IRS: u32 = 1000;

fn ep() -> Endpoints {
    Endpoints {
        sandbox: "10.0.2.100:40000".parse().unwrap(),
        remote: "10.0.2.2:8000".parse().unwrap(),
    }
}

pub(super) fn seg(
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    window: u16,
    payload: &[u8],
) -> TcpSegment<'_> {
    TcpSegment {
        src_port: 40000,
        dst_port: 8000,
        seq,
        ack,
        flags,
        window,
        mss: None,
        window_scale: None,
        timestamp: None,
        payload,
    }
}

pub(super) fn syn() -> TcpSegment<'static> {
    TcpSegment {
        mss: Some(1460),
        window_scale: Some(7),
        ..seg(
            IRS,
            0,
            TcpFlags {
                syn: true,
                ..TcpFlags::default()
            },
            64240,
            &[],
        )
    }
}

impl Rig {
    pub(super) fn new() -> Rig {
        Rig::with_syn(syn())
    }

    fn with_syn(first: TcpSegment<'_>) -> Rig {
        let sink = Sink::default();
        let eg = egress(MTU, &sink);
        let now = Instant::now();
        let flow = TcpFlow::new(ep(), &first, MTU, origin(now), now);
        let host = FakeHost::unlimited();
        Rig {
            flow,
            host,
            eg,
            sink,
            now,
            challenges: Challenges::default(),
        }
    }

    /// Connect succeeds and the sandbox ACKs our SYN-ACK with `window` (scaled by 7).
    pub(super) fn established(window: u16) -> Rig {
        let mut r = Rig::new();
        assert_eq!(r.connected(Ok(())), Verdict::Keep);
        r.sink.take();
        assert_eq!(
            r.input(seg(IRS + 1, ISS + 1, ACK, window, &[])),
            Verdict::Keep
        );
        r.sink.take();
        r
    }

    pub(super) fn connected(&mut self, result: io::Result<()>) -> Verdict {
        self.flow
            .on_connected(result, &mut self.host, &mut self.eg, self.now)
    }
}

#[test]
fn syn_ack_waits_for_host_connect() {
    let mut r = Rig::new();
    assert!(
        r.sink.take().is_empty(),
        "nothing before the connect finishes"
    );
    assert_eq!(r.connected(Ok(())), Verdict::Keep);
    let out = r.sink.take();
    assert_eq!(out.len(), 1);
    let s = &out[0];
    assert!(s.flags.syn && s.flags.ack && !s.flags.rst);
    assert_eq!((s.seq, s.ack), (ISS, IRS + 1));
    assert_eq!(s.mss, Some((MTU - 40) as u16));
    assert_eq!(s.scale, Some(OUR_WINDOW_SCALE));
}

#[test]
fn refused_connect_answers_rst_with_ack_of_syn() {
    let mut r = Rig::new();
    let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
    assert_eq!(r.connected(Err(refused)), Verdict::Close);
    let out = r.sink.take();
    assert_eq!(out.len(), 1);
    assert!(out[0].flags.rst && out[0].flags.ack);
    assert_eq!(out[0].ack, IRS + 1);
}

#[test]
fn sandbox_data_reaches_host_and_is_acked_once_per_batch() {
    let mut r = Rig::established(100);
    let v = r.flow.on_segment(
        &seg(IRS + 1, ISS + 1, ACK, 100, b"hello "),
        &mut r.host,
        &mut r.eg,
        &mut r.challenges,
        r.now,
    );
    assert_eq!(v, Verdict::Keep);
    r.flow.on_segment(
        &seg(IRS + 7, ISS + 1, ACK, 100, b"world"),
        &mut r.host,
        &mut r.eg,
        &mut r.challenges,
        r.now,
    );
    assert!(
        r.sink.take().is_empty(),
        "ACKs wait for the end of the batch"
    );
    r.flow.flush_ack(&mut r.host, &mut r.eg, r.now);
    assert_eq!(r.host.sent, b"hello world");
    let out = r.sink.take();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ack, IRS + 12);
    assert_eq!(out[0].window, ((1 << 20) >> OUR_WINDOW_SCALE) as u16);
}

#[test]
fn full_host_buffer_acks_only_accepted_bytes() {
    let mut r = Rig::established(100);
    r.host.send_cap = 3;
    r.input(seg(IRS + 1, ISS + 1, ACK, 100, b"abcdef"));
    assert_eq!(r.host.sent, b"abc");
    let out = r.sink.take();
    assert_eq!(out.last().map(|o| o.ack), Some(IRS + 4));
    // The sandbox retransmits the rest once the socket drains.
    r.host.send_cap = 100;
    r.flow.on_host_writable(&mut r.host, &mut r.eg, r.now);
    assert_eq!(r.sink.take().len(), 1, "window update when writable again");
    r.input(seg(IRS + 1, ISS + 1, ACK, 100, b"abcdef"));
    assert_eq!(r.host.sent, b"abcdef", "overlap trimmed, no byte twice");
    assert_eq!(r.sink.take().last().map(|o| o.ack), Some(IRS + 7));
}

#[test]
fn out_of_order_segment_is_dropped_with_duplicate_ack() {
    let mut r = Rig::established(100);
    for _ in 0..3 {
        r.flow.on_segment(
            &seg(IRS + 10, ISS + 1, ACK, 100, b"later"),
            &mut r.host,
            &mut r.eg,
            &mut r.challenges,
            r.now,
        );
    }
    assert!(r.host.sent.is_empty());
    let out = r.sink.take();
    assert_eq!(
        out.len(),
        3,
        "one duplicate ACK per out-of-order segment, even in one batch"
    );
    assert!(out.iter().all(|o| o.ack == IRS + 1));
}

#[test]
fn host_data_respects_window_and_is_discarded_only_when_acked() {
    let mut r = Rig::established(0);
    r.host.queued.extend((0..5000u32).map(|i| i as u8));
    // Window 3000 bytes (field 23 << 7 = 2944; use an exact multiple).
    r.input(seg(IRS + 1, ISS + 1, ACK, 24, &[])); // 24 << 7 = 3072
    r.sink.take();
    assert_eq!(r.host_readable(), Verdict::Keep);
    let out = r.sink.take();
    let sent: usize = out.iter().map(|o| o.payload.len()).sum();
    assert_eq!(sent, 3072);
    assert_eq!(out[0].seq, ISS + 1);
    assert!(out.iter().all(|o| o.payload.len() <= MTU - 40));
    assert_eq!(
        r.host.queued.len(),
        5000,
        "nothing discarded before the ACK"
    );
    r.input(seg(IRS + 1, ISS + 1 + 3072, ACK, 24, &[]));
    assert_eq!(r.host.queued.len(), 5000 - 3072);
    let out = r.sink.take();
    let sent: usize = out.iter().map(|o| o.payload.len()).sum();
    assert_eq!(sent, 5000 - 3072, "the ACK opened the window for the rest");
    assert_eq!(out[0].payload[0], (3072u32 % 256) as u8);
}

#[test]
fn timeout_retransmits_from_last_ack() {
    let mut r = Rig::established(100);
    r.host.queued.extend([7u8; 2000]);
    r.host_readable();
    let first = r.sink.take();
    assert_eq!(first.len(), 2);
    r.input(seg(IRS + 1, ISS + 1 + 1460, ACK, 100, &[]));
    r.sink.take();
    assert_eq!(r.advance(Duration::from_millis(100)), Verdict::Keep);
    assert!(r.sink.take().is_empty(), "no retransmission before the RTO");
    r.advance(Duration::from_millis(150));
    let again = r.sink.take();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].seq, ISS + 1 + 1460);
    assert_eq!(again[0].payload.len(), 540);
}

#[test]
fn three_duplicate_acks_trigger_fast_retransmit() {
    let mut r = Rig::established(100);
    r.host.queued.extend([1u8; 4000]);
    r.host_readable();
    assert_eq!(r.sink.take().len(), 3);
    for _ in 0..2 {
        r.input(seg(IRS + 1, ISS + 1, ACK, 100, &[]));
        assert!(r.sink.take().is_empty());
    }
    r.input(seg(IRS + 1, ISS + 1, ACK, 100, &[]));
    let again = r.sink.take();
    assert_eq!(again.first().map(|o| o.seq), Some(ISS + 1));
}

#[test]
fn close_both_ways_ends_the_flow() {
    let mut r = Rig::established(100);
    r.input(seg(IRS + 1, ISS + 1, FIN_ACK, 100, b"bye"));
    assert!(r.host.shut_wr, "sandbox FIN becomes shutdown(SHUT_WR)");
    assert_eq!(r.host.sent, b"bye");
    assert_eq!(r.sink.take().last().map(|o| o.ack), Some(IRS + 5));
    r.host.queued.extend(b"ok");
    r.host.eof = true;
    r.host_readable();
    let out = r.sink.take();
    assert_eq!(out.len(), 1, "the last data carries our FIN");
    assert_eq!(out[0].payload, b"ok");
    assert!(out[0].flags.fin);
    assert_eq!(out[0].seq, ISS + 1);
    assert_eq!(
        r.input(seg(IRS + 5, ISS + 4, ACK, 100, &[])),
        Verdict::Close
    );
}

#[test]
fn fin_waits_for_the_last_data_the_window_allows() {
    let mut r = Rig::established(0);
    r.input(seg(IRS + 1, ISS + 1, ACK, 8, &[])); // 8 << 7 = 1024 bytes
    r.sink.take();
    r.host.queued.extend([3u8; 1500]);
    r.host.eof = true;
    r.host_readable();
    let out = r.sink.take();
    assert_eq!(payload_lens(&out), [1024]);
    assert!(!out[0].flags.fin, "data beyond the window: no FIN yet");
    r.input(seg(IRS + 1, ISS + 1 + 1024, ACK, 8, &[]));
    let out = r.sink.take();
    assert_eq!(payload_lens(&out), [476]);
    assert!(out[0].flags.fin, "the rest fits: FIN on it");
    assert_eq!(
        r.input(seg(IRS + 1, ISS + 1 + 1500 + 1, ACK, 8, &[])),
        Verdict::Keep,
        "our FIN acknowledged; the sandbox's side is still open"
    );
    assert!(r.sink.take().is_empty());
}

#[test]
fn lost_data_with_fin_is_resent_whole() {
    let mut r = Rig::established(100);
    r.host.queued.extend(b"bye");
    r.host.eof = true;
    r.host_readable();
    let first = r.sink.take();
    assert_eq!((first.len(), first[0].flags), (1, FIN_ACK));
    r.advance(Duration::from_millis(250));
    let again = r.sink.take();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].seq, &again[0].payload[..], again[0].flags),
        (ISS + 1, &b"bye"[..], FIN_ACK)
    );
}

#[test]
fn sandbox_rst_aborts_host_socket() {
    let mut r = Rig::established(100);
    let rst = TcpFlags {
        rst: true,
        ..TcpFlags::default()
    };
    assert_eq!(r.input(seg(IRS + 1, 0, rst, 0, &[])), Verdict::Close);
    assert!(r.host.aborted);
}

#[test]
fn host_reset_resets_sandbox() {
    let mut r = Rig::established(100);
    assert_eq!(r.flow.reset(&mut r.host, &mut r.eg), Verdict::Close);
    let out = r.sink.take();
    assert!(out[0].flags.rst);
    assert!(r.host.aborted);
}

#[test]
fn zero_window_is_probed_on_the_timer() {
    let mut r = Rig::established(0);
    r.host.queued.extend([1u8; 10]);
    r.host_readable();
    assert!(r.sink.take().is_empty(), "nothing sent into a zero window");
    r.advance(Duration::from_millis(250));
    let probe = r.sink.take();
    assert_eq!(probe.len(), 1);
    assert!(probe[0].payload.is_empty());
    assert_eq!(probe[0].seq, ISS);
    r.input(seg(IRS + 1, ISS + 1, ACK, 1, &[]));
    let out = r.sink.take();
    assert_eq!(out.iter().map(|o| o.payload.len()).sum::<usize>(), 10);
}

#[test]
fn small_window_is_rechecked_until_the_host_drains() {
    let mut r = Rig::established(100);
    r.host.space = 1000;
    r.input(seg(IRS + 1, ISS + 1, ACK, 100, b"x"));
    assert_eq!(r.sink.take().len(), 1);
    assert!(r.flow.next_timer().is_some(), "small window arms a recheck");
    r.host.space = 1 << 20;
    r.advance(Duration::from_millis(1));
    let out = r.sink.take();
    assert_eq!(out.len(), 1, "window update once the host socket drained");
    assert_eq!(out[0].window, ((1 << 20) >> OUR_WINDOW_SCALE) as u16);
}

#[test]
fn retransmitted_syn_before_connect_is_ignored_and_after_gets_syn_ack() {
    let mut r = Rig::new();
    assert_eq!(r.input(syn()), Verdict::Keep);
    assert!(r.sink.take().is_empty());
    r.connected(Ok(()));
    r.sink.take();
    r.input(syn());
    let out = r.sink.take();
    assert!(out[0].flags.syn && out[0].flags.ack);
}

#[test]
fn short_data_ack_is_delayed_and_carried_by_the_reply() {
    let mut r = Rig::established(100);
    r.flow.on_segment(
        &seg(IRS + 1, ISS + 1, ACK, 100, b"GET"),
        &mut r.host,
        &mut r.eg,
        &mut r.challenges,
        r.now,
    );
    r.flow.end_batch(&mut r.host, &mut r.eg, r.now);
    let early = r.sink.take();
    assert!(
        early.is_empty(),
        "the ACK of a short request waits: {early:?}"
    );
    r.host.queued.extend(b"200");
    r.host_readable();
    let out = r.sink.take();
    assert_eq!(out.len(), 1, "the reply carries the ACK; no pure ACK");
    assert_eq!(
        (out[0].ack, out[0].payload.as_slice()),
        (IRS + 4, &b"200"[..])
    );
    r.flow.on_segment(
        &seg(IRS + 4, ISS + 4, ACK, 100, b"x"),
        &mut r.host,
        &mut r.eg,
        &mut r.challenges,
        r.now,
    );
    r.flow.end_batch(&mut r.host, &mut r.eg, r.now);
    assert!(r.sink.take().is_empty());
    r.advance(Duration::from_millis(2));
    let out = r.sink.take();
    assert_eq!(
        out.len(),
        1,
        "without a reply the ACK goes out on its timer"
    );
    assert_eq!(out[0].ack, IRS + 5);
}

#[test]
fn full_sized_segment_is_acked_in_the_same_batch() {
    let mut r = Rig::established(100);
    let big = [7u8; MTU - 40];
    r.flow.on_segment(
        &seg(IRS + 1, ISS + 1, ACK, 100, &big),
        &mut r.host,
        &mut r.eg,
        &mut r.challenges,
        r.now,
    );
    r.flow.end_batch(&mut r.host, &mut r.eg, r.now);
    assert_eq!(r.sink.take().len(), 1);
}

#[test]
fn answered_zero_window_probes_never_reset_the_flow() {
    let mut r = Rig::established(0);
    r.host.queued.extend([3u8; 100]);
    r.host_readable();
    for probe in 0..(MAX_RETRIES + 5) {
        assert_eq!(
            r.advance(RTO_MAX),
            Verdict::Keep,
            "probe {probe} reset the flow"
        );
        let out = r.sink.take();
        assert!(out.iter().all(|o| !o.flags.rst), "probe {probe}: {out:?}");
        assert_eq!(r.input(seg(IRS + 1, ISS + 1, ACK, 0, &[])), Verdict::Keep);
        r.sink.take();
    }
    r.input(seg(IRS + 1, ISS + 1, ACK, 10, &[]));
    let out = r.sink.take();
    assert_eq!(out.iter().map(|o| o.payload.len()).sum::<usize>(), 100);
}

fn with_ts(s: TcpSegment<'_>, tsval: u32) -> TcpSegment<'_> {
    TcpSegment {
        timestamp: Some((tsval, 0)),
        ..s
    }
}

#[test]
fn timestamps_are_echoed_from_in_order_segments_only_and_shrink_segments() {
    let mut r = Rig::with_syn(with_ts(syn(), 500));
    assert_eq!(r.connected(Ok(())), Verdict::Keep);
    let out = r.sink.take();
    let ts = out[0]
        .ts
        .expect("the SYN offered timestamps, so the SYN-ACK carries them");
    assert_eq!(ts.1, 500, "the SYN-ACK echoes the SYN's TSval");
    r.input(with_ts(seg(IRS + 1, ISS + 1, ACK, 1000, &[]), 510));
    r.sink.take();
    // In order: its TSval is echoed.
    r.input(with_ts(seg(IRS + 1, ISS + 1, ACK, 1000, b"abc"), 520));
    let out = r.sink.take();
    assert_eq!(out.last().and_then(|o| o.ts).map(|t| t.1), Some(520));
    // Out of order (a hole before it): the duplicate ACK still echoes 520, so the sandbox's
    // RTT sample comes from the segment that fills the hole.
    r.input(with_ts(seg(IRS + 100, ISS + 1, ACK, 1000, b"zzz"), 530));
    let out = r.sink.take();
    assert_eq!(out.last().and_then(|o| o.ts).map(|t| t.1), Some(520));
    // The hole filled by a retransmission: its TSval is echoed.
    r.input(with_ts(seg(IRS + 4, ISS + 1, ACK, 1000, b"d"), 540));
    let out = r.sink.take();
    assert_eq!(out.last().and_then(|o| o.ts).map(|t| t.1), Some(540));
    // Host data goes out in segments that leave room for the 12 option bytes.
    r.host.queued.extend(std::iter::repeat_n(7u8, 5000));
    r.host_readable();
    let out = r.sink.take();
    let mss = MTU - 40;
    assert!(!out.is_empty(), "host data was sent");
    for o in &out {
        assert!(o.ts.is_some(), "every segment carries timestamps");
        assert!(
            o.payload.len() <= mss - 12,
            "segment of {} bytes",
            o.payload.len()
        );
    }
}

#[test]
fn no_timestamps_unless_the_syn_offered_them() {
    let mut r = Rig::new();
    assert_eq!(r.connected(Ok(())), Verdict::Keep);
    assert!(r.sink.take().iter().all(|o| o.ts.is_none()));
    r.input(with_ts(seg(IRS + 1, ISS + 1, ACK, 1000, b"abc"), 520));
    assert!(r.sink.take().iter().all(|o| o.ts.is_none()));
}

#[test]
fn one_ack_for_two_segments_echoes_the_older_tsval() {
    let mut r = Rig::with_syn(with_ts(syn(), 500));
    assert_eq!(r.connected(Ok(())), Verdict::Keep);
    r.input(with_ts(seg(IRS + 1, ISS + 1, ACK, 1000, &[]), 510));
    r.sink.take();
    let (now, host, eg, limit) = (r.now, &mut r.host, &mut r.eg, &mut r.challenges);
    r.flow.on_segment(
        &with_ts(seg(IRS + 1, ISS + 1, ACK, 1000, b"ab"), 600),
        host,
        eg,
        limit,
        now,
    );
    r.flow.on_segment(
        &with_ts(seg(IRS + 3, ISS + 1, ACK, 1000, b"cd"), 700),
        host,
        eg,
        limit,
        now,
    );
    r.flow.flush_ack(host, eg, now);
    let out = r.sink.take();
    let last = out.last().expect("an ACK");
    assert_eq!(last.ack, IRS + 5);
    assert_eq!(
        last.ts.map(|t| t.1),
        Some(600),
        "RFC 7323: echo the oldest unacknowledged"
    );
}

#[test]
fn a_full_segment_with_timestamps_is_acked_at_once() {
    let mut r = Rig::with_syn(with_ts(syn(), 500));
    assert_eq!(r.connected(Ok(())), Verdict::Keep);
    r.input(with_ts(seg(IRS + 1, ISS + 1, ACK, 1000, &[]), 510));
    r.sink.take();
    // The sandbox's MSS is 1460; with 12 bytes of timestamps its full segments carry 1448.
    let full = vec![1u8; 1448];
    let (now, host, eg, limit) = (r.now, &mut r.host, &mut r.eg, &mut r.challenges);
    r.flow.on_segment(
        &with_ts(seg(IRS + 1, ISS + 1, ACK, 1000, &full), 520),
        host,
        eg,
        limit,
        now,
    );
    r.flow.end_batch(host, eg, now);
    let out = r.sink.take();
    assert_eq!(
        out.last().map(|o| o.ack),
        Some(IRS + 1 + 1448),
        "bulk data is acknowledged in its own batch, not after the delayed-ACK timer"
    );
}

#[test]
fn segments_respect_a_sandbox_mss_below_the_link_mss() {
    let mut r = Rig::with_syn(TcpSegment {
        mss: Some(1000),
        ..syn()
    });
    r.connected(Ok(()));
    r.input(seg(IRS + 1, ISS + 1, ACK, 100, &[]));
    r.sink.take();
    r.host.queued.extend([9u8; 2500]);
    r.host_readable();
    let lens: Vec<usize> = r.sink.take().iter().map(|o| o.payload.len()).collect();
    assert_eq!(lens, [1000, 1000, 500]);
}

/// Our ISS, and a TSval clock starting with the test.
fn origin(now: Instant) -> Origin {
    Origin {
        iss: ISS,
        ts_epoch: now,
    }
}
