//! The one event loop: owns the tap fd, the control plane, the flow table and the forwards'
//! host sockets, on a single thread over mio (epoll, edge-triggered). Readiness events carry
//! typed tokens (`token::Tok`): tap, flow, DNS upstream, forward listener, command channel, stop.
//!
//! Each iteration: wait for I/O or the next flow deadline; drain the tap (up to `TAP_BATCH`
//! frames) dispatching each frame once; handle host socket readiness (flows, and forwards,
//! whose new connections and datagrams open host-initiated flows: `forwards.rs`); apply queued
//! commands (`command`, egress policy changes in `policy.rs`); then flush the ACKs owed to flows touched in this batch (one per
//! flow, not one per frame); then run due timers.
//! The egress policy (`policy.rs`) is asked once per flow the sandbox opens, never per frame.
//! The flow table's size is `StackConfig::max_flows` lowered to what the fd limit allows
//! (`fd_budget`), fixed when the loop is built.
//! We use mio directly rather than tokio tasks: one epoll_wait per batch with tokens that map
//! straight to flow slots, and no per-flow task, waker or allocation.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use smoltcp::wire::{EthernetAddress, IpProtocol};

use crate::command::Commands;
use crate::config::{StackConfig, GATEWAY_MAC};
use crate::control::ControlPlane;
use crate::egress::{Egress, FrameSink};
use crate::flows::{Flow, FlowKey, FlowTable, Need, Proto};
use crate::host::HostTcp;
use crate::icmp::PingFlow;
use crate::nat;
use crate::sys::pages::ZeroedBuf;
use crate::tcp::{self, Endpoints, HostSocket, TcpClock, TcpFlow, Verdict};
use crate::udp::UdpFlow;
use crate::wire::{self, Frame, IpMeta, TcpSegment, L4};
use forwards::Forwards;
use spin::{Spin, Turn};
use token::Tok;
/// Frames read from the tap per iteration before other work gets a turn.
const TAP_BATCH: usize = 64;
/// Readiness events taken per epoll_wait.
const EVENTS: usize = 256;
/// Ethernet header length.
const ETH_HEADER: usize = 14;

/// Counters of frames the loop dropped, by reason.
#[derive(Debug, Default, Clone, Copy)]
pub struct DropStats {
    /// Malformed or unsupported frames.
    pub malformed: u64,
    /// Traffic to refused destinations.
    pub refused: u64,
    /// New flows refused because the table was full of TCP flows.
    pub table_full: u64,
    /// Connections or datagrams on a forward that could not become a flow (address clash,
    /// table full, socket error).
    pub forward_refused: u64,
    /// New flows the egress policy denied.
    pub denied: u64,
    /// New UDP datagrams no flow or host socket could be made for (table full of TCP,
    /// EMFILE, ENFILE): answered port unreachable or SERVFAIL (`exhaustion`).
    pub exhausted: u64,
    /// New UDP datagrams and echo requests over the new-flow budget (`bucket`): answered
    /// port unreachable, SERVFAIL or administratively prohibited within the ICMP limits.
    pub over_budget: u64,
}

/// Writes frames to the tap fd.
struct TapSink(OwnedFd);

impl FrameSink for TapSink {
    fn send_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        nix::unistd::write(&self.0, frame)
            .map(|_| ())
            .map_err(io::Error::from)
    }
}

