//! Host -> sandbox half of the TCP translator: data peeked from the host socket within the
//! sandbox's window, our FIN, RST, retransmission and zero-window probes. Part of `tcp`; see
//! its theory of operation.

use std::io;
use std::time::Instant;

use super::*;
use crate::egress::Payload;

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
        eg.tcp_control(self.ep.remote, self.ep.sandbox, &hdr);
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
            let hup = self.host_hup;
            let peeked = eg.tcp(self.ep.remote, self.ep.sandbox, &hdr, max, mss, |buf| {
                peek_segment(host, in_flight, buf, hup)
            });
            match peeked {
                Ok(p) if p.len == 0 => return Verdict::Keep, // no link yet, or no room
                Ok(p) => {
                    let n = p.len;
                    self.snd_nxt = self.snd_nxt.wrapping_add(n as u32);
                    self.ack_pending = false;
                    self.ack_at = None;
                    if self.rtx_at.is_none() {
                        self.rtx_at = Some(now + self.rto);
                    }
                    if p.fin {
                        self.fin_sent();
                        return Verdict::Keep;
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

    /// Our FIN on a segment of its own (EOF with no data before it in the window).
    pub(super) fn send_fin<H: HostSocket>(&mut self, host: &mut H, eg: &mut Egress, now: Instant) {
        self.send_control(host, eg, self.snd_nxt, FIN_ACK);
        if self.rtx_at.is_none() {
            self.rtx_at = Some(now + self.rto);
        }
        self.fin_sent();
    }

    /// Books our FIN, sent alone or on the last data segment: it takes one sequence number.
    fn fin_sent(&mut self) {
        self.state = self.state.after_our_fin();
        self.ack_pending = false;
        self.snd_nxt = self.snd_nxt.wrapping_add(1);
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

/// Peeks one segment's payload at `in_flight` bytes into the host socket's receive queue; EOF
/// there is `UnexpectedEof`. After the host peer's hang-up (`hup`), a peek that did not fill
/// `buf` has reached the end of the data, so one more byte is peeked: if that is EOF, our
/// FIN rides on this segment instead of a segment of its own (one frame less each way for
/// the server that answers and closes). The extra peek is the one the next turn of the push
/// loop would make anyway. Any other answer (data after all, an error) leaves the FIN to
/// the loop, which handles it as before.
fn peek_segment<H: HostSocket>(
    host: &mut H,
    in_flight: usize,
    buf: &mut [u8],
    hup: bool,
) -> io::Result<Payload> {
    let n = match host.peek_at(in_flight, buf)? {
        0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
        n => n,
    };
    let fin = hup && n < buf.len() && matches!(host.peek_at(in_flight + n, &mut [0u8; 1]), Ok(0));
    Ok(Payload { len: n, fin })
}
