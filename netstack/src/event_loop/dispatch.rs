//! Routing of frames read from the tap: parse once, then to the control plane, or to the TCP,
//! UDP or ICMP flow of their 5-tuple (whichever side opened it), opening flows (and host
//! sockets) on first sight of a sandbox SYN, datagram or echo request.
//! Part of `event_loop`; decides nothing about addresses itself (`nat` does), nor about what
//! is allowed (each new flow the sandbox opens asks the egress policy: `policy.rs`). New
//! datagram flows spend a budget per destination and in all (`bucket.rs`); a datagram that
//! gets no flow (over budget, no socket, table full) is answered at once within a rate limit
//! (`exhaustion.rs`); the table's bounds and eviction are `flows`'.

use super::bucket::Budget;
use super::exhaustion::NoFlow;
use super::*;
use crate::policy::Proto as RuleProto;

/// DNS port (RFC 1035): UDP to the DNS address on it goes to the forwarder.
pub(super) const DNS_PORT: u16 = 53;

impl EventLoop {
    #[cfg(not(feature = "fault-injection"))]
    pub(super) fn ingress(&mut self, frame: &[u8], now: Instant) {
        self.dispatch(frame, now);
    }

    #[cfg(feature = "fault-injection")]
    pub(super) fn ingress(&mut self, frame: &[u8], now: Instant) {
        match self.rx_faults.take() {
            Some(mut faults) => {
                faults.apply(frame, |f| self.dispatch(f, now));
                self.rx_faults = Some(faults);
            }
            None => self.dispatch(frame, now),
        }
    }

    /// Routes one frame from the sandbox.
    pub(super) fn dispatch(&mut self, frame: &[u8], now: Instant) {
        let (eth, parsed) = match wire::parse(frame) {
            Ok(p) => p,
            Err(error) => {
                self.drops.malformed += 1;
                tracing::trace!(%error, "frame dropped");
                return;
            }
        };
        let tap = self.tap.as_fd();
        self.sandbox_mac
            .on_frame(eth.src, tap, &mut self.egress, now);
        match parsed {
            Frame::Arp => self.control.input(frame, &mut self.egress, now),
            Frame::Ip { meta, l4 } => self.dispatch_ip(frame, meta, l4, now),
            Frame::Unsupported => self.drops.malformed += 1,
        }
    }

    fn dispatch_ip(&mut self, frame: &[u8], meta: IpMeta, l4: L4<'_>, now: Instant) {
        // Router solicitations, and neighbour solicitations for the router's link-local
        // address, are the advertiser's; other neighbour discovery goes on below.
        if meta.proto == IpProtocol::Icmpv6 && l4 == L4::Other {
            if let Some(ra) = self.ra.as_mut() {
                if ra.input(frame, &mut self.egress) {
                    return;
                }
            }
        }
        match l4 {
            L4::Tcp(seg) => self.tcp_input(meta, &seg, now),
            L4::Udp {
                src_port,
                dst_port,
                payload,
            } => self.udp_input(frame, meta, src_port, dst_port, payload, now),
            L4::EchoRequest { .. } | L4::Other if self.is_ours(meta.dst) => {
                self.control.input(frame, &mut self.egress, now)
            }
            L4::Other if meta.proto == IpProtocol::Icmpv6 && !is_unicast(meta.dst) => {
                // Neighbour and router solicitations go to multicast addresses.
                self.control.input(frame, &mut self.egress, now)
            }
            L4::EchoRequest { ident, message, .. } => {
                self.ping_input(frame, meta, ident, message, now)
            }
            L4::Other => self.drops.refused += 1,
        }
    }

    fn tcp_input(&mut self, meta: IpMeta, seg: &TcpSegment<'_>, now: Instant) {
        self.flow_traffic = true;
        let ep = Endpoints {
            sandbox: SocketAddr::new(meta.src, seg.src_port),
            remote: SocketAddr::new(meta.dst, seg.dst_port),
        };
        let key = FlowKey {
            proto: Proto::Tcp,
            sandbox: ep.sandbox,
            remote: ep.remote,
        };
        if let Some(slot) = self.flows.find(&key) {
            if let Some(Flow::Tcp(flow, host)) = self.flows.get_mut(slot) {
                let limit = &mut self.challenges;
                let verdict = flow.on_segment(seg, host, &mut self.egress, limit, now);
                let owes_ack = flow.ack_pending();
                let timer = flow.next_timer();
                self.after_tcp(slot, verdict, owes_ack, timer);
            }
            return;
        }
        if seg.flags.syn && !seg.flags.ack {
            self.tcp_open(key, ep, seg, now);
        } else {
            tcp::reset_stray(ep, seg, &mut self.egress);
        }
    }