/// The loop's state.
pub struct EventLoop {
    poll: Poll,
    tap: OwnedFd,
    rx: ZeroedBuf,
    /// Bytes of virtio-net header in front of each frame read from the tap.
    rx_head: usize,
    egress: Egress,
    control: ControlPlane,
    flows: FlowTable,
    cfg: StackConfig,
    /// Forwards in force: their host sockets and ids.
    forwards: Forwards,
    /// The command channel's receiving end, if the stack has one.
    commands: Option<Commands>,
    /// The DNS forwarder at the DNS address, port 53 (UDP), unless DNS is disabled.
    dns: Option<crate::dns::Forwarder>,
    /// Where TCP flows to the DNS address, port 53, are connected, unless DNS is disabled.
    dns_tcp: Option<crate::dns::TcpRelay>,
    /// Router advertisements, when the config asks for them.
    ra: Option<crate::ra::Advertiser>,
    /// The DHCPv4 server, when the config asks for it.
    dhcp: Option<crate::dhcp::Server>,
    /// Flows owed an ACK at the end of this batch.
    touched: Vec<usize>,
    /// Flows whose receive budget ran out: serve again next iteration.
    pending: Vec<usize>,
    /// Scratch list for timer scans.
    scan: Vec<usize>,
    tap_more: bool,
    /// The stop fd of `run_until` fired.
    stop_requested: bool,
    /// Test-only faults applied to frames read from the tap.
    #[cfg(feature = "fault-injection")]
    rx_faults: Option<crate::fault::Faults>,
    next_timer: Option<Instant>,
    /// Busy-poll policy for the wait at the top of each turn.
    spin: Spin,
    /// Bytes read from the tap in this turn.
    tap_bytes: usize,
    /// This turn carried flow traffic.
    flow_traffic: bool,
    /// What the last turn did (for the spin policy).
    last_turn: Turn,
    /// Initial sequence numbers and the TSval clock of every TCP flow.
    clock: TcpClock,
    /// Where the sandbox's MAC comes from (`link`).
    sandbox_mac: link::SandboxMac,
    /// Drop counters.
    pub drops: DropStats,
    /// Rate limit and buffer of the ICMP errors that answer policy denials.
    denials: policy::Denials,
    /// Budget of new UDP flows, per destination and in all (`bucket`).
    new_udp: bucket::NewFlows,
    /// Budget of new ICMP echo flows, per destination and in all (`bucket`).
    new_ping: bucket::NewFlows,
    /// Budget of challenge ACKs, all TCP flows together (`bucket`, RFC 5961 7).
    challenges: bucket::Bucket,
    /// Per flow slot: the TCP flow in it was opened by the sandbox (policed), not a forward.
    outbound: Vec<bool>,
    /// When expired DNS answers are next forgotten.
    policy_purge_at: Option<Instant>,
}

