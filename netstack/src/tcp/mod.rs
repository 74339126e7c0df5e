//! TCP translation between the sandbox (segments on the tap) and a host socket, pasta-style:
//! no TCP stack of our own and no stream buffer in our process.
//!
//! # Theory of operation
//! A flow links one sandbox connection to one host `TcpStream`. We keep only sequence
//! bookkeeping: the kernel's socket buffers hold every byte in flight.
//! - Open: the sandbox's SYN starts a non-blocking host connect. Only when it succeeds do we
//!   answer SYN-ACK; a refused or failed connect answers RST, so the sandbox sees ECONNREFUSED.
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
//!   our FIN after the data. RST either way resets the other side (SO_LINGER 0 on the host).
//!   The flow ends once both FINs are acknowledged, on any RST, or after the idle timeout.
//!
//! Limits: no SACK, no timestamps, no urgent data (none are offered in our SYN-ACK). Window
//! scale 7 on our side when the sandbox offers scaling. RTO 200 ms doubling to 8 s; 12
//! unanswered retransmissions reset the flow.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::egress::Egress;
use crate::wire::emit::TcpHeader;
use crate::wire::{TcpFlags, TcpSegment};

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
    /// The sandbox side (source of its SYN).
    pub sandbox: SocketAddr,
    /// The address the sandbox connected to (e.g. 10.0.2.2:8000).
    pub remote: SocketAddr,
}

/// One translated TCP connection.
#[derive(Debug)]
pub struct TcpFlow {
    ep: Endpoints,
    /// Host connect still in progress.
    connecting: bool,
    /// The sandbox acknowledged our SYN-ACK.
    established: bool,
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
    /// Sandbox sent FIN (and we passed it on as shutdown).
    fin_received: bool,
    /// Our FIN is in flight at sequence `snd_nxt - 1`.
    fin_sent: bool,
    /// The sandbox acknowledged our FIN.
    fin_acked: bool,
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
}

impl TcpFlow {
    /// Starts a flow for the sandbox's SYN `syn`; the caller has started the host connect.
    pub fn new(ep: Endpoints, syn: &TcpSegment<'_>, mtu: usize, iss: u32, now: Instant) -> Self {
        let ip_tcp_headers = if ep.remote.is_ipv4() { 40 } else { 60 };
        let link_mss = mtu.saturating_sub(ip_tcp_headers).max(DEFAULT_MSS);
        let their_mss = syn.mss.map_or(DEFAULT_MSS, usize::from).max(64);
        let (snd_scale, rcv_scale) = match syn.window_scale {
            Some(s) => (s.min(MAX_WINDOW_SCALE), OUR_WINDOW_SCALE),
            None => (0, 0),
        };
        TcpFlow {
            ep,
            connecting: true,
            established: false,
            irs: syn.seq,
            rcv_nxt: syn.seq.wrapping_add(1),
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_wnd: usize::from(syn.window),
            snd_scale,
            rcv_scale,
            mss: their_mss.min(link_mss),
            host_readable: false,
            host_writable: true,
            host_hup: false,
            ack_at: None,
            fin_received: false,
            fin_sent: false,
            fin_acked: false,
            dupacks: 0,
            rto: RTO_MIN,
            retries: 0,
            rtx_at: None,
            last_active: now,
            ack_pending: false,
            dup_ack_now: false,
            ack_urgent: false,
            last_window: 0,
            wnd_at: None,
            wnd_backoff: WINDOW_RECHECK_MIN,
        }
    }

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

    /// The sandbox's segment size on this link.
    fn seg_mss(&self, eg: &Egress) -> usize {
        self.mss.min(eg.link_mss(self.ep.remote))
    }

    fn header(&self, seq: u32, flags: TcpFlags, window: u16) -> TcpHeader {
        TcpHeader {
            src_port: self.ep.remote.port(),
            dst_port: self.ep.sandbox.port(),
            seq,
            ack: self.rcv_nxt,
            flags,
            window,
            syn_options: None,
        }
    }

