//! RFC 5961 checks of the translator: what a RST or SYN with a forged sequence number does to
//! an established flow the sandbox opened (the `state` table's r1, s3 and `C`), and how its
//! challenge ACKs are limited, per flow and stack-wide (`ChallengeLimit`, section 7).
//! Hand-built segments against the scripted host and limit of `fake`, with the constructors of
//! `tests`.

use std::time::Duration;

use super::fake::{Challenges, Rig};
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

#[test]
fn the_stack_wide_limit_is_asked_only_once_the_flows_own_interval_allows() {
    let mut r = Rig::established(100);
    r.input(rst(IRS + 1 + 1000));
    assert_challenge_ack(&r, "the first RST in the window");
    r.input(rst(IRS + 1 + 2000));
    r.input(syn_at(IRS + 3));
    assert!(r.sink.take().is_empty(), "within the flow's 500 ms");
    assert_eq!(
        r.challenges.asked, 1,
        "challenges the flow holds back itself cost the stack nothing"
    );
}

#[test]
fn a_spent_stack_wide_limit_silences_every_flow_and_a_flow_asks_again_later() {
    // One limit shared by two flows, as the event loop shares its bucket: one challenge left.
    let mut shared = Challenges {
        left: Some(1),
        asked: 0,
    };
    let (mut a, mut b) = (Rig::established(100), Rig::established(100));
    std::mem::swap(&mut a.challenges, &mut shared);
    a.input(rst(IRS + 1 + 1000));
    assert_challenge_ack(&a, "flow A spends the last challenge");
    std::mem::swap(&mut a.challenges, &mut shared);
    std::mem::swap(&mut b.challenges, &mut shared);
    assert_eq!(b.input(rst(IRS + 1 + 1000)), Verdict::Keep);
    assert_eq!(b.input(syn_at(IRS + 9)), Verdict::Keep);
    assert!(
        b.sink.take().is_empty(),
        "the stack's limit is spent: no challenge from B"
    );
    assert!(
        !b.host.aborted,
        "a refused challenge still leaves the flow alone"
    );
    // The limit refills (the event loop's bucket earns one a millisecond): B asks again at
    // once, its own interval not started by the challenges it was refused.
    b.challenges.left = Some(1);
    b.now += Duration::from_millis(1);
    b.input(rst(IRS + 1 + 1000));
    assert_challenge_ack(&b, "flow B once the stack's limit has room again");
    assert_eq!(b.challenges.asked, 4);
}
