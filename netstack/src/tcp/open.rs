//! Opening a flow, both ways: the sandbox's SYN, the host connect and our SYN-ACK; or, for a
//! host client accepted on a forwarded port, our SYN to the sandbox and its SYN-ACK. Also
//! the repeated SYNs of either handshake. Part of `tcp`; see its theory of operation and the
//! table in `state`. Holds only the handshake; the data path is in `receive` and `transmit`.

use std::io;
use std::time::Instant;

use super::*;

impl TcpFlow {
    /// Starts a flow for the sandbox's SYN `syn`; the caller has started the host connect.
    pub fn new(
        ep: Endpoints,
        syn: &TcpSegment<'_>,
        mtu: usize,
        origin: Origin,
        now: Instant,
    ) -> Self {
        let their_mss = syn.mss.map_or(DEFAULT_MSS, usize::from).max(64);
        let (snd_scale, rcv_scale) = match syn.window_scale {
            Some(s) => (s.min(MAX_WINDOW_SCALE), OUR_WINDOW_SCALE),
            None => (0, 0),
        };
        let blank = TcpFlow::blank(ep, mtu, origin.iss, now);
        TcpFlow {
            state: State::Connecting,
            irs: syn.seq,
            rcv_nxt: syn.seq.wrapping_add(1),
            snd_wnd: usize::from(syn.window),
            snd_scale,
            rcv_scale,
            mss: their_mss.min(blank.mss),
            ts: syn.timestamp.map(|(tsval, _)| Timestamps {
                base: origin.ts_epoch,
                recent: tsval,
                last_ack_sent: syn.seq.wrapping_add(1),
            }),
            ..blank
        }
    }

    /// Starts a flow toward the sandbox for a host client the event loop accepted (a port
    /// forward): `ep.sandbox` is the sandbox's service, `ep.remote` the client as the sandbox
    /// will see it. Call `send_syn` next, then arm `next_timer`; from there on the flow takes
    /// the same calls as one the sandbox opened (`is_connecting` is false, so host readiness
    /// goes to `on_host_readable` and `on_host_writable`). Until the sandbox's SYN-ACK
    /// arrives the flow sends no data: host readiness is only recorded, and the first push
    /// after the handshake peeks whatever the client sent meanwhile.
    pub fn new_inbound(ep: Endpoints, mtu: usize, origin: Origin, now: Instant) -> TcpFlow {
        TcpFlow {
            state: State::SynSent,
            // Offered in our SYN; kept only if the SYN-ACK carries them too.
            rcv_scale: OUR_WINDOW_SCALE,
            ts: Some(Timestamps {
                base: origin.ts_epoch,
                recent: 0,
                last_ack_sent: 0,
            }),
            // The accepted socket may hold data already, with its edge reported before the
            // flow existed: peek once after the handshake whatever epoll says.
            host_readable: true,
            ..TcpFlow::blank(ep, mtu, origin.iss, now)
        }
    }