    fn our_window<H: HostSocket>(&mut self, host: &mut H) -> u16 {
        let space = if self.fin_received {
            0
        } else {
            host.send_space()
        };
        let field = (space >> self.rcv_scale).min(usize::from(u16::MAX)) as u16;
        self.last_window = usize::from(field) << self.rcv_scale;
        field
    }

    /// Arms or clears the small-window recheck after we advertised `last_window`.
    fn watch_window(&mut self, now: Instant) {
        if self.last_window < SMALL_WINDOW && !self.fin_received && self.established {
            if self.wnd_at.is_none() {
                self.wnd_at = Some(now + self.wnd_backoff);
            }
        } else {
            self.wnd_at = None;
            self.wnd_backoff = WINDOW_RECHECK_MIN;
        }
    }

    /// The small-window recheck fired: send a window update if the host socket drained.
    fn recheck_window<H: HostSocket>(&mut self, host: &mut H, eg: &mut Egress, now: Instant) {
        self.wnd_at = None;
        let before = self.last_window;
        let space = host.send_space();
        if space >= before.saturating_mul(2).max(SMALL_WINDOW / 4) {
            self.wnd_backoff = WINDOW_RECHECK_MIN;
            self.ack_pending = true;
            self.flush_ack(host, eg, now);
        } else {
            self.wnd_backoff = (self.wnd_backoff * 2).min(WINDOW_RECHECK_MAX);
            self.wnd_at = Some(now + self.wnd_backoff);
        }
    }

    /// The host connect finished: answer the sandbox with SYN-ACK, or RST on failure.
    pub fn on_connected<H: HostSocket>(
        &mut self,
        result: io::Result<()>,
        host: &mut H,
        eg: &mut Egress,
        now: Instant,
    ) -> Verdict {
        self.last_active = now;
        if let Err(error) = result {
            tracing::debug!(sandbox = %self.ep.sandbox, remote = %self.ep.remote, %error, "host connect failed");
            self.send_rst(eg);
            return Verdict::Close;
        }
        self.connecting = false;
        self.host_writable = true;
        self.send_syn_ack(host, eg);
        self.arm_rtx(now);
        Verdict::Keep
    }

    fn send_syn_ack<H: HostSocket>(&mut self, host: &mut H, eg: &mut Egress) {
        let mut hdr = self.header(
            self.iss,
            TcpFlags {
                syn: true,
                ack: true,
                ..TcpFlags::default()
            },
            0,
        );
        // The window of a SYN-ACK is never scaled (RFC 7323 2.2).
        hdr.window = host.send_space().min(usize::from(u16::MAX)) as u16;
        let our_mss = eg
            .max_tcp_payload(self.ep.remote)
            .min(usize::from(u16::MAX)) as u16;
        let scale = (self.rcv_scale > 0).then_some(self.rcv_scale);
        hdr.syn_options = Some((our_mss, scale));
        let _ = eg.tcp(self.ep.remote, self.ep.sandbox, &hdr, 0, 0, |_| Ok(0));
        self.snd_nxt = self.iss.wrapping_add(1);
    }

    /// Sends RST|ACK for the sandbox's connection (connect refused, or any abort).
    pub fn send_rst(&self, eg: &mut Egress) {
        let seq = if self.established { self.snd_nxt } else { 0 };
        let hdr = self.header(
            seq,
            TcpFlags {
                rst: true,
                ack: true,
                ..TcpFlags::default()
            },
            0,
        );
        let _ = eg.tcp(self.ep.remote, self.ep.sandbox, &hdr, 0, 0, |_| Ok(0));
    }

    /// End of a batch: sends the owed ACK now, or delays it by `ACK_DELAY` when it only
    /// acknowledges short in-order data that a reply may soon carry.
    pub fn end_batch<H: HostSocket>(&mut self, host: &mut H, eg: &mut Egress, now: Instant) {
        if !self.ack_pending {
            return;
        }
        if std::mem::take(&mut self.ack_urgent) {
            self.flush_ack(host, eg, now);
        } else if self.ack_at.is_none() {
            self.ack_at = Some(now + ACK_DELAY);
        }
    }

