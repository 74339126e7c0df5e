//! TCP translation between the sandbox (segments on the tap) and a host socket, pasta-style:
//! no TCP stack of our own and no stream buffer in our process.
//!
//! # Theory of operation
//! A flow links one sandbox connection to one host `TcpStream`. We keep only sequence
//! bookkeeping: the kernel's socket buffers hold every byte in flight.
//! - Open: the sandbox's SYN starts a non-blocking host connect. Only when it succeeds do we
//!   answer SYN-ACK; a refused or failed connect answers RST, so the sandbox sees ECONNREFUSED.
//! - Host-initiated open (port forwards): the event loop accepts a host client, then calls
//!   `new_inbound` and `send_syn`, and we send the sandbox's service a SYN on the client's
//!   behalf, offering MSS, window scale and timestamps. Its SYN-ACK is ACKed and the flow is
//!   established; window scale and timestamps are used only if it returned them. A RST (the
//!   service is not listening) aborts the host client, which sees a reset. Data the client
//!   sends before the handshake waits in its socket and goes out right after it.
//! - Sandbox -> host: in-order payload is `send`'d straight from the tap frame. What the host
//!   socket accepts is ACKed (one ACK per flow per batch); what it refuses is not ACKed and the
//!   sandbox retransmits it. The window we advertise is the host socket's free send space, so
//!   the sandbox rarely overruns it. Out-of-order data is dropped and answered with a
//!   duplicate ACK; the sandbox's retransmission repairs the gap.
//! - Host -> sandbox: data stays in the host socket's receive queue. We `MSG_PEEK` it (from the
//!   SO_PEEK_OFF offset = bytes already sent) straight into the frame buffer, within the
//!   sandbox's advertised window, and discard it (MSG_TRUNC, no copy) only when the sandbox ACKs
//!   it. Retransmission is go-back-N: rewind to the last ACK and peek again, after an RTO or
//!   three duplicate ACKs. A zero window is probed on the RTO timer.
//! - Close: a FIN from the sandbox becomes `shutdown(SHUT_WR)`; EOF on the host socket becomes
//!   our FIN after the data, on the last data segment when the host peer's hang-up was seen
//!   before that data went out (`transmit::peek_segment`), else on a segment of its own. RST either way resets the other side (SO_LINGER 0 on the host,
//!   set from the start so that the helper's death resets too: `host`). A RST from the
//!   sandbox counts only at exactly the sequence number we expect, and a SYN on an
//!   established flow only earns a challenge ACK (RFC 5961; `state` r1, s3), so a forged RST
//!   or SYN cannot end a flow without its exact sequence number. Challenge ACKs are limited
//!   per flow (`CHALLENGE_INTERVAL`) and for the whole stack (`ChallengeLimit`).
//!   The flow ends once both FINs are acknowledged, on an accepted RST, or after the idle
//!   timeout.
//! - State: each flow is in one `state::State` (Connecting, SynRcvd or SynSent, Established,
//!   CloseWait, FinWait1, FinWait2, LastAck); `state.rs` has the table of what each event does
//!   in each. Host readiness hints and ACK scheduling are separate fields, not protocol state.
//!
//! Limits: no SACK and no urgent data (neither is offered). Timestamps only when both SYNs
//! carry them; window scale 7 on our side only when both offer scaling. RTO 200 ms doubling
//! to 8 s; 12 unanswered retransmissions (of data, FIN, SYN-ACK or SYN) reset the flow. Data
//! or FIN on the sandbox's SYN-ACK is not taken (its retransmission is). No simultaneous
//! open: a SYN without ACK while our SYN is out is ignored.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::egress::Egress;
use crate::wire::emit::{self, TcpHeader};
use crate::wire::{TcpFlags, TcpSegment};

use state::State;

/// The host side of a flow. Implemented by `host::HostTcp` over a real socket and by a
/// scripted fake in tests.
pub trait HostSocket {
    /// Non-blocking send; `Ok(0)` or `WouldBlock` when the send buffer is full.
    fn send(&mut self, data: &[u8]) -> io::Result<usize>;
    /// Peeks bytes starting `offset` bytes into the receive queue. `Ok(0)`: EOF reached.
    fn peek_at(&mut self, offset: usize, buf: &mut [u8]) -> io::Result<usize>;
    /// Drops `len` bytes from the head of the receive queue.
    fn discard(&mut self, len: usize) -> io::Result<()>;
    /// Half-closes the sending direction (our FIN toward the host peer).
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// Free space in the send buffer, in bytes.
    fn send_space(&mut self) -> usize;
    /// Makes the eventual close send RST instead of FIN.
    fn abort(&mut self);
}

