//! The DNS forwarder behind host sockets instead of the tap: kernel mode (`--net-mode=kernel`)
//! has no userspace stack, so its nftables rules DNAT the sandbox's queries to 10.0.2.3:53
//! (and [fd00::3]:53) to the sockets here, and they get exactly the forwarder the rootless path
//! has (`Forwarder`: validation, fresh ids, failover, SERVFAIL on timeout) over UDP, and
//! `TcpRelay` over TCP. Called by the launcher's `kernelnet`, one `SocketFront` per run.
//!
//! `start` binds one UDP socket and one `TcpRelay` per address it is given (port 0: the
//! kernel's choice; `endpoints` says which), then runs a thread ("dns-udp") with its own mio
//! poll over the UDP sockets and the forwarder's upstream sockets. A datagram from `peer` on
//! the socket bound at `local` is handed to `Forwarder::query(peer, local, ..)`; the
//! forwarder's answers come out of an `Egress` whose sink (`SocketSink`) takes the UDP payload
//! back out of each frame and sends it from the socket bound at the frame's source address to
//! its destination, so conntrack turns the source back into 10.0.2.3:53 on its way to the
//! sandbox. Frames are built and unpacked once per answer: this is the control plane, and it
//! keeps the forwarder's logic in one place. Dropping the front stops the thread (a mio waker)
//! and the TCP relays.
//!
//! Bounds: those of `Forwarder` and `TcpRelay`; per wake-up at most `RECV_BUDGET` datagrams
//! per front socket are read, then the loop polls again without sleeping, so upstream
//! answers are not starved by a flood of queries. Must not: touch links, rules or the tap.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdp};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use smoltcp::wire::UdpPacket;
use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol, Ipv4Packet, Ipv6Packet};

use super::{Forwarder, TcpRelay, Timeouts, RECV_BUDGET, RECV_BUF};
use crate::egress::{Egress, FrameSink};

/// The largest UDP answer relayed: the largest IP packet, so nothing an upstream sends is cut
/// (the frames never cross a link; the sink unpacks them).
const FRAME_MTU: usize = u16::MAX as usize;

/// Link addresses of the frames the sink unpacks: any unicast pair will do, since no frame
/// reaches a link (locally administered, RFC 7042 2.1).
const FRONT_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x53]);

/// The waker's token; upstream socket `i` is `Token(i)`, front socket `i` is `FRONT + i`.
const WAKER: Token = Token(usize::MAX);
const FRONT: usize = 1 << 16;

/// Where one bound address receives queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The UDP socket's address.
    pub udp: SocketAddr,
    /// The TCP relay's address.
    pub tcp: SocketAddr,
}

/// The running front; dropping it stops it.
pub struct SocketFront {
    endpoints: Vec<Endpoint>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    _tcp: Vec<TcpRelay>,
}

