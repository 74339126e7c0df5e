//! Protocol state of one TCP flow, as the sandbox's side of the connection sees it, and the
//! table of what every event does in every state. Part of `tcp`: the handlers in `open`,
//! `receive` and `transmit` read and change `TcpFlow::state`; this file only names the states.
//! I/O readiness hints (host readable, writable, hung up) and ACK scheduling are not
//! protocol state and stay plain fields of the flow. Grows only with a new state.
//!
//! # States
//! The names are RFC 9293's for our end of the connection with the sandbox; the host socket's
//! own state is the kernel's business. A flow the sandbox opens starts in `Connecting`, which
//! comes before RFC 9293's SYN-RECEIVED: as in pasta, the sandbox gets no SYN-ACK until the
//! host connect succeeded. A flow a host client opens (a port forward) starts in `SynSent`:
//! its host socket is connected already. `Closed` is never kept: the handler that reaches it
//! returns `Verdict::Close` and the event loop removes the flow.
//!
//! # State/event table
//! Legend: `-` ignored (the flow stays); `A` abort the host socket (its peer sees RST); `C` a
//! challenge ACK (see r1); `R` RST to the sandbox; `X` close the flow (`Verdict::Close`); `K`
//! an ACK to the sandbox is owed (sent once per batch, and flushed before `X`); `P` push:
//! peek host data into the sandbox's window; `n` note the readiness for a `P` once the state
//! allows it; `-> S` next state.
//!
//! Segments from the sandbox. In SynSent see y1 and y2. Elsewhere RST is looked at first,
//! then SYN; any other segment without the ACK flag is ignored, and the rest of a segment
//! goes through ACK, data and FIN in order.
//!
//! | state       | SYN | ACK                | data | FIN             | RST |
//! |-------------|-----|--------------------|------|-----------------|-----|
//! | Connecting  | s1  | -                  | -    | -               | r1  |
//! | SynRcvd     | s2  | a1 -> Established  | a1   | a1              | r1  |
//! | SynSent     | y1  | -                  | -    | -               | y2  |
//! | Established | s3  | a2                 | d1   | f1 -> CloseWait | r1  |
//! | CloseWait   | s3  | a2                 | K    | K               | r1  |
//! | FinWait1    | s3  | a2; a3 -> FinWait2 | d1   | f1 -> LastAck   | r1  |
//! | FinWait2    | s3  | a2                 | d1   | f1, X           | r1  |
//! | LastAck     | s3  | a2; a3 X           | K    | K               | r1  |
//!
//! - s1: the ISN of the sandbox's first SYN `-`; a new ISN (a new connection on a reused
//!   port) `A R X`.
//! - s2: the same ISN: resend our SYN-ACK; a new ISN `A R X`.
//! - s3: any SYN, whatever its sequence number: `C` (RFC 5961 4.2), never a reset. A
//!   repeated SYN-ACK (the sandbox did not get our ACK of it) is answered by that ACK; a
//!   sandbox that really opens a new connection on the port answers `C` with a RST at
//!   RCV.NXT (r1), and its next SYN opens the new flow.
//! - r1 (RFC 5961 3.2): a RST at exactly RCV.NXT `A X`; elsewhere in the window we last
//!   advertised `C`; anywhere else `-`. A forged RST must guess the sequence number exactly.
//! - `C`: a challenge ACK (SEQ = SND.NXT, ACK = RCV.NXT), at most one per flow per 500 ms
//!   (`CHALLENGE_INTERVAL`) and within the stack-wide `ChallengeLimit` (1,000 a second), and
//!   none in Connecting (no SYN-ACK went out yet).
//! - y1: a SYN-ACK acknowledging our SYN: take the sandbox's ISN, window, MSS, window scale
//!   and timestamps (each used only if both sides offered it), ACK it, `-> Established`,
//!   then `P` what the host client sent meanwhile. Its data or FIN is not taken. Any segment
//!   whose ACK acknowledges something else (an old SYN-ACK, or the old ACK a TIME_WAIT of an
//!   earlier connection on this 4-tuple answers our SYN with) gets a RST at its ACK number
//!   and our SYN goes again at once; the flow stays. A SYN without ACK (simultaneous open) is
//!   ignored, as is any segment without SYN, ACK or RST (RFC 9293 3.10.7.3).
//! - y2: a RST acknowledging our SYN (the service is not listening) `A X`, so the host
//!   client sees a reset as from a closed port; any other RST `-`.
//! - a1: only an ACK of our SYN-ACK counts (any other is `-`); it moves to Established and
//!   the rest of the segment is handled there.
//! - a2: discard the acknowledged bytes from the host socket, then `P`; the third duplicate
//!   ACK goes back N (see t2).
//! - a3: when it acknowledges our FIN.
//! - d1: in-order bytes are sent to the host socket, `K` for what it took; out-of-order
//!   bytes are dropped and answered with a duplicate ACK at once.
//! - f1: `shutdown(SHUT_WR)` on the host socket, `K`.
//!
//! Host socket and timer events (the host connect; readable; EOF; an error or reset; the
//! retransmission timer). The idle timeout is `A R X` in every state.
//!
//! | state       | conn ok       | conn fail | data | EOF            | error | RTO               |
//! |-------------|---------------|-----------|------|----------------|-------|-------------------|
//! | Connecting  | c1 -> SynRcvd | R X       | n    | n              | -     | -                 |
//! | SynRcvd     | -             | -         | n    | n              | A R X | t1                |
//! | SynSent     | -             | -         | n    | n              | A R X | t3                |
//! | Established | -             | -         | P    | e1 -> FinWait1 | A R X | t2                |
//! | CloseWait   | -             | -         | P    | e1 -> LastAck  | A R X | t2                |
//! | FinWait1    | -             | -         | -    | -              | A R X | t2 -> Established |
//! | FinWait2    | -             | -         | -    | -              | A R X | -                 |
//! | LastAck     | -             | -         | -    | -              | A R X | t2 -> CloseWait   |
//!
//! - c1: SYN-ACK to the sandbox, arm the RTO. A host error before the connect finishes is
//!   the connect failing.
//! - e1: `P` reaches the EOF after the data and sends our FIN.
//! - t1: resend the SYN-ACK with the RTO doubled; the 13th expiry in a row `A R X`.
//! - t2: go back N (rewind to the sandbox's last ACK and `P` again), or probe a zero window;
//!   the 13th unanswered expiry in a row `A R X`. A FIN in flight is unsent with the data
//!   before it, and `P` sends it again when it reaches the EOF: so FinWait1 steps back to
//!   Established and LastAck to CloseWait.
//! - t3: resend the SYN with the RTO doubled; the 13th expiry in a row `A R X`.
//!
//! `R` in SynSent is a RST without ACK at the end of our SYN, where a sandbox in SYN-RECEIVED
//! takes it; elsewhere it is RST|ACK.
//!
//! "Host writable" is an I/O hint, not a protocol event: in a synchronized state it sends a
//! window update after a send the host socket refused, elsewhere it does nothing.