    /// A flow in `Connecting` that knows nothing of the sandbox yet; the constructors above
    /// fill in what the first segment tells.
    fn blank(ep: Endpoints, mtu: usize, iss: u32, now: Instant) -> TcpFlow {
        let ip_tcp_headers = if ep.remote.is_ipv4() { 40 } else { 60 };
        TcpFlow {
            ep,
            state: State::Connecting,
            irs: 0,
            rcv_nxt: 0,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_wnd: 0,
            snd_scale: 0,
            rcv_scale: 0,
            mss: mtu.saturating_sub(ip_tcp_headers).max(DEFAULT_MSS),
            host_readable: false,
            host_writable: true,
            host_hup: false,
            ack_at: None,
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
            challenged_at: None,
            ts: None,
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
        self.state = State::SynRcvd;
        self.host_writable = true;
        self.send_syn_ack(host, eg);
        self.arm_rtx(now);
        Verdict::Keep
    }

    pub(super) fn send_syn_ack<H: HostSocket>(&mut self, host: &mut H, eg: &mut Egress) {
        self.send_syn_segment(host, eg, SYN_ACK);
    }

    /// Sends our SYN to the sandbox for a host-initiated flow (see `new_inbound`), offering
    /// MSS, window scale and timestamps, and arms its retransmission. Does nothing once the
    /// sandbox answered.
    pub fn send_syn<H: HostSocket>(&mut self, host: &mut H, eg: &mut Egress, now: Instant) {
        if self.state != State::SynSent {
            return;
        }
        self.send_syn_segment(host, eg, SYN);
        self.arm_rtx(now);
    }

    /// Emits our SYN or SYN-ACK at `iss` with the handshake options.
    fn send_syn_segment<H: HostSocket>(&mut self, host: &mut H, eg: &mut Egress, flags: TcpFlags) {
        let mut hdr = self.header(self.iss, flags, 0);
        // The window of a SYN or SYN-ACK is never scaled (RFC 7323 2.2).
        hdr.window = host.send_space().min(usize::from(u16::MAX)) as u16;
        self.last_window = usize::from(hdr.window);
        // Our MSS is the link's, even with GSO: the sandbox sizes its segments by it.
        let our_mss = eg.link_mss(self.ep.remote).min(usize::from(u16::MAX)) as u16;
        let scale = (self.rcv_scale > 0).then_some(self.rcv_scale);
        hdr.syn_options = Some((our_mss, scale));
        eg.tcp_control(self.ep.remote, self.ep.sandbox, &hdr);
        self.snd_nxt = self.iss.wrapping_add(1);
    }

    /// A segment while our SYN waits for the sandbox's SYN-ACK (RFC 9293 3.10.7.3).
    pub(super) fn on_syn_sent<H: HostSocket>(
        &mut self,
        seg: &TcpSegment<'_>,
        host: &mut H,
        eg: &mut Egress,
        now: Instant,
    ) -> Verdict {
        let acks_syn = seg.flags.ack && seg.ack == self.iss.wrapping_add(1);
        if seg.flags.rst {
            if !acks_syn {
                return Verdict::Keep; // not an answer to our SYN
            }
            // The service refused: the host client sees a reset, as from a closed port.
            tracing::debug!(sandbox = %self.ep.sandbox, remote = %self.ep.remote, "sandbox refused the connection");
            host.abort();
            return Verdict::Close;
        }
        if seg.flags.ack && !acks_syn {
            // An unacceptable ACK (RFC 9293 3.10.7.3), typically the sandbox's TIME_WAIT of
            // an earlier connection on this 4-tuple answering our SYN with its old ACK:
            // <SEQ=SEG.ACK><CTL=RST> ends that connection, so our SYN goes again at once
            // instead of after an RTO.
            reset_stray(self.ep, seg, eg);
            self.send_syn_segment(host, eg, SYN);
            return Verdict::Keep;
        }
        if !(seg.flags.syn && seg.flags.ack) {
            return Verdict::Keep;
        }
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq.wrapping_add(1);
        self.snd_una = seg.ack;
        self.snd_wnd = usize::from(seg.window); // unscaled in a SYN-ACK
        match seg.window_scale {
            Some(s) => self.snd_scale = s.min(MAX_WINDOW_SCALE),
            // Scaling needs both sides' offer (RFC 7323 2.2): none either way.
            None => (self.snd_scale, self.rcv_scale) = (0, 0),
        }
        let their_mss = seg.mss.map_or(DEFAULT_MSS, usize::from).max(64);
        self.mss = self.mss.min(their_mss);
        self.ts = match (self.ts, seg.timestamp) {
            (Some(ts), Some((tsval, _))) => Some(Timestamps {
                recent: tsval,
                last_ack_sent: self.rcv_nxt,
                ..ts
            }),
            _ => None,
        };
        self.state = State::Established;
        self.rtx_at = None;
        self.rto = RTO_MIN;
        self.retries = 0;
        self.ack_pending = true;
        self.flush_ack(host, eg, now);
        // Data the host client sent before the handshake finished goes out now.
        self.push(host, eg, now)
    }

    /// A SYN on a flow that already has one: a retransmission, a new connection, or forged.
    pub(super) fn on_syn_again<H: HostSocket, L: ChallengeLimit>(
        &mut self,
        seg: &TcpSegment<'_>,
        host: &mut H,
        eg: &mut Egress,
        limit: &mut L,
        now: Instant,
    ) -> Verdict {
        if self.state.synchronized() {
            // RFC 5961 4.2: whatever its sequence number, a challenge ACK and nothing else. A
            // repeated SYN-ACK (our ACK of it was lost) is answered by it too; a sandbox that
            // really opens a new connection on the port answers it with a RST at RCV.NXT,
            // which ends this flow, and its next SYN opens the new one.
            self.challenge_ack(host, eg, limit, now);
            return Verdict::Keep;
        }
        if seg.seq != self.irs {
            // Half-open: a new connection on a reused port replaces the one not yet made.
            host.abort();
            self.send_rst(eg);
            return Verdict::Close;
        }
        if self.state == State::SynRcvd {
            self.send_syn_ack(host, eg);
        }
        Verdict::Keep
    }
}