impl SocketFront {
    /// Binds a UDP socket and a TCP relay on each of `binds` (port 0: any) and starts
    /// relaying queries to `upstreams`. Fails if a socket cannot be bound or the thread
    /// cannot start.
    pub fn start(binds: &[SocketAddr], upstreams: &[SocketAddr]) -> io::Result<SocketFront> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut fronts = Vec::with_capacity(binds.len());
        let mut sink = SocketSink::default();
        let mut endpoints = Vec::with_capacity(binds.len());
        let mut tcp = Vec::with_capacity(binds.len());
        for (i, &bind) in binds.iter().enumerate() {
            let std = StdUdp::bind(bind)?;
            std.set_nonblocking(true)?;
            let local = std.local_addr()?;
            sink.socks.push((local, std.try_clone()?));
            let mut sock = UdpSocket::from_std(std);
            poll.registry()
                .register(&mut sock, Token(FRONT + i), Interest::READABLE)?;
            fronts.push((local, sock));
            let relay = TcpRelay::start_on(bind, upstreams, Timeouts::default())?;
            endpoints.push(Endpoint {
                udp: local,
                tcp: relay.addr(),
            });
            tcp.push(relay);
        }
        let now = Instant::now();
        let mut fwd = Forwarder::new(upstreams, now)?;
        for i in 0..fwd.socket_count() {
            if let Some(s) = fwd.socket_mut(i) {
                poll.registry().register(s, Token(i), Interest::READABLE)?;
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("dns-udp".into())
            .spawn(move || {
                // Built here: an `Egress` holds a `dyn FrameSink`, which need not be Send.
                let mut eg = Egress::new(FRAME_MTU, FRONT_MAC, Box::new(sink), false);
                eg.set_sandbox_mac(FRONT_MAC);
                let mut lp = Loop {
                    poll,
                    fronts,
                    fwd,
                    eg,
                    buf: vec![0; RECV_BUF].into_boxed_slice(),
                };
                if let Err(error) = lp.run(&flag) {
                    tracing::error!(%error, "dns front failed; queries to the dns address go unanswered");
                }
                tracing::debug!(stats = ?lp.fwd.stats(), "dns front stopped");
            })?;
        Ok(SocketFront {
            endpoints,
            stop,
            waker,
            thread: Some(thread),
            _tcp: tcp,
        })
    }

    /// The bound addresses, in the order `start` was given them.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }
}

impl Drop for SocketFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(error) = self.waker.wake() {
            tracing::debug!(%error, "cannot wake the dns front; not waiting for it");
            return;
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The front's thread state.
struct Loop {
    poll: Poll,
    fronts: Vec<(SocketAddr, UdpSocket)>,
    fwd: Forwarder,
    eg: Egress,
    buf: Box<[u8]>,
}

impl Loop {
    /// Serves until `stop` is set.
    fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        // Front sockets whose receive budget ran out: read again without waiting.
        let mut backlog = false;
        while !stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            let timeout = match (backlog, self.fwd.next_timer()) {
                (true, _) => Some(Duration::ZERO),
                (false, t) => t.map(|t| t.saturating_duration_since(now)),
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            let mut fronts_ready = backlog;
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    Token(t) if t >= FRONT => fronts_ready = true,
                    Token(i) => self.fwd.on_readable(i, &mut self.eg, now),
                }
            }
            backlog = fronts_ready && self.read_queries(now);
            if self.fwd.next_timer().is_some_and(|t| t <= now) {
                self.fwd.on_timer(&mut self.eg, now);
            }
        }
        Ok(())
    }

    /// Reads up to `RECV_BUDGET` queries from each front socket into the forwarder; whether
    /// one was left with more to read.
    fn read_queries(&mut self, now: Instant) -> bool {
        let mut more = false;
        for (local, sock) in &self.fronts {
            let mut drained = false;
            for _ in 0..RECV_BUDGET {
                match sock.recv_from(&mut self.buf) {
                    Ok((len, peer)) => {
                        let q = self.buf.get(..len).unwrap_or_default();
                        self.fwd.query(peer, *local, q, &mut self.eg, now);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        drained = true;
                        break;
                    }
                    Err(error) => {
                        // An ICMP error for an earlier answer; the socket goes on.
                        tracing::debug!(%error, "dns front receive error");
                    }
                }
            }
            more |= !drained;
        }
        more
    }
}

/// Sends the UDP payload of each frame from the front socket bound at its source address to
/// its destination.
#[derive(Default)]
struct SocketSink {
    socks: Vec<(SocketAddr, StdUdp)>,
}

/// The source, destination and payload of a UDP-in-IP-in-Ethernet frame.
fn unpack(frame: &[u8]) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (src, dst, l4): (IpAddr, IpAddr, &[u8]) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            (ip.src_addr().into(), ip.dst_addr().into(), ip.payload())
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            (ip.src_addr().into(), ip.dst_addr().into(), ip.payload())
        }
        _ => return None,
    };
    let udp = UdpPacket::new_checked(l4).ok()?;
    Some((
        SocketAddr::new(src, udp.src_port()),
        SocketAddr::new(dst, udp.dst_port()),
        udp.payload(),
    ))
}

impl FrameSink for SocketSink {
    fn send_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let (src, dst, payload) = unpack(frame).ok_or(io::ErrorKind::InvalidData)?;
        let (_, sock) = self
            .socks
            .iter()
            .find(|(local, _)| *local == src)
            .ok_or(io::ErrorKind::AddrNotAvailable)?;
        sock.send_to(payload, dst).map(|_| ())
    }
}