    /// Sends the owed ACK now, with our current window.
    pub fn flush_ack<H: HostSocket>(&mut self, host: &mut H, eg: &mut Egress, now: Instant) {
        if !self.ack_pending {
            return;
        }
        self.ack_pending = false;
        self.ack_at = None;
        let window = self.our_window(host);
        let hdr = self.header(
            self.snd_nxt,
            TcpFlags {
                ack: true,
                ..TcpFlags::default()
            },
            window,
        );
        let _ = eg.tcp(self.ep.remote, self.ep.sandbox, &hdr, 0, 0, |_| Ok(0));
        self.watch_window(now);
    }

    /// Handles one segment from the sandbox.
    pub fn on_segment<H: HostSocket>(
        &mut self,
        seg: &TcpSegment<'_>,
        host: &mut H,
        eg: &mut Egress,
        now: Instant,
    ) -> Verdict {
        self.last_active = now;
        if seg.flags.rst {
            host.abort();
            return Verdict::Close;
        }
        if seg.flags.syn {
            return self.on_syn_again(seg, host, eg);
        }
        if !seg.flags.ack || self.connecting {
            return Verdict::Keep;
        }
        if !self.established {
            if seg.ack != self.iss.wrapping_add(1) {
                return Verdict::Keep;
            }
            self.established = true;
            self.snd_una = seg.ack;
            self.rtx_at = None;
            self.rto = RTO_MIN;
            self.retries = 0;
        }
        let progress = self.on_ack(seg, host, now);
        if let Err(error) = progress {
            tracing::debug!(sandbox = %self.ep.sandbox, %error, "host socket failed");
            return self.reset(host, eg);
        }
        if let Err(error) = self.on_data(seg, host) {
            tracing::debug!(sandbox = %self.ep.sandbox, %error, "host send failed");
            return self.reset(host, eg);
        }
        if std::mem::take(&mut self.dup_ack_now) {
            self.flush_ack(host, eg, now);
        }
        if self.fin_received && self.fin_acked {
            self.flush_ack(host, eg, now);
            return Verdict::Close;
        }
        self.push(host, eg, now)
    }

    fn on_syn_again<H: HostSocket>(
        &mut self,
        seg: &TcpSegment<'_>,
        host: &mut H,
        eg: &mut Egress,
    ) -> Verdict {
        if seg.seq != self.irs {
            // A new connection on a reused port while we still hold the old one.
            host.abort();
            self.send_rst(eg);
            return Verdict::Close;
        }
        if !self.connecting && !self.established {
            self.send_syn_ack(host, eg);
        }
        Verdict::Keep
    }

    /// Processes the acknowledgement and window of a segment.
    fn on_ack<H: HostSocket>(
        &mut self,
        seg: &TcpSegment<'_>,
        host: &mut H,
        now: Instant,
    ) -> io::Result<()> {
        let in_flight = self.snd_nxt.wrapping_sub(self.snd_una) as usize;
        let acked = seg.ack.wrapping_sub(self.snd_una) as usize;
        let old_wnd = self.snd_wnd;
        self.snd_wnd = usize::from(seg.window) << self.snd_scale;
        if acked > in_flight {
            // Acknowledges data we never sent: ignore (RFC 9293 3.10.7.4).
            return Ok(());
        }
        if acked == 0 {
            let duplicate = in_flight > 0
                && seg.payload.is_empty()
                && !seg.flags.fin
                && self.snd_wnd == old_wnd;
            if duplicate {
                self.dupacks = self.dupacks.saturating_add(1);
                if self.dupacks == DUPACK_THRESHOLD {
                    self.rewind();
                }
            }
            return Ok(());
        }
        let fin_covered = self.fin_sent && acked == in_flight;
        let data = acked - usize::from(fin_covered);
        if data > 0 {
            host.discard(data)?;
        }
        if fin_covered {
            self.fin_acked = true;
        }
        self.snd_una = seg.ack;
        self.dupacks = 0;
        self.retries = 0;
        self.rto = RTO_MIN;
        self.rtx_at = (self.snd_una != self.snd_nxt).then(|| now + self.rto);
        Ok(())
    }