/// The stack-wide limit on challenge ACKs (RFC 5961 7), on top of each flow's own
/// (`CHALLENGE_INTERVAL`): a flow asks it only when its own interval allows a challenge, and
/// sends none when it says no. Implemented by the event loop's token bucket
/// (`event_loop::bucket`, 1,000 a second: Linux's tcp_challenge_ack_limit) and by fakes in
/// tests; passed to `TcpFlow::on_segment`, the only way a challenge is drawn.
pub trait ChallengeLimit {
    /// Whether one more challenge ACK may go out at `now` (spending it if so).
    fn allow_challenge(&mut self, now: Instant) -> bool;
}

/// Window-scale shift we advertise when the sandbox offers scaling (RFC 7323): 64 KiB << 7
/// = 8 MiB, the largest socket buffer this kernel gives an unprivileged process.
pub const OUR_WINDOW_SCALE: u8 = 7;
/// Largest shift RFC 7323 allows.
const MAX_WINDOW_SCALE: u8 = 14;
/// MSS assumed when the sandbox's SYN carries none (RFC 9293 3.7.1).
const DEFAULT_MSS: usize = 536;
/// First retransmission timeout; the path is a local tap, so we start low.
const RTO_MIN: Duration = Duration::from_millis(200);
/// Retransmission timeout ceiling.
const RTO_MAX: Duration = Duration::from_secs(8);
/// Retransmissions without progress before the flow is reset.
const MAX_RETRIES: u32 = 12;
/// Duplicate ACKs that trigger a fast retransmit (RFC 5681).
const DUPACK_THRESHOLD: u8 = 3;
/// A window below this is "small": the host socket only reports writable again after a send
/// fails, which the sandbox (honouring our window) never causes, so we recheck on a timer.
const SMALL_WINDOW: usize = 256 << 10;
/// First and largest interval of that recheck.
const WINDOW_RECHECK_MIN: Duration = Duration::from_micros(500);
const WINDOW_RECHECK_MAX: Duration = Duration::from_millis(20);
/// How long an ACK of short data waits for a reply to carry it. Far below Linux's 40 ms
/// minimum, so a sandbox sender using Nagle loses little when no reply comes.
const ACK_DELAY: Duration = Duration::from_millis(1);

/// Least time between two challenge ACKs of one flow (RFC 5961 7 asks for a limit; this is
/// Linux's per-socket one, net.ipv4.tcp_invalid_ratelimit's default of 500 ms). All flows
/// together are bounded too, by the `ChallengeLimit` the event loop passes in.
const CHALLENGE_INTERVAL: Duration = Duration::from_millis(500);

/// Flags of a pure ACK.
const ACK: TcpFlags = TcpFlags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
};
/// Flags of our FIN.
const FIN_ACK: TcpFlags = TcpFlags { fin: true, ..ACK };
/// Flags of our RST (always with an ACK of what we took).
const RST_ACK: TcpFlags = TcpFlags { rst: true, ..ACK };
/// Flags of our SYN-ACK.
const SYN_ACK: TcpFlags = TcpFlags { syn: true, ..ACK };
/// Flags of our SYN (host-initiated flows).
const SYN: TcpFlags = TcpFlags {
    ack: false,
    ..SYN_ACK
};
/// Flags of a RST that acknowledges nothing (our SYN is unanswered).
const RST: TcpFlags = TcpFlags {
    ack: false,
    ..RST_ACK
};

/// What the event loop should do with the flow after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the flow.
    Keep,
    /// Remove the flow and close its socket.
    Close,
}

/// Endpoint addresses of a flow, as the sandbox sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    /// The sandbox's end: the source of its SYN, or for a host-initiated flow the service we
    /// connect to (e.g. 10.0.2.100:80).
    pub sandbox: SocketAddr,
    /// The other end: the address the sandbox connected to (e.g. 10.0.2.2:8000), or for a
    /// host-initiated flow the host client as the sandbox sees it (e.g. 192.0.2.7:40000).
    pub remote: SocketAddr,
}

