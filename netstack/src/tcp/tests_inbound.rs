//! Translator tests for host-initiated flows (port forwards): our SYN to the sandbox's
//! service, its SYN-ACK or RST, and the flow after it, on hand-built segments against the
//! scripted host socket and recording frame sink of `fake`.

use std::time::{Duration, Instant};

use super::fake::{egress, payload_lens, Challenges, FakeHost, Rig, Sink};
use super::*;

const MTU: usize = 1500;
/// Our initial sequence number.
const ISS: u32 = 7000;
/// The sandbox's initial sequence number.
const IRS: u32 = 300_000;
/// The TSval of the sandbox's SYN-ACK.
const SANDBOX_TSVAL: u32 = 900;

fn ep() -> Endpoints {
    Endpoints {
        sandbox: "10.0.2.100:80".parse().unwrap(),
        remote: "192.0.2.7:40000".parse().unwrap(),
    }
}

const BARE_RST: TcpFlags = TcpFlags {
    ack: false,
    ..RST_ACK
};
const BARE_SYN: TcpFlags = TcpFlags {
    ack: false,
    ..SYN_ACK
};

/// A segment from the sandbox's service to the client.
fn seg(seq: u32, ack: u32, flags: TcpFlags, window: u16, payload: &[u8]) -> TcpSegment<'_> {
    TcpSegment {
        src_port: 80,
        dst_port: 40000,
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

/// The sandbox's SYN-ACK to our SYN, as Linux sends it: MSS 1460, scale 7, timestamps.
fn syn_ack() -> TcpSegment<'static> {
    TcpSegment {
        mss: Some(1460),
        window_scale: Some(7),
        timestamp: Some((SANDBOX_TSVAL, 1)),
        ..seg(IRS, ISS + 1, SYN_ACK, 65160, &[])
    }
}

impl Rig {
    /// A host client was accepted and our SYN is out (and taken from the sink).
    fn syn_sent() -> Rig {
        let mut r = Rig::unsent();
        r.flow.send_syn(&mut r.host, &mut r.eg, r.now);
        assert_eq!(r.sink.take().len(), 1, "send_syn emits one segment");
        r
    }

    /// A host client was accepted; no SYN yet.
    fn unsent() -> Rig {
        let sink = Sink::default();
        let eg = egress(MTU, &sink);
        let now = Instant::now();
        Rig {
            flow: TcpFlow::new_inbound(ep(), MTU, origin(now), now),
            host: FakeHost::unlimited(),
            eg,
            sink,
            now,
            challenges: Challenges::default(),
        }
    }

    /// Established after `answer`; the ACK of it is taken from the sink.
    fn answered(answer: TcpSegment<'_>) -> Rig {
        let mut r = Rig::syn_sent();
        assert_eq!(r.input(answer), Verdict::Keep);
        let out = r.sink.take();
        assert_eq!(out.len(), 1, "one ACK of the SYN-ACK: {out:?}");
        r
    }
}

#[test]
fn host_initiated_open_sends_syn_with_options_and_acks_the_syn_ack() {
    let mut r = Rig::unsent();
    assert!(r.sink.take().is_empty(), "nothing before send_syn");
    assert!(!r.flow.is_connecting(), "no host connect is in progress");
    r.flow.send_syn(&mut r.host, &mut r.eg, r.now);
    let out = r.sink.take();
    assert_eq!(out.len(), 1);
    let syn = &out[0];
    assert_eq!((syn.src, syn.dst), (ep().remote, ep().sandbox));
    assert_eq!(syn.flags, BARE_SYN, "a SYN, not a SYN-ACK");
    assert_eq!(syn.seq, ISS);
    assert_eq!(syn.mss, Some((MTU - 40) as u16));
    assert_eq!(syn.scale, Some(OUR_WINDOW_SCALE));
    assert_eq!(
        syn.window,
        u16::MAX,
        "1 MiB of send space, unscaled in a SYN"
    );
    assert_eq!(
        syn.ts.map(|t| t.1),
        Some(0),
        "timestamps offered, nothing to echo"
    );
    assert_eq!(r.flow.next_timer(), Some(r.now + RTO_MIN));
    assert!(
        !r.flow.sandbox_closed(),
        "the exit linger waits for the sandbox's answer"
    );

    assert_eq!(r.input(syn_ack()), Verdict::Keep);
    let out = r.sink.take();
    assert_eq!(out.len(), 1, "{out:?}");
    let ack = &out[0];
    assert_eq!(ack.flags, ACK);
    assert_eq!((ack.seq, ack.ack), (ISS + 1, IRS + 1));
    assert_eq!(ack.window, ((1 << 20) >> OUR_WINDOW_SCALE) as u16, "scaled");
    assert_eq!(ack.ts.map(|t| t.1), Some(SANDBOX_TSVAL));
    assert!(ack.payload.is_empty());
    assert_eq!(r.flow.next_timer(), None, "SYN retransmission disarmed");
    assert!(!r.flow.sandbox_closed());
}

