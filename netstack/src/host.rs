//! `HostSocket` over a real non-blocking `TcpStream`: peeks at an offset with SO_PEEK_OFF,
//! discards acknowledged bytes with MSG_TRUNC, reports send space from SO_SNDBUF and SIOCOUTQ.
//! Both socket buffers are set large and fixed (no autotuning): see HOST_SNDBUF/HOST_RCVBUF.
//! Used by the flow table for every TCP flow; holds no buffer of its own. `connect` opens the
//! host side of a sandbox-initiated flow (bound to `--outbound-addr` when set).
//! Needs TCP support for SO_PEEK_OFF (Linux 6.10 and later); on older kernels a flow's first
//! peek fails and the flow is reset (a discard-buffer fallback is future work).
//!
//! Every host socket is made with SO_LINGER {on, 0}, so that whatever closes it, the helper's
//! death included (SIGKILL, a crash: the kernel closes the fds), its peer sees RST, never a
//! clean FIN that would make a cut-off upload look complete (issue 14). The linger is
//! cleared (l_onoff 0) on the graceful path only: when the sandbox's FIN is passed on
//! (`shutdown_write`), its stream toward the host is complete, so a later close sends FIN and
//! keeps the bytes still queued for the peer rather than discarding them with a RST.

use std::io::{self, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};

use mio::net::TcpStream;
use nix::sys::socket::{getsockopt, setsockopt, sockopt};

use crate::sys;
use crate::tcp::HostSocket;

/// A connected (or connecting) host TCP socket plus the kernel's current peek offset.
#[derive(Debug)]
pub struct HostTcp {
    /// The socket, registered with the event loop.
    pub stream: TcpStream,
    /// SO_PEEK_OFF as the kernel has it; `None` until first set (the kernel starts at -1).
    peek_off: Option<usize>,
    /// Payload bytes the send buffer holds (half of SO_SNDBUF, which counts skb overhead).
    send_budget: usize,
}

/// Send buffer we ask for: large enough for a 64 KiB-frame window at 10+ Gbit/s on
/// loopback. The kernel caps it at 2 x net.core.wmem_max; setting it turns off autotuning,
/// which would otherwise leave the buffer at tcp_wmem's 16 KiB start while we never fill it.
const HOST_SNDBUF: usize = 4 << 20;
/// Receive buffer we ask for (the kernel doubles it, capped at 2 x net.core.rmem_max). Data
/// for the sandbox stays queued here until the sandbox ACKs it, so the queue holds the
/// sandbox's whole window. Autotuning sizes the buffer from what the reader dequeues per
/// RTT, which on loopback (RTT of microseconds) stays far below that window; the kernel then
/// spends its time collapsing the queue (TCPRcvCollapsed: 17,400 in a 4 s forwarded upload
/// at the default, 216 with this) and forwarded uploads ran at 17-20 instead of 23-24 Gbit/s.
const HOST_RCVBUF: usize = 4 << 20;

impl HostTcp {
    /// Wraps a socket from `connect` or a forward's accept, setting SO_LINGER {on, 0} (see the
    /// module header).
    pub fn new(stream: TcpStream) -> HostTcp {
        set_linger(&stream, true);
        if let Err(error) = setsockopt(&stream, sockopt::SndBuf, &HOST_SNDBUF) {
            tracing::debug!(%error, "SO_SNDBUF not raised");
        }
        if let Err(error) = setsockopt(&stream, sockopt::RcvBuf, &HOST_RCVBUF) {
            tracing::debug!(%error, "SO_RCVBUF not raised");
        }
        let sndbuf = getsockopt(&stream, sockopt::SndBuf).unwrap_or(0);
        HostTcp {
            stream,
            peek_off: None,
            send_budget: sndbuf / 2,
        }
    }

    /// Result of the non-blocking connect, once the socket reports writable:
    /// `None` while still in progress.
    pub fn connect_result(&mut self) -> Option<io::Result<()>> {
        match self.stream.take_error() {
            Ok(Some(e)) | Err(e) => return Some(Err(e)),
            Ok(None) => {}
        }
        match self.stream.peer_addr() {
            Ok(_) => Some(Ok(())),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// Starts a non-blocking connect to `target`, from `source` (port chosen by the kernel) when
/// given (`--outbound-addr`).
pub fn connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    use nix::sys::socket::{self as sock, AddressFamily, SockFlag, SockType, SockaddrStorage};
    let Some(source) = source else {
        return TcpStream::connect(target);
    };
    let family = match target {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let fd = sock::socket(family, SockType::Stream, flags, None)?;
    sock::bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from(SocketAddr::new(source, 0)),
    )?;
    match sock::connect(fd.as_raw_fd(), &SockaddrStorage::from(target)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(fd)))
}

impl HostSocket for HostTcp {
    fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        self.stream.write(data)
    }

    fn peek_at(&mut self, offset: usize, buf: &mut [u8]) -> io::Result<usize> {
        if self.peek_off != Some(offset) {
            let off =
                i32::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            sys::socket::set_peek_off(self.stream.as_fd(), off)?;
            self.peek_off = Some(offset);
        }
        let n = sys::socket::peek(self.stream.as_fd(), buf)?;
        self.peek_off = self.peek_off.map(|o| o + n);
        Ok(n)
    }

    fn discard(&mut self, len: usize) -> io::Result<()> {
        let mut left = len;
        while left > 0 {
            match sys::socket::discard(self.stream.as_fd(), left) {
                Ok(0) => break,
                Ok(n) => left -= n.min(left),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.peek_off = self.peek_off.map(|o| o.saturating_sub(len - left));
        Ok(())
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        match self.stream.shutdown(Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => return Err(e),
            _ => {}
        }
        // The sandbox finished its stream: from here a close is a FIN, as it would be anyway
        // after the peer's FIN, and bytes still queued for the peer are delivered.
        set_linger(&self.stream, false);
        Ok(())
    }

    fn send_space(&mut self) -> usize {
        let queued = sys::socket::outq(self.stream.as_fd()).unwrap_or(usize::MAX);
        self.send_budget.saturating_sub(queued)
    }

    fn abort(&mut self) {
        // Set from the start; again here for a flow whose sandbox side finished first.
        set_linger(&self.stream, true);
    }
}

/// SO_LINGER {on, 0} (`reset`: a close sends RST) or {off} (a close sends FIN).
fn set_linger(stream: &TcpStream, reset: bool) {
    let linger = libc::linger {
        l_onoff: i32::from(reset),
        l_linger: 0,
    };
    if let Err(error) = setsockopt(stream, sockopt::Linger, &linger) {
        tracing::debug!(%error, reset, "SO_LINGER not set");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linger(host: &HostTcp) -> (i32, i32) {
        let l = getsockopt(&host.stream, sockopt::Linger).expect("SO_LINGER");
        (l.l_onoff, l.l_linger)
    }

    #[test]
    fn host_sockets_reset_on_close_until_the_sandbox_finishes_its_stream() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let addr = listener.local_addr().expect("address");
        let client = std::net::TcpStream::connect(addr).expect("connect");
        let mut host = HostTcp::new(TcpStream::from_std(client));
        assert_eq!(
            linger(&host),
            (1, 0),
            "a killed helper must reset its peers"
        );
        host.shutdown_write().expect("shutdown");
        assert_eq!(
            linger(&host).0,
            0,
            "after the sandbox's FIN a close is a FIN"
        );
        host.abort();
        assert_eq!(linger(&host), (1, 0), "an abort resets again");
    }
}
