//! Opening a flow: the sandbox's SYN, the host connect, our SYN-ACK and the repeated SYNs of
//! the handshake. Part of `tcp`; see its theory of operation and the table in `state`.
//! Holds only the handshake; the data path is in `receive` and `transmit`.

use std::io;
use std::time::Instant;

use super::*;

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
            state: State::Connecting,
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
            ts: syn.timestamp.map(|(tsval, _)| Timestamps {
                base: now,
                recent: tsval,
                last_ack_sent: syn.seq.wrapping_add(1),
            }),
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
        let mut hdr = self.header(self.iss, SYN_ACK, 0);
        // The window of a SYN-ACK is never scaled (RFC 7323 2.2).
        hdr.window = host.send_space().min(usize::from(u16::MAX)) as u16;
        // Our MSS is the link's, even with GSO: the sandbox sizes its segments by it.
        let our_mss = eg.link_mss(self.ep.remote).min(usize::from(u16::MAX)) as u16;
        let scale = (self.rcv_scale > 0).then_some(self.rcv_scale);
        hdr.syn_options = Some((our_mss, scale));
        let _ = eg.tcp(self.ep.remote, self.ep.sandbox, &hdr, 0, 0, |_| Ok(0));
        self.snd_nxt = self.iss.wrapping_add(1);
    }

    /// A SYN on a flow that already has one: a retransmission, or a new connection.
    pub(super) fn on_syn_again<H: HostSocket>(
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
        if self.state == State::SynRcvd {
            self.send_syn_ack(host, eg);
        }
        Verdict::Keep
    }
}
