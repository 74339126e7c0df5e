//! Host -> sandbox half of the TCP translator: data peeked from the host socket within the
//! sandbox's window, our FIN, RST, retransmission and zero-window probes. Part of `tcp`; see
//! its theory of operation.

use std::io;
use std::time::Instant;

use super::*;

impl TcpFlow {
    /// Sends RST to the sandbox: RST|ACK for its connection (connect refused, or any abort),
    /// a bare RST while our SYN is unanswered.
    pub fn send_rst(&mut self, eg: &mut Egress) {
        let (seq, flags) = match self.state {
            // Nothing of the sandbox's to acknowledge; a sandbox in SYN-RECEIVED takes a RST
            // at its RCV.NXT, the end of our SYN (RFC 9293 3.10.7.4).
            State::SynSent => (self.snd_nxt, RST),
            s if s.synchronized() => (self.snd_nxt, RST_ACK),
            _ => (0, RST_ACK),
        };
        let hdr = self.header(seq, flags, 0);
        let _ = eg.tcp(self.ep.remote, self.ep.sandbox, &hdr, 0, 0, |_| Ok(0));
    }

    /// Sends host data (and our FIN after EOF) within the sandbox's window.
    pub(super) fn push<H: HostSocket>(
        &mut self,
        host: &mut H,
        eg: &mut Egress,
        now: Instant,
    ) -> Verdict {
        if !self.state.sends_data() || !self.host_readable {
            return Verdict::Keep;
        }
        let mss = self.seg_mss(eg);
        // With GSO one frame carries up to 64 KiB, cut into `mss` segments by the kernel.
        let per_frame = self.frame_payload(eg).max(mss);
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
            let hdr = self.header(self.snd_nxt, ACK, window);
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

    pub(super) fn send_fin<H: HostSocket>(&mut self, host: &mut H, eg: &mut Egress, now: Instant) {
        self.send_control(host, eg, self.snd_nxt, FIN_ACK);
        self.state = self.state.after_our_fin();
        self.ack_pending = false;
        self.snd_nxt = self.snd_nxt.wrapping_add(1);
        if self.rtx_at.is_none() {
            self.rtx_at = Some(now + self.rto);
        }
    }

    /// Rewinds to the last acknowledged byte so the next push resends from there.
    pub(super) fn rewind(&mut self) {
        if self.state.synchronized() {
            self.snd_nxt = self.snd_una;
            self.state = self.state.after_rewind();
            self.host_readable = true;
        }
    }

    pub(super) fn arm_rtx(&mut self, now: Instant) {
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
        match self.state {
            State::SynRcvd => {
                self.send_syn_ack(host, eg);
                self.arm_rtx(now);
                return Verdict::Keep;
            }
            State::SynSent => {
                self.send_syn(host, eg, now);
                return Verdict::Keep;
            }
            // Not armed before the host connect finishes.
            State::Connecting => return Verdict::Keep,
            _ => {}
        }
        let in_flight = self.snd_nxt.wrapping_sub(self.snd_una) as usize;
        if in_flight == 0 && self.snd_wnd == 0 {
            // Zero-window probe: a pure ACK one below snd_una makes the sandbox answer
            // with its current window.
            self.send_control(host, eg, self.snd_una.wrapping_sub(1), ACK);
            self.arm_rtx(now);
            return Verdict::Keep;
        }
        self.rewind();
        self.push(host, eg, now)
    }
}