impl EventLoop {
    /// Sets up the loop around a tap fd (made non-blocking here), taking runtime commands
    /// from `commands` when given.
    pub fn new(
        tap: OwnedFd,
        cfg: StackConfig,
        commands: Option<Commands>,
    ) -> io::Result<EventLoop> {
        // The table runs out before the fds do (`fd_budget`); test builds may set it outright.
        let by_fds = crate::fd_budget::table_bound(cfg.max_flows);
        #[cfg(feature = "fault-injection")]
        let by_fds = faults::max_flows(cfg.max_flows, by_fds);
        let cfg = StackConfig {
            max_flows: by_fds,
            ..cfg
        };
        set_nonblocking(&tap)?;
        let poll = Poll::new()?;
        let reg = poll.registry();
        reg.register(
            &mut SourceFd(&tap.as_raw_fd()),
            token(Tok::Tap)?,
            Interest::READABLE,
        )?;
        if let Some(c) = &commands {
            let fd = c.wake_fd();
            reg.register(
                &mut SourceFd(&fd),
                token(Tok::Commands)?,
                Interest::READABLE,
            )?;
        }
        let mtu = cfg.mtu as usize;
        let mac = EthernetAddress(GATEWAY_MAC);
        let vnet = crate::tap::has_vnet_hdr(tap.as_fd());
        let sink: Box<dyn FrameSink> = Box::new(TapSink(tap.as_fd().try_clone_to_owned()?));
        #[cfg(feature = "fault-injection")]
        let (sink, rx_faults) = faults::wrap(sink, rx_len(vnet, mtu))?;
        let spin = spin_max(cfg.busy_poll);
        tracing::info!(vnet_hdr = vnet, mtu, busy_poll = ?spin, max_flows = cfg.max_flows,
                       "network stack starting");
        let dns = dns_forwarder(&cfg, reg)?;
        let dns_tcp = match cfg.dns {
            true => Some(crate::dns::TcpRelay::start_under(
                &cfg.dns_upstreams,
                crate::dns::Timeouts::default(),
                cfg.policy.clone(),
            )?),
            false => None,
        };
        let mut egress = Egress::new(mtu, mac, sink, vnet);
        let sandbox_mac = link::SandboxMac::start(tap.as_fd(), &mut egress, Instant::now());
        let control = ControlPlane::new(mac, mtu, &cfg.addr, &mut egress);
        let ra = cfg
            .router_advertisements
            .then(|| crate::ra::Advertiser::new(mac, &cfg.addr, cfg.mtu, Instant::now()));
        let dhcp = cfg
            .dhcp_server
            .then(|| crate::dhcp::Server::new(&cfg.addr, cfg.dns));
        let max = cfg.max_flows;
        let denials = policy::Denials::new(egress.headroom(), Instant::now());
        Ok(EventLoop {
            poll,
            tap,
            rx: ZeroedBuf::new(rx_len(vnet, mtu)),
            rx_head: if vnet { crate::wire::vnet::LEN } else { 0 },
            egress,
            control,
            flows: FlowTable::new(max),
            touched: Vec::with_capacity(max),
            pending: Vec::with_capacity(max),
            scan: Vec::with_capacity(max),
            tap_more: false,
            stop_requested: false,
            #[cfg(feature = "fault-injection")]
            rx_faults,
            next_timer: ra.as_ref().map(crate::ra::Advertiser::next_timer),
            spin: Spin::new(spin),
            tap_bytes: 0,
            flow_traffic: false,
            last_turn: Turn::default(),
            clock: TcpClock::new(),
            sandbox_mac,
            drops: DropStats::default(),
            denials,
            new_udp: bucket::NewFlows::new(Instant::now()),
            new_ping: bucket::NewFlows::new(Instant::now()),
            challenges: bucket::Bucket::challenge_acks(Instant::now()),
            outbound: vec![false; max],
            policy_purge_at: None,
            forwards: Forwards::new(),
            commands,
            dns,
            dns_tcp,
            ra,
            dhcp,
            cfg,
        })
    }