#[test]
fn host_data_sent_before_the_handshake_reaches_the_sandbox_right_after_it() {
    let mut r = Rig::syn_sent();
    r.host.queued.extend((0..2500u32).map(|i| i as u8));
    assert_eq!(r.host_readable(), Verdict::Keep);
    r.flow.on_host_writable(&mut r.host, &mut r.eg, r.now);
    assert!(r.sink.take().is_empty(), "no data before the SYN-ACK");
    // MSS 1000 and no timestamps: the data goes out in 1000-byte segments.
    let answer = TcpSegment {
        mss: Some(1000),
        timestamp: None,
        ..syn_ack()
    };
    assert_eq!(r.input(answer), Verdict::Keep);
    let out = r.sink.take();
    assert_eq!(
        payload_lens(&out),
        [0, 1000, 1000, 500],
        "ACK, then the data"
    );
    assert!(out.iter().all(|o| o.flags == ACK && o.ack == IRS + 1));
    assert_eq!(
        out.iter().map(|o| o.seq).collect::<Vec<_>>(),
        [ISS + 1, ISS + 1, ISS + 1001, ISS + 2001]
    );
    assert!(
        out.iter().all(|o| o.ts.is_none()),
        "no timestamps in the SYN-ACK"
    );
    assert_eq!(out[3].payload[499], (2499u32 % 256) as u8);
    assert_eq!(r.host.queued.len(), 2500, "kept until the sandbox ACKs it");
}

#[test]
fn data_waiting_before_the_handshake_needs_no_readiness_event() {
    // The accepted socket held data before the flow existed; its edge went unseen.
    let mut r = Rig::syn_sent();
    r.host.queued.extend(b"early");
    r.input(syn_ack());
    let out = r.sink.take();
    assert_eq!(payload_lens(&out), [0, 5]);
    assert_eq!(out[1].payload, b"early");
}

#[test]
fn client_close_before_the_handshake_becomes_a_fin_after_it() {
    let mut r = Rig::syn_sent();
    r.host.queued.extend(b"x");
    r.host.eof = true;
    r.host_readable();
    assert!(r.sink.take().is_empty());
    r.input(syn_ack());
    let out = r.sink.take();
    assert_eq!(payload_lens(&out), [0, 1], "our FIN rides on the data");
    assert_eq!((out[1].flags, out[1].seq), (FIN_ACK, ISS + 1));
}

#[test]
fn syn_ack_without_window_scale_means_no_scaling_either_way() {
    let mut r = Rig::syn_sent();
    r.host.queued.extend([5u8; 10_000]);
    r.input(TcpSegment {
        window_scale: None,
        timestamp: None,
        ..seg(IRS, ISS + 1, SYN_ACK, 1000, &[])
    });
    let out = r.sink.take();
    assert_eq!(out[0].window, u16::MAX, "our 1 MiB unscaled, so capped");
    assert_eq!(payload_lens(&out[1..]), [536, 464], "window 1000, MSS 536");
    // A window field of 2000 means 2000 bytes, not 2000 << 7.
    r.input(seg(IRS + 1, ISS + 1001, ACK, 2000, &[]));
    let out = r.sink.take();
    assert_eq!(out.iter().map(|o| o.payload.len()).sum::<usize>(), 2000);
    assert!(out.iter().all(|o| o.window == u16::MAX));
}