    fn tcp_open(&mut self, key: FlowKey, ep: Endpoints, seg: &TcpSegment<'_>, now: Instant) {
        let relay = self.dns_tcp.as_ref().map(|r| r.addr());
        let to_dns = ep.remote.port() == DNS_PORT && self.cfg.addr.is_dns(ep.remote.ip());
        let target = match relay.filter(|_| to_dns).map(Ok) {
            Some(relay) => relay,
            None => nat::host_target(&self.cfg, ep.remote),
        };
        let target = match target {
            Ok(t) => t,
            Err(reason) => {
                self.drops.refused += 1;
                tracing::debug!(remote = %ep.remote, %reason, "tcp connection refused");
                return tcp::reset_stray(ep, seg, &mut self.egress);
            }
        };
        // The DNS relay is our own service: names are policed inside it.
        if !to_dns && !self.egress_allowed(RuleProto::Tcp, ep.remote, now) {
            return tcp::reset_stray(ep, seg, &mut self.egress);
        }
        let Some((slot, evicted)) = self.flows.reserve(Need::HalfOpen) else {
            self.drops.table_full += 1;
            return tcp::reset_stray(ep, seg, &mut self.egress);
        };
        drop(evicted); // closing the socket also takes it out of the epoll set
        let source = nat::source_for(&self.cfg, target);
        let mut stream = match crate::host::connect(target, source) {
            Ok(s) => s,
            Err(error) => {
                tracing::debug!(%target, %error, "host connect failed at once");
                self.flows.release(slot);
                return tcp::reset_stray(ep, seg, &mut self.egress);
            }
        };
        if let Err(error) = self.register_tcp(&mut stream, slot) {
            tracing::warn!(%error, "cannot register host socket");
            self.flows.release(slot);
            return tcp::reset_stray(ep, seg, &mut self.egress);
        }
        let origin = self.clock.origin(&ep, now);
        let mut flow = TcpFlow::new(ep, seg, self.egress.mtu(), origin, now);
        let mut host = HostTcp::new(stream);
        tracing::debug!(sandbox = %ep.sandbox, remote = %ep.remote, %target, "tcp flow opened");
        // On loopback the handshake usually completes inside connect(): answer the sandbox
        // now rather than one epoll round trip later.
        if let Some(result) = host.connect_result() {
            if flow.on_connected(result, &mut host, &mut self.egress, now) == Verdict::Close {
                self.flows.release(slot);
                return;
            }
        }
        self.insert_tcp(slot, key, flow, host, now);
        self.mark_outbound(slot, !to_dns);
    }

    /// Registers a flow's host socket (no Nagle: segments from the sandbox are already
    /// sized) for both directions under the slot's token.
    pub(super) fn register_tcp(&mut self, stream: &mut TcpStream, slot: usize) -> io::Result<()> {
        let _ = stream.set_nodelay(true);
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.poll
            .registry()
            .register(stream, Tok::flow(slot), interest)
    }

    /// Puts a new TCP flow into its reserved slot and arms its idle and first timers.
    pub(super) fn insert_tcp(
        &mut self,
        slot: usize,
        key: FlowKey,
        flow: TcpFlow,
        host: HostTcp,
        now: Instant,
    ) {
        let timer = flow.next_timer();
        self.mark_outbound(slot, false);
        self.flows
            .insert(slot, key, Flow::Tcp(Box::new(flow), host), now);
        self.arm(now + self.cfg.tcp_idle_timeout);
        if let Some(t) = self.flows.half_open_deadline(slot) {
            self.arm(t);
        }
        if let Some(t) = timer {
            self.arm(t);
        }
    }

    /// The gateway or DNS address (answered by the control plane), the latter only while DNS
    /// is on: with `--disable-dns` the address is as dead as any unused one.
    fn is_ours(&self, ip: IpAddr) -> bool {
        self.cfg.addr.is_gateway(ip) || (self.cfg.dns && self.cfg.addr.is_dns(ip))
    }