/// One translated TCP connection.
#[derive(Debug)]
pub struct TcpFlow {
    ep: Endpoints,
    /// Protocol state; see `state` for what each event does in each.
    state: State,
    /// Sandbox's initial sequence number.
    irs: u32,
    /// Next sequence number expected from the sandbox.
    rcv_nxt: u32,
    /// Our initial sequence number.
    iss: u32,
    /// Oldest byte we sent that the sandbox has not acknowledged.
    snd_una: u32,
    /// Next sequence number we send.
    snd_nxt: u32,
    /// Sandbox's receive window in bytes (scaled).
    snd_wnd: usize,
    /// Shift applied to the sandbox's window field.
    snd_scale: u8,
    /// Shift applied to the window we advertise.
    rcv_scale: u8,
    /// Largest payload per segment toward the sandbox.
    mss: usize,
    /// Host socket may have unread data (edge-triggered readiness seen, no EAGAIN since).
    host_readable: bool,
    /// Host socket may accept data.
    host_writable: bool,
    /// The host peer closed its side (EPOLLRDHUP seen): its FIN is queued behind the data.
    host_hup: bool,
    /// A delayed ACK is due at this time unless data we send carries it first.
    ack_at: Option<Instant>,
    /// Consecutive duplicate ACKs.
    dupacks: u8,
    /// Current retransmission timeout.
    rto: Duration,
    /// Retransmissions since the last progress.
    retries: u32,
    /// When to retransmit (or probe a zero window).
    rtx_at: Option<Instant>,
    /// Last time anything happened on the flow.
    last_active: Instant,
    /// An ACK (or window update) is owed to the sandbox at the end of this batch.
    ack_pending: bool,
    /// A duplicate ACK must go out before the next segment is processed.
    dup_ack_now: bool,
    /// The owed ACK must not be delayed (bulk data, FIN, a refused send).
    ack_urgent: bool,
    /// Window (bytes) in our last segment to the sandbox.
    last_window: usize,
    /// When to look again at a window we advertised as small.
    wnd_at: Option<Instant>,
    /// Current interval of that recheck.
    wnd_backoff: Duration,
    /// When we last sent a challenge ACK (RFC 5961), for its rate limit.
    challenged_at: Option<Instant>,
    /// TCP timestamps (RFC 7323), when the sandbox's SYN offered them: every segment we send
    /// then echoes the sandbox's latest in-order TSval, which gives its kernel an RTT sample
    /// from every ACK, retransmissions included (without them Karn's rule keeps its RTO
    /// backed off after losses).
    ts: Option<Timestamps>,
}

/// Timestamp state of a flow.
#[derive(Debug, Clone, Copy)]
struct Timestamps {
    /// Origin of our TSval clock: the stack's start, shared by every flow (`TcpClock`).
    base: Instant,
    /// TS.Recent: the TSval to echo.
    recent: u32,
    /// Last.ACK.sent: the acknowledgement number of our latest segment. Only a segment that
    /// starts at or before it updates TS.Recent, so an ACK covering several segments echoes
    /// the oldest one's TSval and the sandbox's RTT sample includes the time it waited.
    last_ack_sent: u32,
}

impl TcpFlow {
    /// The flow's addresses.
    pub fn endpoints(&self) -> Endpoints {
        self.ep
    }

    /// Last time the flow saw traffic.
    pub fn last_active(&self) -> Instant {
        self.last_active
    }

