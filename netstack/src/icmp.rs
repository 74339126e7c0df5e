//! ICMP and ICMPv6 echo to destinations other than our own addresses, through unprivileged
//! ping sockets (SOCK_DGRAM/IPPROTO_ICMP or IPPROTO_ICMPV6). Needs the caller's gid inside net.ipv4.ping_group_range; when the
//! kernel refuses the socket, echo requests get no reply (as with slirp4netns) and we log it
//! once. Echo to the gateway and DNS addresses never comes here: the control plane answers it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use mio::net::UdpSocket;

use crate::egress::Egress;
use crate::sys;

/// Replies read per readiness event before yielding to other flows.
const RECV_BUDGET: usize = 64;

/// One echo "flow": a sandbox identifier talking to one remote address.
#[derive(Debug)]
pub struct PingFlow {
    sandbox: IpAddr,
    remote: IpAddr,
    ident: u16,
    /// The ping socket, registered with the event loop.
    pub sock: UdpSocket,
    last_active: Instant,
    /// Receive budget ran out before EAGAIN.
    pub more: bool,
}

impl PingFlow {
    /// Opens a ping socket toward `remote` (ICMP or ICMPv6 by its family).
    pub fn open(
        sandbox: IpAddr,
        remote: IpAddr,
        ident: u16,
        source: Option<IpAddr>,
        now: Instant,
    ) -> io::Result<PingFlow> {
        let fd = sys::socket::ping_socket(remote.is_ipv6())?;
        if let Some(src) = source {
            use nix::sys::socket::{bind, SockaddrStorage};
            use std::os::fd::AsRawFd;
            bind(
                fd.as_raw_fd(),
                &SockaddrStorage::from(SocketAddr::new(src, 0)),
            )?;
        }
        let sock = UdpSocket::from_std(std::net::UdpSocket::from(fd));
        sock.connect(SocketAddr::new(remote, 0))?;
        Ok(PingFlow {
            sandbox,
            remote,
            ident,
            sock,
            last_active: now,
            more: false,
        })
    }

    /// Last time an echo passed.
    pub fn last_active(&self) -> Instant {
        self.last_active
    }

    /// Sends the sandbox's echo request message; the kernel sets our identifier and checksum.
    pub fn send_from_sandbox(&mut self, message: &[u8], now: Instant) {
        self.last_active = now;
        if let Err(error) = self.sock.send(message) {
            tracing::trace!(%error, remote = %self.remote, "echo request dropped");
        }
    }

    /// Relays echo replies back to the sandbox with its own identifier.
    pub fn on_readable(&mut self, eg: &mut Egress, now: Instant) {
        self.more = false;
        for _ in 0..RECV_BUDGET {
            let sock = &self.sock;
            match eg.echo_reply(self.remote, self.sandbox, self.ident, |buf| sock.recv(buf)) {
                Ok(_) => self.last_active = now,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) => tracing::trace!(%error, "ping socket receive error"),
            }
        }
        self.more = true;
    }
}