    /// Where a DHCP client sends: the limited or the network's broadcast address (no address
    /// yet), or the gateway, which the server names as its identifier (renewing).
    fn is_dhcp_server(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => {
                a.is_broadcast()
                    || a == self.cfg.addr.broadcast_v4()
                    || a == self.cfg.addr.gateway_v4()
            }
            IpAddr::V6(_) => false,
        }
    }

    fn udp_input(
        &mut self,
        frame: &[u8],
        meta: IpMeta,
        sport: u16,
        dport: u16,
        payload: &[u8],
        now: Instant,
    ) {
        self.flow_traffic = true;
        if dport == crate::dhcp::SERVER_PORT && self.is_dhcp_server(meta.dst) {
            if let Some(dhcp) = self.dhcp.as_mut() {
                dhcp.input(payload, &mut self.egress, now);
                return;
            }
        }
        if dport == DNS_PORT && self.cfg.addr.is_dns(meta.dst) {
            if let Some(dns) = self.dns.as_mut() {
                let server = SocketAddr::new(meta.dst, dport);
                let client = SocketAddr::new(meta.src, sport);
                dns.query(client, server, payload, &mut self.egress, now);
                if let Some(t) = dns.next_timer() {
                    self.arm(t);
                }
                return;
            }
        }
        let ep = Endpoints {
            sandbox: SocketAddr::new(meta.src, sport),
            remote: SocketAddr::new(meta.dst, dport),
        };
        let key = FlowKey {
            proto: Proto::Udp,
            sandbox: ep.sandbox,
            remote: ep.remote,
        };
        if let Some(slot) = self.flows.find(&key) {
            match self.flows.get_mut(slot) {
                Some(Flow::Udp(flow)) => flow.send_from_sandbox(payload, now),
                Some(Flow::UdpIn(flow)) => {
                    flow.last_active = now;
                    let flow = *flow;
                    self.reply_inbound_udp(flow, payload);
                }
                _ => {}
            }
            return;
        }
        let target = match nat::host_target(&self.cfg, ep.remote) {
            Ok(t) => t,
            Err(reason) => {
                self.drops.refused += 1;
                tracing::trace!(remote = %ep.remote, %reason, "udp datagram refused");
                return;
            }
        };
        if !self.datagram_allowed(key, now) {
            return self.deny_datagram(frame, meta, now);
        }
        if let Budget::Over { answer } = self.new_udp.take(ep.sandbox, ep.remote, now) {
            tracing::trace!(?key, answer, "new udp flow over budget, datagram refused");
            return self.refuse_datagram(
                frame,
                meta,
                (sport, dport),
                payload,
                NoFlow::OverBudget { answer },
                now,
            );
        }
        let Some(slot) = self.reserve_slot(key) else {
            return self.refuse_datagram(
                frame,
                meta,
                (sport, dport),
                payload,
                NoFlow::Exhausted,
                now,
            );
        };
        let source = nat::source_for(&self.cfg, target);
        let opened = UdpFlow::open(ep, target, source, now).and_then(|mut flow| {
            let reg = self.poll.registry();
            reg.register(&mut flow.sock, Tok::flow(slot), Interest::READABLE)?;
            Ok(flow)
        });
        match opened {
            Ok(mut flow) => {
                flow.send_from_sandbox(payload, now);
                self.flows.insert(slot, key, Flow::Udp(flow), now);
                self.arm(now + self.cfg.udp_idle_timeout);
            }
            Err(error) => {
                // EMFILE, ENFILE, ENOBUFS: no socket for it now; say so at once.
                tracing::debug!(%target, %error, "udp socket failed");
                self.flows.release(slot);
                self.refuse_datagram(frame, meta, (sport, dport), payload, NoFlow::Exhausted, now);
            }
        }
    }

    fn ping_input(&mut self, frame: &[u8], meta: IpMeta, ident: u16, message: &[u8], now: Instant) {
        self.flow_traffic = true;
        let sandbox = SocketAddr::new(meta.src, ident);
        let remote = SocketAddr::new(meta.dst, 0);
        let key = FlowKey {
            proto: Proto::Icmp,
            sandbox,
            remote,
        };
        if let Some(slot) = self.flows.find(&key) {
            if let Some(Flow::Ping(flow)) = self.flows.get_mut(slot) {
                flow.send_from_sandbox(message, now);
            }
            return;
        }
        let source = match nat::host_target(&self.cfg, remote) {
            Ok(target) => nat::source_for(&self.cfg, target),
            Err(_) => {
                self.drops.refused += 1;
                return;
            }
        };
        if !self.datagram_allowed(key, now) {
            return self.deny_datagram(frame, meta, now);
        }
        if let Budget::Over { answer } =
            self.new_ping
                .take(SocketAddr::new(meta.src, ident), remote, now)
        {
            tracing::trace!(?key, answer, "new echo flow over budget, request refused");
            return self.refuse_echo(frame, meta, answer, now);
        }
        let Some(slot) = self.reserve_slot(key) else {
            return;
        };
        let opened = PingFlow::open(meta.src, meta.dst, ident, source, now).and_then(|mut flow| {
            let reg = self.poll.registry();
            reg.register(&mut flow.sock, Tok::flow(slot), Interest::READABLE)?;
            Ok(flow)
        });
        match opened {
            Ok(mut flow) => {
                flow.send_from_sandbox(message, now);
                self.flows.insert(slot, key, Flow::Ping(flow), now);
                self.arm(now + self.cfg.udp_idle_timeout);
            }
            Err(error) => {
                // Typically EACCES: our gid is outside net.ipv4.ping_group_range.
                tracing::debug!(remote = %meta.dst, %error, "no ping socket; echo request dropped");
                self.flows.release(slot);
            }
        }
    }

    /// A free slot for `key`, evicting as the table's rules say; `None` (counted) when full.
    fn reserve_slot(&mut self, key: FlowKey) -> Option<usize> {
        let Some((slot, evicted)) = self.flows.reserve(Need::Other) else {
            self.drops.table_full += 1;
            tracing::debug!(?key, "flow table full");
            return None;
        };
        drop(evicted); // closing the socket also takes it out of the epoll set
        Some(slot)
    }
}