    /// The earliest time `on_timer` needs to run, if any.
    pub fn next_timer(&self) -> Option<Instant> {
        [self.rtx_at, self.wnd_at, self.ack_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether an ACK is owed to the sandbox (flushed once per batch).
    pub fn ack_pending(&self) -> bool {
        self.ack_pending
    }

    /// Payload bytes of one segment to the sandbox on this link (its MSS less our options).
    fn seg_mss(&self, eg: &Egress) -> usize {
        let options = emit::options_len(false, self.ts.is_some());
        self.mss
            .min(eg.link_mss(self.ep.remote))
            .saturating_sub(options)
    }

    /// Largest payload of one frame to the sandbox: up to 64 KiB with GSO (the sandbox's
    /// kernel cuts it into `seg_mss` segments), else one segment.
    fn frame_payload(&self, eg: &Egress) -> usize {
        if !eg.gso() {
            return self.seg_mss(eg);
        }
        let options = emit::options_len(false, self.ts.is_some());
        eg.max_tcp_payload(self.ep.remote).saturating_sub(options)
    }

    /// The header of our next segment; notes its acknowledgement as Last.ACK.sent.
    fn header(&mut self, seq: u32, flags: TcpFlags, window: u16) -> TcpHeader {
        let rcv_nxt = self.rcv_nxt;
        if let Some(ts) = self.ts.as_mut() {
            ts.last_ack_sent = rcv_nxt;
        }
        TcpHeader {
            src_port: self.ep.remote.port(),
            dst_port: self.ep.sandbox.port(),
            seq,
            ack: self.rcv_nxt,
            flags,
            window,
            syn_options: None,
            timestamp: self.ts.map(|t| (ts_clock(t.base), t.recent)),
        }
    }

    /// Takes the sandbox's TSval as the one to echo when `seg` starts at or before our last
    /// acknowledgement (RFC 7323 4.3) and is not older than the one we hold.
    fn note_timestamp(&mut self, seg: &TcpSegment<'_>) {
        let (Some(ts), Some((tsval, _))) = (self.ts.as_mut(), seg.timestamp) else {
            return;
        };
        let at_or_before = seg.seq.wrapping_sub(ts.last_ack_sent) as i32 <= 0;
        let not_older = tsval.wrapping_sub(ts.recent) as i32 >= 0;
        if at_or_before && not_older {
            ts.recent = tsval;
        }
    }

    /// Emits a segment without payload at `seq` carrying our current window.
    fn send_control<H: HostSocket>(
        &mut self,
        host: &mut H,
        eg: &mut Egress,
        seq: u32,
        flags: TcpFlags,
    ) {
        let window = self.our_window(host);
        let hdr = self.header(seq, flags, window);
        eg.tcp_control(self.ep.remote, self.ep.sandbox, &hdr);
    }
}

impl TcpFlow {
    /// The sandbox closed its side (FIN received); a RST removes the flow instead. False
    /// while our SYN to the sandbox is unanswered (SynSent): the sandbox may still accept the
    /// connection and send on it, so the exit linger waits for its answer, and a flow still
    /// unanswered when the linger ends is aborted, which resets the host client rather than
    /// closing it cleanly on a stream that never carried anything.
    pub fn sandbox_closed(&self) -> bool {
        self.state.sandbox_fin()
    }

    /// Half-open: the sandbox's SYN arrived and the handshake is not done (host connect in
    /// flight, or our SYN-ACK unanswered). A flow a forward opens never is.
    pub fn is_half_open(&self) -> bool {
        matches!(self.state, State::Connecting | State::SynRcvd)
    }

    /// Host connect still in progress (the sandbox's SYN is not answered yet).
    pub fn is_connecting(&self) -> bool {
        self.state == State::Connecting
    }
}

/// Answers a segment that belongs to no flow with RST (RFC 9293 3.10.7.1), unless it is one.
pub fn reset_stray(ep: Endpoints, seg: &TcpSegment<'_>, eg: &mut Egress) {
    if seg.flags.rst {
        return;
    }
    let (seq, ack, with_ack) = if seg.flags.ack {
        (seg.ack, 0, false)
    } else {
        let len = seg.payload.len() as u32 + u32::from(seg.flags.syn) + u32::from(seg.flags.fin);
        (0, seg.seq.wrapping_add(len), true)
    };
    let hdr = TcpHeader {
        src_port: ep.remote.port(),
        dst_port: ep.sandbox.port(),
        seq,
        ack,
        flags: TcpFlags {
            ack: with_ack,
            ..RST_ACK
        },
        window: 0,
        syn_options: None,
        timestamp: None,
    };
    eg.tcp_control(ep.remote, ep.sandbox, &hdr);
}

pub use clock::{Origin, TcpClock};

/// Our TSval: milliseconds since `base` (the stack's start: `TcpClock`), wrapping (RFC 7323 5.4 allows 1 ms to 1 s ticks).
fn ts_clock(base: Instant) -> u32 {
    base.elapsed().as_millis() as u32
}

mod clock;
#[cfg(test)]
mod fake;
mod open;
mod receive;
mod state;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_inbound;
#[cfg(test)]
mod tests_rfc5961;
mod transmit;