    /// Runs until a fatal error (epoll or tap failure).
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS);
        loop {
            self.turn(&mut events, None)?;
        }
    }

    /// Runs until `stop` becomes readable, then until every TCP flow has seen the sandbox's
    /// FIN or RST (what the sandbox sent before it went away is delivered), at most `linger`.
    pub fn run_until(&mut self, stop: BorrowedFd<'_>, linger: Duration) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS);
        self.poll.registry().register(
            &mut SourceFd(&stop.as_raw_fd()),
            token(Tok::Stop)?,
            Interest::READABLE,
        )?;
        while !self.stop_requested {
            self.turn(&mut events, None)?;
        }
        let deadline = Instant::now() + linger;
        // Whatever is queued on the tap now is the sandbox's last word.
        self.drain_tap(Instant::now())?;
        while !self.sandbox_finished() {
            let now = Instant::now();
            if now >= deadline {
                tracing::debug!("linger expired with flows still open; resetting them");
                self.abort_unfinished();
                break;
            }
            self.turn(&mut events, Some(deadline - now))?;
        }
        self.log_counters();
        Ok(())
    }

    /// Resets (RST, not FIN) the host side of every TCP flow the sandbox did not close, so
    /// a host peer never mistakes a cut-off stream for a complete one.
    fn abort_unfinished(&mut self) {
        for slot in 0..self.flows.slot_count() {
            if self.flows.sandbox_closed(slot) {
                continue;
            }
            if let Some(Flow::Tcp(_, host)) = self.flows.get_mut(slot) {
                host.abort();
            }
        }
    }

    /// Every TCP flow has the sandbox's side closed.
    fn sandbox_finished(&mut self) -> bool {
        let mut open = 0;
        for slot in self.flows.occupied() {
            open += usize::from(!self.flows.sandbox_closed(slot));
        }
        open == 0
    }

    /// One iteration: wait (at most `cap`, if given) and handle what is ready.
    fn turn(&mut self, events: &mut Events, cap: Option<Duration>) -> io::Result<()> {
        let timeout = match (self.timeout(Instant::now()), cap) {
            (Some(t), Some(c)) => Some(t.min(c)),
            (t, c) => t.or(c),
        };
        match self.wait(events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        let sent_before = self.egress.stats.bytes;
        self.tap_bytes = 0;
        self.flow_traffic = false;
        if std::mem::take(&mut self.tap_more) {
            self.drain_tap(now)?;
        }
        self.serve_pending(now);
        self.serve_pending_listeners(now);
        for ev in events.iter() {
            match Tok::of(ev.token()) {
                Some(Tok::Stop) => self.stop_requested = true,
                Some(Tok::Tap) => self.drain_tap(now)?,
                Some(Tok::Flow(slot)) => {
                    let ready = Ready {
                        readable: ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                        writable: ev.is_writable() || ev.is_error(),
                        hup: ev.is_read_closed() || ev.is_error(),
                    };
                    self.host_event(slot, ready, now);
                }
                Some(Tok::Listener(slot)) => self.listener_event(slot, now),
                Some(Tok::Commands) => self.run_commands(),
                Some(Tok::Dns(i)) => self.dns_event(i, now),
                None => {}
            }
        }
        self.flush_acks(now);
        self.run_timers(now);
        self.egress.flush();
        let sent = self.egress.stats.bytes.wrapping_sub(sent_before);
        self.last_turn = Turn {
            flow_traffic: self.flow_traffic,
            moved: self.tap_bytes.saturating_add(sent as usize),
        };
        Ok(())
    }

    /// Waits for readiness at most `timeout`: first polls without blocking for as long as
    /// the spin policy allows after the last turn, then blocks for the rest.
    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        let spin = self.spin.budget(self.last_turn, timeout);
        let start = Instant::now();
        if !spin.is_zero() {
            loop {
                self.poll.poll(events, Some(Duration::ZERO))?;
                if !events.is_empty() {
                    self.spin.record(Some(start.elapsed()));
                    return Ok(());
                }
                if start.elapsed() >= spin {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        let rest = timeout.map(|t| t.saturating_sub(start.elapsed()));
        self.poll.poll(events, rest)?;
        if timeout != Some(Duration::ZERO) {
            self.spin
                .record((!events.is_empty()).then(|| start.elapsed()));
        }
        Ok(())
    }

    fn timeout(&self, now: Instant) -> Option<Duration> {
        if self.tap_more || !self.pending.is_empty() || self.forwards.has_pending() {
            return Some(Duration::ZERO);
        }
        self.next_timer.map(|t| t.saturating_duration_since(now))
    }

    fn drain_tap(&mut self, now: Instant) -> io::Result<()> {
        let mut rx = std::mem::take(&mut self.rx);
        let result = self.drain_tap_into(&mut rx, now);
        self.rx = rx;
        #[cfg(feature = "fault-injection")]
        if let Some(mut faults) = self.rx_faults.take() {
            faults.release(|f| self.dispatch(f, now));
            self.rx_faults = Some(faults);
        }
        result
    }

    fn drain_tap_into(&mut self, rx: &mut [u8], now: Instant) -> io::Result<()> {
        for _ in 0..TAP_BATCH {
            match nix::unistd::read(&self.tap, rx) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "tap closed")),
                Ok(n) => match rx.get(self.rx_head..n) {
                    Some(frame) => {
                        self.tap_bytes += n;
                        self.ingress(frame, now)
                    }
                    None => self.drops.malformed += 1,
                },
                Err(nix::errno::Errno::EAGAIN) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.tap_more = true;
        Ok(())
    }

    fn host_event(&mut self, slot: usize, ready: Ready, now: Instant) {
        let Some(flow) = self.flows.get_mut(slot) else {
            return; // stale event for a flow closed earlier in this batch
        };
        self.flow_traffic = true;
        match flow {
            Flow::Tcp(flow, host) => {
                let verdict = tcp_event(flow, host, ready, &mut self.egress, now);
                let owes_ack = flow.ack_pending();
                let timer = flow.next_timer();
                self.after_tcp(slot, verdict, owes_ack, timer);
            }
            Flow::Udp(flow) => {
                flow.on_readable(&mut self.egress, now);
                if flow.more {
                    self.pending.push(slot);
                }
            }
            Flow::Ping(flow) => {
                flow.on_readable(&mut self.egress, now);
                if flow.more {
                    self.pending.push(slot);
                }
            }
            Flow::UdpIn(_) => {} // no socket of its own: the forward's socket carries it
        }
    }

    fn serve_pending(&mut self, now: Instant) {
        let mut pending = std::mem::take(&mut self.pending);
        for slot in pending.drain(..) {
            self.host_event(
                slot,
                Ready {
                    readable: true,
                    writable: false,
                    hup: false,
                },
                now,
            );
        }
        // Keep the (preallocated) buffer; host_event may have queued more.
        std::mem::swap(&mut self.pending, &mut pending);
        self.pending.append(&mut pending);
    }

    fn after_tcp(&mut self, slot: usize, verdict: Verdict, owes_ack: bool, timer: Option<Instant>) {
        match verdict {
            Verdict::Close => {
                self.flows.remove(slot);
            }
            Verdict::Keep => {
                self.flows.refresh(slot);
                if owes_ack && !self.touched.contains(&slot) {
                    self.touched.push(slot);
                }
                if let Some(t) = timer {
                    self.arm(t);
                }
            }
        }
    }

    fn flush_acks(&mut self, now: Instant) {
        let mut touched = std::mem::take(&mut self.touched);
        for slot in touched.drain(..) {
            if let Some(Flow::Tcp(flow, host)) = self.flows.get_mut(slot) {
                flow.end_batch(host, &mut self.egress, now);
                if let Some(t) = flow.next_timer() {
                    self.arm(t);
                }
            }
        }
        self.touched = touched;
    }

    fn arm(&mut self, at: Instant) {
        self.next_timer = Some(self.next_timer.map_or(at, |t| t.min(at)));
    }

    fn run_timers(&mut self, now: Instant) {
        match self.next_timer {
            Some(t) if t <= now => {}
            _ => return,
        }
        self.next_timer = None;
        if let Some(ra) = self.ra.as_mut() {
            ra.on_timer(&mut self.egress, now);
            let t = ra.next_timer();
            self.arm(t);
        }
        if let Some(dns) = self.dns.as_mut() {
            if dns.next_timer().is_some_and(|t| t <= now) {
                dns.on_timer(&mut self.egress, now);
            }
            if let Some(t) = dns.next_timer() {
                self.arm(t);
            }
        }
        self.policy_timer(now);
        self.scan.clear();
        self.scan.extend(self.flows.occupied());
        let mut scan = std::mem::take(&mut self.scan);
        for &slot in &scan {
            self.flow_timer(slot, now);
        }
        scan.clear();
        self.scan = scan;
    }

    /// An upstream socket of the DNS forwarder is readable (or reported an error).
    fn dns_event(&mut self, index: usize, now: Instant) {
        if let Some(dns) = self.dns.as_mut() {
            dns.on_readable(index, &mut self.egress, now);
            if let Some(t) = dns.next_timer() {
                self.arm(t);
            }
        }
    }

    fn flow_timer(&mut self, slot: usize, now: Instant) {
        let half_open_end = self.flows.half_open_deadline(slot);
        let Some(flow) = self.flows.get_mut(slot) else {
            return;
        };
        let idle = match flow {
            Flow::Tcp(..) => self.cfg.tcp_idle_timeout,
            Flow::Udp(_) | Flow::UdpIn(_) | Flow::Ping(_) => self.cfg.udp_idle_timeout,
        };
        let idle_end = flow.last_active() + idle;
        let expires = half_open_end.map_or(idle_end, |h| h.min(idle_end));
        if expires <= now {
            if let Flow::Tcp(flow, host) = flow {
                tracing::debug!(sandbox = %flow.endpoints().sandbox, half_open = half_open_end.is_some(), "idle or half-open tcp flow reset");
                flow.reset(host, &mut self.egress);
            }
            self.flows.remove(slot);
            self.flows.stats.half_open_expired += u64::from(half_open_end.is_some());
            return;
        }
        if let Flow::Tcp(flow, host) = flow {
            let verdict = flow.on_timer(host, &mut self.egress, now);
            let owes_ack = flow.ack_pending();
            let timer = flow.next_timer();
            self.after_tcp(slot, verdict, owes_ack, timer);
        }
        self.arm(expires);
    }
}

/// Readiness of a host socket.
#[derive(Debug, Clone, Copy)]
struct Ready {
    readable: bool,
    writable: bool,
    /// The peer hung up (its FIN may be queued behind data).
    hup: bool,
}

fn tcp_event(
    flow: &mut TcpFlow,
    host: &mut HostTcp,
    ready: Ready,
    eg: &mut Egress,
    now: Instant,
) -> Verdict {
    if flow.is_connecting() {
        if !ready.writable {
            return Verdict::Keep;
        }
        let Some(result) = host.connect_result() else {
            return Verdict::Keep;
        };
        if flow.on_connected(result, host, eg, now) == Verdict::Close {
            return Verdict::Close;
        }
    } else if ready.writable {
        flow.on_host_writable(host, eg, now);
    }
    if ready.readable {
        return flow.on_host_readable(host, eg, now, ready.hup);
    }
    Verdict::Keep
}

/// The DNS forwarder for `cfg`, its upstream sockets registered; `None` when DNS is off.
/// With no upstream at all it still runs, answering SERVFAIL at once (a resolver then fails
/// fast instead of timing out).
fn dns_forwarder(
    cfg: &StackConfig,
    reg: &mio::Registry,
) -> io::Result<Option<crate::dns::Forwarder>> {
    if !cfg.dns {
        return Ok(None);
    }
    let mut dns = crate::dns::Forwarder::new(&cfg.dns_upstreams, Instant::now())?;
    if let Some(policy) = &cfg.policy {
        dns.set_policy(policy.clone());
    }
    for i in 0..dns.socket_count() {
        if let Some(sock) = dns.socket_mut(i) {
            reg.register(sock, token(Tok::Dns(i))?, Interest::READABLE)?;
        }
    }
    Ok(Some(dns))
}

/// The mio token of `tok`; an index outside the token ranges is a setup error.
fn token(tok: Tok) -> io::Result<mio::Token> {
    tok.token()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "token out of range"))
}

fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !a.is_multicast() && !a.is_broadcast(),
        IpAddr::V6(a) => !a.is_multicast(),
    }
}

/// Receive buffer: one frame, or one 64 KiB GSO super-frame with the virtio-net header.
fn rx_len(vnet: bool, mtu: usize) -> usize {
    if vnet {
        crate::wire::vnet::LEN + ETH_HEADER + usize::from(u16::MAX)
    } else {
        ETH_HEADER + mtu
    }
}

/// The busy-poll maximum to use: `wanted`, unless this thread may run on one CPU only
/// (spinning there would only delay the peer it waits for).
fn spin_max(wanted: Duration) -> Duration {
    match std::thread::available_parallelism() {
        Ok(n) if n.get() > 1 => wanted,
        _ => Duration::ZERO,
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(())
}

#[cfg(feature = "fault-injection")]
mod faults;

mod bucket;
mod counters;
mod dispatch;
mod exhaustion;
mod forwards;
mod link;
mod policy;
mod spin;
#[cfg(test)]
mod tests;
mod token;