#[test]
fn syn_ack_window_scale_applies_to_later_windows() {
    let mut r = Rig::answered(TcpSegment {
        window_scale: Some(2),
        ..syn_ack()
    });
    r.host.queued.extend([5u8; 3000]);
    r.input(seg(IRS + 1, ISS + 1, ACK, 100, &[])); // 100 << 2 bytes
    r.host_readable();
    let sent: usize = r.sink.take().iter().map(|o| o.payload.len()).sum();
    assert_eq!(sent, 400);
}

#[test]
fn rst_acknowledging_our_syn_closes_and_aborts_the_host() {
    let mut r = Rig::syn_sent();
    assert_eq!(r.input(seg(0, 0, BARE_RST, 0, &[])), Verdict::Keep);
    assert_eq!(r.input(seg(0, ISS + 9, RST_ACK, 0, &[])), Verdict::Keep);
    assert!(
        !r.host.aborted,
        "a RST that does not acknowledge our SYN is dropped"
    );
    assert_eq!(r.input(seg(0, ISS + 1, RST_ACK, 0, &[])), Verdict::Close);
    assert!(r.host.aborted, "the host client sees a reset");
    assert!(r.sink.take().is_empty(), "no answer to a RST");
}

#[test]
fn syn_ack_with_a_wrong_ack_gets_rst_at_that_ack_then_our_syn_again() {
    let mut r = Rig::syn_sent();
    let stale = TcpSegment {
        ack: ISS + 500,
        ..syn_ack()
    };
    assert_eq!(r.input(stale), Verdict::Keep);
    let out = r.sink.take();
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!((out[0].flags, out[0].seq), (BARE_RST, ISS + 500));
    assert_eq!((out[1].flags, out[1].seq), (BARE_SYN, ISS));
    assert!(!r.host.aborted);
    // The right answer still establishes the flow.
    r.input(syn_ack());
    let out = r.sink.take();
    assert_eq!((out[0].flags, out[0].ack), (ACK, IRS + 1));
}

#[test]
fn a_time_wait_ack_to_our_syn_gets_rst_and_the_syn_again_at_once() {
    let mut r = Rig::syn_sent();
    // The sandbox still holds an earlier connection on this 4-tuple in TIME_WAIT and
    // answers our SYN with that connection's ACK.
    let old_ack = seg(IRS, ISS.wrapping_sub(70_000), ACK, 100, &[]);
    assert_eq!(r.input(old_ack), Verdict::Keep);
    let out = r.sink.take();
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        (out[0].flags, out[0].seq),
        (BARE_RST, ISS.wrapping_sub(70_000))
    );
    assert_eq!((out[1].flags, out[1].seq), (BARE_SYN, ISS), "no RTO wait");
    r.input(syn_ack());
    let out = r.sink.take();
    assert_eq!(
        (out[0].flags, out[0].ack),
        (ACK, IRS + 1),
        "established after all"
    );
}

#[test]
fn other_segments_while_our_syn_is_out_are_ignored() {
    let mut r = Rig::syn_sent();
    for s in [
        seg(IRS, ISS + 1, ACK, 100, &[]),
        seg(IRS, ISS + 1, ACK, 100, b"data"),
        seg(IRS, ISS + 1, FIN_ACK, 100, &[]),
        seg(IRS, 0, BARE_SYN, 100, &[]),
    ] {
        assert_eq!(r.input(s), Verdict::Keep);
    }
    assert!(r.sink.take().is_empty());
    assert!(r.host.sent.is_empty() && !r.host.shut_wr && !r.host.aborted);
    assert_eq!(r.flow.next_timer(), Some(r.now + RTO_MIN), "still waiting");
}