/// Where a flow's connection with the sandbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// The sandbox's SYN arrived and the host connect is in progress; the sandbox has had no
    /// answer yet.
    Connecting,
    /// The host connect succeeded and our SYN-ACK is out; waiting for the sandbox's ACK.
    SynRcvd,
    /// Host-initiated: a host client was accepted and our SYN is out; waiting for the
    /// sandbox's SYN-ACK.
    SynSent,
    /// Both directions open.
    Established,
    /// The sandbox sent FIN (passed on as `shutdown(SHUT_WR)`); host data still flows.
    CloseWait,
    /// The host peer's EOF became our FIN, not yet acknowledged; sandbox data still flows.
    FinWait1,
    /// Our FIN is acknowledged; sandbox data still flows.
    FinWait2,
    /// Both sides sent FIN; ours is not yet acknowledged.
    LastAck,
    /// Both FINs exchanged and ours acknowledged: the flow is to be removed.
    Closed,
}

impl State {
    /// RFC 9293's synchronized states: the handshake is done.
    pub(super) fn synchronized(self) -> bool {
        !matches!(self, State::Connecting | State::SynRcvd | State::SynSent)
    }

    /// The sandbox sent its FIN: nothing more comes from it on this flow.
    pub(super) fn sandbox_fin(self) -> bool {
        matches!(self, State::CloseWait | State::LastAck | State::Closed)
    }

    /// Host data may be sent to the sandbox (our FIN is not out).
    pub(super) fn sends_data(self) -> bool {
        matches!(self, State::Established | State::CloseWait)
    }

    /// Our FIN is in flight: sequence number `snd_nxt - 1`.
    pub(super) fn fin_in_flight(self) -> bool {
        matches!(self, State::FinWait1 | State::LastAck)
    }

    /// The state after our FIN went out.
    pub(super) fn after_our_fin(self) -> State {
        match self {
            State::Established => State::FinWait1,
            State::CloseWait => State::LastAck,
            other => other,
        }
    }

    /// The state after the sandbox acknowledged our FIN.
    pub(super) fn after_fin_acked(self) -> State {
        match self {
            State::FinWait1 => State::FinWait2,
            State::LastAck => State::Closed,
            other => other,
        }
    }

    /// The state after the sandbox's FIN was passed on to the host.
    pub(super) fn after_sandbox_fin(self) -> State {
        match self {
            State::Established => State::CloseWait,
            State::FinWait1 => State::LastAck,
            State::FinWait2 => State::Closed,
            other => other,
        }
    }

    /// The state after a go-back-N rewind unsent our FIN (if it was in flight).
    pub(super) fn after_rewind(self) -> State {
        match self {
            State::FinWait1 => State::Established,
            State::LastAck => State::CloseWait,
            other => other,
        }
    }
}
