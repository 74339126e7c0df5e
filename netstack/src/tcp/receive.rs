//! Sandbox -> host half of the TCP translator: segments from the sandbox (ACKs, data, FIN,
//! RST) and the ACKs and windows we owe it. Part of `tcp`; see its theory of operation.

use std::io;
use std::time::Instant;

use super::*;

impl TcpFlow {
    pub(super) fn our_window<H: HostSocket>(&mut self, host: &mut H) -> u16 {
        let space = if self.state.sandbox_fin() {
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
        if self.last_window < SMALL_WINDOW && self.state.synchronized() && !self.state.sandbox_fin()
        {
            if self.wnd_at.is_none() {
                self.wnd_at = Some(now + self.wnd_backoff);
            }
        } else {
            self.wnd_at = None;
            self.wnd_backoff = WINDOW_RECHECK_MIN;
        }
    }

    /// The small-window recheck fired: send a window update if the host socket drained.
    pub(super) fn recheck_window<H: HostSocket>(
        &mut self,
        host: &mut H,
        eg: &mut Egress,
        now: Instant,
    ) {
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
        self.send_control(host, eg, self.snd_nxt, ACK);
        self.watch_window(now);
    }

    /// Handles one segment from the sandbox; a challenge ACK it draws (RFC 5961) must also be
    /// allowed by `limit`, the stack-wide bound.
    pub fn on_segment<H: HostSocket, L: ChallengeLimit>(
        &mut self,
        seg: &TcpSegment<'_>,
        host: &mut H,
        eg: &mut Egress,
        limit: &mut L,
        now: Instant,
    ) -> Verdict {
        self.last_active = now;
        if self.state == State::SynSent {
            return self.on_syn_sent(seg, host, eg, now);
        }
        if seg.flags.rst {
            return self.on_rst(seg, host, eg, limit, now);
        }
        if seg.flags.syn {
            return self.on_syn_again(seg, host, eg, limit, now);
        }
        if !seg.flags.ack || self.state == State::Connecting {
            return Verdict::Keep;
        }
        self.note_timestamp(seg);
        if self.state == State::SynRcvd {
            if seg.ack != self.iss.wrapping_add(1) {
                return Verdict::Keep;
            }
            self.state = State::Established;
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
        if self.state == State::Closed {
            self.flush_ack(host, eg, now);
            return Verdict::Close;
        }
        self.push(host, eg, now)
    }

    /// A RST from the sandbox, checked as RFC 5961 3.2 says: only one at exactly RCV.NXT
    /// ends the flow; one elsewhere in the window we advertised gets a challenge ACK (which a
    /// sandbox that really lost the connection answers with a RST at RCV.NXT); any other is
    /// dropped. So a forged RST must guess the sequence number exactly, not just the 4-tuple.
    fn on_rst<H: HostSocket, L: ChallengeLimit>(
        &mut self,
        seg: &TcpSegment<'_>,
        host: &mut H,
        eg: &mut Egress,
        limit: &mut L,
        now: Instant,
    ) -> Verdict {
        if seg.seq == self.rcv_nxt {
            host.abort();
            return Verdict::Close;
        }
        let ahead = seg.seq.wrapping_sub(self.rcv_nxt) as usize;
        if ahead < self.last_window {
            self.challenge_ack(host, eg, limit, now);
        }
        Verdict::Keep
    }

    /// Sends a challenge ACK (RFC 5961 3.2, 4.2: SEQ = SND.NXT, ACK = RCV.NXT) unless one went
    /// out less than `CHALLENGE_INTERVAL` ago or the stack-wide `limit` is spent; never before
    /// our SYN-ACK (nothing to ACK yet). A challenge the stack-wide limit refuses does not
    /// restart the flow's interval, so the flow's next invalid segment may ask again.
    pub(super) fn challenge_ack<H: HostSocket, L: ChallengeLimit>(
        &mut self,
        host: &mut H,
        eg: &mut Egress,
        limit: &mut L,
        now: Instant,
    ) {
        if self.state == State::Connecting {
            return;
        }
        if self
            .challenged_at
            .is_some_and(|at| now.saturating_duration_since(at) < CHALLENGE_INTERVAL)
        {
            return;
        }
        if !limit.allow_challenge(now) {
            return;
        }
        self.challenged_at = Some(now);
        self.send_control(host, eg, self.snd_nxt, ACK);
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
            if in_flight == 0 {
                // Nothing outstanding: this answers a zero-window probe (or is a window
                // update). A peer that answers is alive, so persisting never gives up
                // (RFC 9293 3.8.6.1); only unanswered retransmissions count.
                self.retries = 0;
            }
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
        let fin_covered = self.state.fin_in_flight() && acked == in_flight;
        let data = acked - usize::from(fin_covered);
        if data > 0 {
            host.discard(data)?;
        }
        if fin_covered {
            self.state = self.state.after_fin_acked();
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
        if self.state.sandbox_fin() {
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
        // A full-sized segment (MSS less the options it carries) is bulk: ACK it this batch.
        // A short one is likely a request whose answer can carry the ACK (delayed ACK, RFC
        // 9293 3.8.6.3).
        let full = self
            .mss
            .saturating_sub(emit::options_len(false, self.ts.is_some()));
        if fresh.len() >= full || seg.flags.fin {
            self.ack_urgent = true;
        }
        if seg.flags.fin {
            host.shutdown_write()?;
            self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
            self.state = self.state.after_sandbox_fin();
        }
        Ok(())
    }

    /// The host socket has send space again: tell the sandbox the window opened.
    pub fn on_host_writable<H: HostSocket>(&mut self, host: &mut H, eg: &mut Egress, now: Instant) {
        // Only a refused send clears `host_writable`, and only a synchronized flow sends.
        if !self.host_writable && self.state.synchronized() {
            self.host_writable = true;
            self.ack_pending = true;
            self.flush_ack(host, eg, now);
        }
    }
}
