//! RFC 5961 checks of the translator: what a RST or SYN with a forged sequence number does to
//! an established flow the sandbox opened (the `state` table's r1, s3 and `C`). Hand-built
//! segments against the scripted host of `fake`, with the constructors of `tests`.

use std::time::Duration;

use super::fake::Rig;
use super::tests::{seg, syn, IRS, ISS};
use super::*;

const RST_ACK_FLAGS: TcpFlags = TcpFlags {
    rst: true,
    ack: true,
    syn: false,
    fin: false,
};

/// A RST from the sandbox at `seq`.
fn rst(seq: u32) -> TcpSegment<'static> {
    seg(seq, ISS + 1, RST_ACK_FLAGS, 0, &[])
}

/// A SYN from the sandbox with ISN `seq`.
fn syn_at(seq: u32) -> TcpSegment<'static> {
    TcpSegment { seq, ..syn() }
}

/// The one pure ACK a challenge is: SEQ = SND.NXT, ACK = RCV.NXT.
fn assert_challenge_ack(r: &Rig, why: &str) {
    let out = r.sink.take();
    assert_eq!(out.len(), 1, "{why}: one challenge ACK: {out:?}");
    assert_eq!(
        (out[0].flags, out[0].seq, out[0].ack),
        (ACK, ISS + 1, IRS + 1),
        "{why}"
    );
}

#[test]
fn rst_at_exactly_the_next_sequence_number_ends_the_flow() {
    let mut r = Rig::established(100);
    assert_eq!(r.input(rst(IRS + 1)), Verdict::Close);
    assert!(r.host.aborted, "the host peer sees the reset");
}

#[test]
fn in_window_rst_gets_a_rate_limited_challenge_ack_and_the_flow_stays() {
    let mut r = Rig::established(100);
    assert_eq!(r.input(rst(IRS + 1 + 1000)), Verdict::Keep);
    assert!(!r.host.aborted);
    assert_challenge_ack(&r, "a RST 1000 bytes into the window");
    assert_eq!(r.input(rst(IRS + 1 + 2000)), Verdict::Keep);
    assert!(r.sink.take().is_empty(), "a second challenge within 500 ms");
    r.now += CHALLENGE_INTERVAL;
    assert_eq!(r.input(rst(IRS + 1 + 3000)), Verdict::Keep);
    assert_challenge_ack(&r, "a RST once the interval passed");
    assert!(!r.host.aborted);
}

#[test]
fn out_of_window_rst_is_dropped_without_a_word() {
    let mut r = Rig::established(100);
    for seq in [IRS, IRS + (1 << 30), IRS.wrapping_sub(1 << 20)] {
        assert_eq!(r.input(rst(seq)), Verdict::Keep, "RST at {seq}");
    }
    assert!(r.sink.take().is_empty());
    assert!(!r.host.aborted);
    r.host.queued.extend(b"still here");
    r.host_readable();
    assert_eq!(r.sink.take()[0].payload, b"still here");
}

#[test]
fn syn_on_an_established_flow_gets_a_challenge_ack_never_a_reset() {
    let mut r = Rig::established(100);
    assert_eq!(r.input(syn_at(IRS + 77_777)), Verdict::Keep);
    assert!(!r.host.aborted, "a forged SYN must not reset the host peer");
    assert_challenge_ack(&r, "a SYN with a new ISN");
    r.now += Duration::from_secs(1);
    assert_eq!(r.input(syn_at(IRS)), Verdict::Keep);
    assert_challenge_ack(&r, "a SYN with the old ISN");
}

#[test]
fn a_sandbox_reusing_the_port_answers_the_challenge_and_the_flow_ends() {
    let mut r = Rig::established(100);
    r.input(syn_at(IRS + 5));
    let challenge = r.sink.take();
    let answer = challenge.first().map(|c| c.ack).expect("a challenge ACK");
    // A sandbox without the old connection answers an ACK with a RST at its ACK number.
    assert_eq!(r.input(rst(answer)), Verdict::Close);
    assert!(r.host.aborted);
}

#[test]
fn half_open_flow_is_still_replaced_by_a_syn_with_a_new_isn() {
    let mut r = Rig::new();
    r.connected(Ok(()));
    r.sink.take();
    assert_eq!(r.input(syn_at(IRS + 9)), Verdict::Close);
    assert!(r.sink.take().iter().any(|o| o.flags.rst));
}