    /// Passes in-order payload (and a FIN) on to the host socket.
    fn on_data<H: HostSocket>(&mut self, seg: &TcpSegment<'_>, host: &mut H) -> io::Result<()> {
        let len = seg.payload.len();
        if len == 0 && !seg.flags.fin {
            return Ok(());
        }
        self.ack_pending = true;
        let ahead = seg.seq.wrapping_sub(self.rcv_nxt) as i32;
        if ahead > 0 {
            // Out of order: drop it, and answer every such segment with its own duplicate
            // ACK (not one per batch), so the sandbox reaches its fast-retransmit threshold.
            self.dup_ack_now = true;
            return Ok(());
        }
        if self.fin_received {
            return Ok(());
        }
        let skip = (-ahead) as usize;
        let Some(fresh) = seg.payload.get(skip..) else {
            return Ok(()); // entirely old data
        };
        let mut sent = 0;
        while sent < fresh.len() {
            match host.send(&fresh[sent..]) {
                Ok(0) => break,
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.rcv_nxt = self.rcv_nxt.wrapping_add(sent as u32);
        if sent < fresh.len() {
            self.host_writable = false;
            self.ack_urgent = true;
            return Ok(());
        }
        // A full-sized segment is bulk: ACK it this batch. A short one is likely a request
        // whose answer can carry the ACK (delayed ACK, RFC 9293 3.8.6.3).
        if fresh.len() >= self.mss || seg.flags.fin {
            self.ack_urgent = true;
        }
        if seg.flags.fin {
            host.shutdown_write()?;
            self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
            self.fin_received = true;
        }
        Ok(())
    }

    /// Sends host data (and our FIN after EOF) within the sandbox's window.
    fn push<H: HostSocket>(&mut self, host: &mut H, eg: &mut Egress, now: Instant) -> Verdict {
        if self.connecting || !self.established || !self.host_readable || self.fin_sent {
            return Verdict::Keep;
        }
        let mss = self.seg_mss(eg);
        // With GSO one frame carries up to 64 KiB, cut into `mss` segments by the kernel.
        let per_frame = eg.max_tcp_payload(self.ep.remote).max(mss);
        // One window per push: it only changes as the host drains, which a later ACK tells.
        let window = self.our_window(host);
        loop {
            let in_flight = self.snd_nxt.wrapping_sub(self.snd_una) as usize;
            let room = self.snd_wnd.saturating_sub(in_flight);
            if room == 0 {
                if in_flight == 0 && self.rtx_at.is_none() {
                    self.rtx_at = Some(now + self.rto); // zero-window probe timer
                }
                return Verdict::Keep;
            }
            let hdr = self.header(
                self.snd_nxt,
                TcpFlags {
                    ack: true,
                    ..TcpFlags::default()
                },
                window,
            );
            let max = per_frame.min(room);
            let peeked = eg.tcp(
                self.ep.remote,
                self.ep.sandbox,
                &hdr,
                max,
                mss,
                |buf| match host.peek_at(in_flight, buf) {
                    Ok(0) => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                    other => other,
                },
            );
            match peeked {
                Ok(0) => return Verdict::Keep, // no link yet, or no room in the frame
                Ok(n) => {
                    self.snd_nxt = self.snd_nxt.wrapping_add(n as u32);
                    self.ack_pending = false;
                    self.ack_at = None;
                    if self.rtx_at.is_none() {
                        self.rtx_at = Some(now + self.rto);
                    }
                    if n < max && !self.host_hup {
                        // A short peek emptied the receive queue (tcp_recvmsg walks it all);
                        // new data raises a fresh edge, so skip the EAGAIN round trip. After a
                        // hang-up no edge will come, so then we peek on until EOF.
                        self.host_readable = false;
                        return Verdict::Keep;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.send_fin(host, eg, now);
                    return Verdict::Keep;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.host_readable = false;
                    return Verdict::Keep;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    tracing::debug!(sandbox = %self.ep.sandbox, %error, "host receive failed");
                    return self.reset(host, eg);
                }
            }
        }
    }

    fn send_fin<H: HostSocket>(&mut self, host: &mut H, eg: &mut Egress, now: Instant) {
        let window = self.our_window(host);
        let hdr = self.header(
            self.snd_nxt,
            TcpFlags {
                ack: true,
                fin: true,
                ..TcpFlags::default()
            },
            window,
        );
        let _ = eg.tcp(self.ep.remote, self.ep.sandbox, &hdr, 0, 0, |_| Ok(0));
        self.fin_sent = true;
        self.ack_pending = false;
        self.snd_nxt = self.snd_nxt.wrapping_add(1);
        if self.rtx_at.is_none() {
            self.rtx_at = Some(now + self.rto);
        }
    }

    /// Rewinds to the last acknowledged byte so the next push resends from there.
    fn rewind(&mut self) {
        if self.established {
            self.snd_nxt = self.snd_una;
            self.fin_sent = false;
            self.host_readable = true;
        }
    }

    fn arm_rtx(&mut self, now: Instant) {
        self.rtx_at = Some(now + self.rto);
    }

    /// The host socket became readable (or hung up).
    pub fn on_host_readable<H: HostSocket>(
        &mut self,
        host: &mut H,
        eg: &mut Egress,
        now: Instant,
        hup: bool,
    ) -> Verdict {
        self.host_readable = true;
        self.host_hup |= hup;
        self.last_active = now;
        self.push(host, eg, now)
    }

    /// The host socket has send space again: tell the sandbox the window opened.
    pub fn on_host_writable<H: HostSocket>(&mut self, host: &mut H, eg: &mut Egress, now: Instant) {
        if !self.host_writable && !self.connecting {
            self.host_writable = true;
            self.ack_pending = true;
            self.flush_ack(host, eg, now);
        }
    }

    /// The host socket reported an error or reset: reset the sandbox side.
    pub fn reset<H: HostSocket>(&mut self, host: &mut H, eg: &mut Egress) -> Verdict {
        host.abort();
        self.send_rst(eg);
        Verdict::Close
    }

    /// Retransmission / probe timer.
    pub fn on_timer<H: HostSocket>(
        &mut self,
        host: &mut H,
        eg: &mut Egress,
        now: Instant,
    ) -> Verdict {
        if self.wnd_at.is_some_and(|at| at <= now) {
            self.recheck_window(host, eg, now);
        }
        if self.ack_at.is_some_and(|at| at <= now) {
            self.flush_ack(host, eg, now);
        }
        match self.rtx_at {
            Some(at) if at <= now => {}
            _ => return Verdict::Keep,
        }
        self.rtx_at = None;
        self.retries += 1;
        if self.retries > MAX_RETRIES {
            tracing::debug!(sandbox = %self.ep.sandbox, "retransmissions exhausted");
            return self.reset(host, eg);
        }
        self.rto = (self.rto * 2).min(RTO_MAX);
        if !self.established {
            self.send_syn_ack(host, eg);
            self.arm_rtx(now);
            return Verdict::Keep;
        }
        let in_flight = self.snd_nxt.wrapping_sub(self.snd_una) as usize;
        if in_flight == 0 && self.snd_wnd == 0 {
            // Zero-window probe: a pure ACK one below snd_una makes the sandbox answer
            // with its current window.
            let window = self.our_window(host);
            let hdr = self.header(
                self.snd_una.wrapping_sub(1),
                TcpFlags {
                    ack: true,
                    ..TcpFlags::default()
                },
                window,
            );
            let _ = eg.tcp(self.ep.remote, self.ep.sandbox, &hdr, 0, 0, |_| Ok(0));
            self.arm_rtx(now);
            return Verdict::Keep;
        }
        self.rewind();
        self.push(host, eg, now)
    }
}

impl TcpFlow {
    /// Host connect still in progress.
    pub fn is_connecting(&self) -> bool {
        self.connecting
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
            rst: true,
            ack: with_ack,
            ..TcpFlags::default()
        },
        window: 0,
        syn_options: None,
    };
    let _ = eg.tcp(ep.remote, ep.sandbox, &hdr, 0, 0, |_| Ok(0));
}

#[cfg(test)]
mod tests;
