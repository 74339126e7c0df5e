//! UDP NAT: one connected host socket per (sandbox address, remote address) flow; datagrams
//! from the sandbox are sent on it, replies are received (recvmmsg, up to `MAX_BATCH` per call)
//! straight into frame buffers and emitted with the remote address as source. Called by the flow table; the table's idle
//! timeout (StackConfig::udp_idle_timeout) closes quiet flows.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::time::Instant;

use mio::net::UdpSocket;

use crate::egress::Egress;
use crate::sys::socket::{self, MAX_BATCH};
use crate::tcp::Endpoints;

/// Most datagrams read from one host socket per readiness event, so one busy flow cannot
/// starve the rest of the loop; the rest is read on the next pass.
const RECV_BUDGET: usize = 64;

/// One UDP flow.
#[derive(Debug)]
pub struct UdpFlow {
    ep: Endpoints,
    /// The host socket, registered with the event loop.
    pub sock: UdpSocket,
    last_active: Instant,
    /// Readable edge seen but the receive budget ran out before EAGAIN.
    pub more: bool,
}

impl UdpFlow {
    /// Opens a host socket connected to `target` for a flow with endpoints `ep`, bound to
    /// `source` when given (`--outbound-addr`).
    pub fn open(
        ep: Endpoints,
        target: SocketAddr,
        source: Option<IpAddr>,
        now: Instant,
    ) -> io::Result<UdpFlow> {
        let any = match target.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let sock = UdpSocket::bind(SocketAddr::new(source.unwrap_or(any), 0))?;
        sock.connect(target)?;
        Ok(UdpFlow {
            ep,
            sock,
            last_active: now,
            more: false,
        })
    }

    /// Last time a datagram passed.
    pub fn last_active(&self) -> Instant {
        self.last_active
    }

    /// Sends one datagram from the sandbox; a full socket buffer drops it, as a network would.
    pub fn send_from_sandbox(&mut self, payload: &[u8], now: Instant) {
        self.last_active = now;
        match self.sock.send(payload) {
            Ok(_) => {}
            Err(error) => tracing::trace!(%error, remote = %self.ep.remote, "udp send dropped"),
        }
    }

    /// Emits datagrams waiting on the host socket to the sandbox, read `MAX_BATCH` at a time.
    pub fn on_readable(&mut self, eg: &mut Egress, now: Instant) {
        self.more = false;
        for _ in 0..RECV_BUDGET / MAX_BATCH {
            let sock = self.sock.as_fd();
            let read = eg.udp_batch(self.ep.remote, self.ep.sandbox, |bufs, lens| {
                socket::recv_batch(sock, bufs, lens)
            });
            match read {
                // Fewer than asked for: the queue was empty when the kernel looked, and a
                // datagram arriving after that raises a new readable edge. None: no link yet.
                Ok(got) if got < MAX_BATCH => {
                    self.last_active = now;
                    return;
                }
                Ok(_) => self.last_active = now,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) => {
                    // e.g. ECONNREFUSED from an ICMP port unreachable: nothing to relay.
                    tracing::trace!(%error, remote = %self.ep.remote, "udp receive error");
                }
            }
        }
        self.more = true;
    }
}