#[test]
fn syn_is_retransmitted_with_backoff_and_the_flow_reset_after_max_retries() {
    let mut r = Rig::syn_sent();
    assert_eq!(r.advance(RTO_MIN - Duration::from_millis(1)), Verdict::Keep);
    assert!(r.sink.take().is_empty(), "nothing before the RTO");
    r.advance(Duration::from_millis(1));
    let mut rto = RTO_MIN;
    for n in 1..=MAX_RETRIES {
        let out = r.sink.take();
        assert_eq!(out.len(), 1, "retransmission {n}");
        assert_eq!((out[0].flags, out[0].seq), (BARE_SYN, ISS));
        assert_eq!(out[0].scale, Some(OUR_WINDOW_SCALE));
        rto = (rto * 2).min(RTO_MAX);
        assert_eq!(r.flow.next_timer(), Some(r.now + rto), "backoff {n}");
        let v = r.advance(rto);
        assert_eq!(
            v,
            if n == MAX_RETRIES {
                Verdict::Close
            } else {
                Verdict::Keep
            }
        );
    }
    assert!(r.host.aborted, "the host client is reset");
    let out = r.sink.take();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].flags, out[0].seq), (BARE_RST, ISS + 1));
}

#[test]
fn host_error_before_the_handshake_resets_both_sides() {
    let mut r = Rig::syn_sent();
    assert_eq!(r.flow.reset(&mut r.host, &mut r.eg), Verdict::Close);
    assert!(r.host.aborted);
    let out = r.sink.take();
    assert_eq!((out[0].flags, out[0].seq), (BARE_RST, ISS + 1));
}

#[test]
fn repeated_syn_ack_after_the_handshake_is_acked_again() {
    let mut r = Rig::answered(syn_ack());
    assert_eq!(r.input(syn_ack()), Verdict::Keep);
    let out = r.sink.take();
    assert_eq!(out.len(), 1, "our first ACK was lost: send another");
    assert_eq!(
        (out[0].flags, out[0].seq, out[0].ack),
        (ACK, ISS + 1, IRS + 1)
    );
}

#[test]
fn host_initiated_flow_closes_client_first() {
    let mut r = Rig::answered(syn_ack());
    r.host.queued.extend(b"GET /");
    r.host.eof = true;
    r.host_readable();
    let out = r.sink.take();
    assert_eq!(payload_lens(&out), [5]);
    assert_eq!((out[0].flags, out[0].seq), (FIN_ACK, ISS + 1));
    // The service answers, acknowledging request and FIN, then closes.
    r.input(seg(IRS + 1, ISS + 7, ACK, 500, b"200 OK"));
    assert_eq!(r.host.sent, b"200 OK");
    assert!(
        r.host.queued.is_empty(),
        "request discarded once acknowledged"
    );
    assert!(!r.flow.sandbox_closed());
    assert_eq!(r.sink.take().last().map(|o| o.ack), Some(IRS + 7));
    assert_eq!(
        r.input(seg(IRS + 7, ISS + 7, FIN_ACK, 500, &[])),
        Verdict::Close
    );
    assert!(r.host.shut_wr, "the service's FIN reaches the client");
    let out = r.sink.take();
    assert_eq!(
        (out[0].flags, out[0].ack),
        (ACK, IRS + 8),
        "its FIN is ACKed"
    );
}

#[test]
fn host_initiated_flow_closes_service_first() {
    let mut r = Rig::answered(syn_ack());
    r.input(seg(IRS + 1, ISS + 1, FIN_ACK, 500, b"banner"));
    assert_eq!(r.host.sent, b"banner");
    assert!(r.host.shut_wr);
    assert!(r.flow.sandbox_closed(), "the service closed its side");
    assert_eq!(r.sink.take().last().map(|o| o.ack), Some(IRS + 8));
    r.host.eof = true;
    r.host_readable();
    let out = r.sink.take();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].flags, out[0].seq), (FIN_ACK, ISS + 1));
    assert_eq!(
        r.input(seg(IRS + 8, ISS + 2, ACK, 500, &[])),
        Verdict::Close
    );
}

/// Our ISS, and a TSval clock starting with the test.
fn origin(now: Instant) -> Origin {
    Origin {
        iss: ISS,
        ts_epoch: now,
    }
}
