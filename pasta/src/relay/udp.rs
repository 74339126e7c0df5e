//! `-U`: datagrams to the namespace's sockets go to their target on the host's loopback, each
//! client (namespace socket, source address) through a host socket of its own, connected to
//! the target, so replies find their way back: a reply thread per flow receives them and sends
//! them from the namespace socket to the client. A flow idle for `IDLE` both ways ends (its
//! thread marks it closed; the next datagram opens a new one). At most `MAX_UDP` flows; when
//! full, closed flows are swept, then new clients' datagrams are dropped.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{poll_forever, BUF};
use crate::nsfwd::NsForward;

/// Flows at once, over all `-U` ports.
const MAX_UDP: usize = 1024;
/// A flow with no datagram either way for this long ends (pasta's UDP_CONN_TIMEOUT, udp.c).
const IDLE: Duration = Duration::from_secs(180);

/// What the acceptor and a flow's reply thread share.
struct FlowState {
    /// Milliseconds since `Relay::epoch` of the last datagram either way.
    last_ms: AtomicU64,
    /// Set by the reply thread when it ends.
    closed: AtomicBool,
}

struct Flow {
    host: Arc<UdpSocket>,
    state: Arc<FlowState>,
}

/// The acceptor's state.
struct Relay {
    socks: Vec<(Arc<UdpSocket>, SocketAddr)>,
    flows: HashMap<(usize, SocketAddr), Flow>,
    epoch: Instant,
}

/// Starts the acceptor thread for `socks`.
pub(super) fn start(socks: Vec<(NsForward, OwnedFd)>) -> io::Result<()> {
    let socks = socks
        .into_iter()
        .map(|(f, fd)| (Arc::new(UdpSocket::from(fd)), f.target))
        .collect();
    let mut relay = Relay {
        socks,
        flows: HashMap::new(),
        epoch: Instant::now(),
    };
    std::thread::Builder::new()
        .name("ns-udp".into())
        .spawn(move || {
            let polled: Vec<Arc<UdpSocket>> =
                relay.socks.iter().map(|(s, _)| Arc::clone(s)).collect();
            let mut buf = vec![0u8; super::BUF];
            let error = poll_forever(&polled, |i| relay.drain(i, &mut buf));
            tracing::error!(%error, "-U relay stopped");
        })
        .map(drop)
}

impl Relay {
    /// Forwards every datagram waiting on namespace socket `i`.
    fn drain(&mut self, i: usize, buf: &mut [u8]) {
        loop {
            let (n, client) = match self.socks[i].0.recv_from(buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock: drained; anything else (an ICMP error queued): next event.
                Err(_) => return,
            };
            let now = ms(self.epoch);
            let Some(flow) = self.flow(i, client) else {
                continue;
            };
            flow.state.last_ms.store(now, Ordering::Relaxed);
            if let Err(error) = flow.host.send(&buf[..n]) {
                tracing::trace!(%error, %client, "-U: datagram to the host dropped");
            }
        }
    }

    /// The open flow of `client` on socket `i`, opened if need be; `None` when full.
    fn flow(&mut self, i: usize, client: SocketAddr) -> Option<&Flow> {
        let key = (i, client);
        if self
            .flows
            .get(&key)
            .is_some_and(|f| f.state.closed.load(Ordering::Acquire))
        {
            self.flows.remove(&key);
        }
        if !self.flows.contains_key(&key) {
            if self.flows.len() >= MAX_UDP {
                self.flows
                    .retain(|_, f| !f.state.closed.load(Ordering::Acquire));
            }
            if self.flows.len() >= MAX_UDP {
                tracing::debug!(%client, limit = MAX_UDP, "-U: too many flows; dropped");
                return None;
            }
            match self.open(i, client) {
                Ok(flow) => {
                    self.flows.insert(key, flow);
                }
                Err(error) => {
                    tracing::warn!(%error, %client, "-U: cannot open a host socket");
                    return None;
                }
            }
        }
        self.flows.get(&key)
    }

    /// A host socket connected to socket `i`'s target, and its reply thread.
    fn open(&self, i: usize, client: SocketAddr) -> io::Result<Flow> {
        let (ns, target) = &self.socks[i];
        let local: IpAddr = match target {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        };
        let host = UdpSocket::bind(SocketAddr::new(local, 0))?;
        host.connect(target)?;
        host.set_read_timeout(Some(IDLE))?;
        let flow = Flow {
            host: Arc::new(host),
            state: Arc::new(FlowState {
                last_ms: AtomicU64::new(ms(self.epoch)),
                closed: AtomicBool::new(false),
            }),
        };
        let reply = Reply {
            host: Arc::clone(&flow.host),
            ns: Arc::clone(ns),
            client,
            state: Arc::clone(&flow.state),
            epoch: self.epoch,
        };
        std::thread::Builder::new()
            .name("ns-udp-reply".into())
            .spawn(move || reply.run())?;
        tracing::debug!(%client, %target, "-U: flow opened");
        Ok(flow)
    }
}

/// One flow's way back.
struct Reply {
    host: Arc<UdpSocket>,
    ns: Arc<UdpSocket>,
    client: SocketAddr,
    state: Arc<FlowState>,
    epoch: Instant,
}

impl Reply {
    fn run(self) {
        let mut buf = vec![0u8; BUF];
        loop {
            match self.host.recv(&mut buf) {
                Ok(n) => {
                    self.state.last_ms.store(ms(self.epoch), Ordering::Relaxed);
                    // The namespace socket is non-blocking (shared with the acceptor): a full
                    // send buffer drops the datagram, as the kernel would.
                    if let Err(error) = self.ns.send_to(&buf[..n], self.client) {
                        tracing::trace!(%error, client = %self.client, "-U: reply dropped");
                    }
                }
                Err(e) if is_timeout(&e) => {
                    let last = self.state.last_ms.load(Ordering::Relaxed);
                    let idle = ms(self.epoch).saturating_sub(last);
                    if idle >= IDLE.as_millis() as u64 {
                        break;
                    }
                }
                // The target's port is closed (ICMP port unreachable) or a signal: go on.
                Err(e) if is_transient(&e) => {}
                Err(error) => {
                    tracing::debug!(%error, client = %self.client, "-U: host socket failed");
                    break;
                }
            }
        }
        self.state.closed.store(true, Ordering::Release);
        tracing::debug!(client = %self.client, "-U: flow closed");
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::Interrupted
    )
}

/// Milliseconds since `epoch` (a u64 lasts 584 million years).
fn ms(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}
