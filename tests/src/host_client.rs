//! Host-side clients of a published port: a TCP connection from a chosen source address that
//! sends a payload, half-closes and checks the echo, and a UDP exchange that checks each
//! datagram comes back intact from the address it was sent to. Both return the client's own
//! address, which the test compares with the peer the sandbox reports (`peer_echo`).
//! Called by the forwarding and API tests, as root in the sealed netns; every wait is bounded.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::time::Duration;

use nix::sys::socket::{
    bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrLike,
};
use std::os::fd::AsRawFd;

use crate::pattern::{fill, TCP_SEED};

/// Bound for each connect, read and write: liveness only.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-datagram wait before a UDP datagram is sent again (UDP may drop; nothing here sleeps).
const UDP_RETRY_AFTER: Duration = Duration::from_secs(2);
/// Sends per datagram before the UDP exchange gives up.
const UDP_ATTEMPTS: u32 = 5;

/// A TCP connection to `to`, from `from` (port 0: any) if given.
pub fn connect_from(from: Option<IpAddr>, to: SocketAddr) -> io::Result<TcpStream> {
    let Some(from) = from else {
        let s = TcpStream::connect_timeout(&to, IO_TIMEOUT)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        return Ok(s);
    };
    let family = if to.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd: OwnedFd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    let local = SocketAddr::new(from, 0);
    bind(fd.as_raw_fd(), &*sockaddr(local))?;
    // A blocking connect on loopback completes or fails at once; the read timeout bounds the
    // rest.
    connect(fd.as_raw_fd(), &*sockaddr(to))?;
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

fn sockaddr(a: SocketAddr) -> Box<dyn SockaddrLike> {
    match a {
        SocketAddr::V4(v4) => Box::new(SockaddrIn::from(v4)),
        SocketAddr::V6(v6) => Box::new(SockaddrIn6::from(v6)),
    }
}

/// Connects to `to` from `from`, sends `len` bytes of the TCP_SEED pattern, half-closes, and
/// reads the echo to EOF. Returns the client's own address; an echo that differs is an error.
pub fn tcp_echo_from(from: Option<IpAddr>, to: SocketAddr, len: usize) -> io::Result<SocketAddr> {
    let mut s = connect_from(from, to)
        .map_err(|e| io::Error::new(e.kind(), format!("connect {from:?} -> {to}: {e}")))?;
    let local = s.local_addr()?;
    let mut payload = vec![0u8; len];
    fill(TCP_SEED, 0, &mut payload);
    let mut writer = s.try_clone()?;
    // Write on a thread: a large payload's echo comes back while we send.
    let sender = std::thread::spawn(move || -> io::Result<()> {
        writer.write_all(&payload)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut echoed = Vec::with_capacity(len);
    let read = s.read_to_end(&mut echoed);
    sender
        .join()
        .map_err(|_| io::Error::other("the sender thread panicked"))??;
    read.map_err(|e| io::Error::new(e.kind(), format!("read the echo from {to}: {e}")))?;
    let mut want = vec![0u8; len];
    fill(TCP_SEED, 0, &mut want);
    if echoed != want {
        return Err(io::Error::other(format!(
            "the echo from {to} differs: sent {len} bytes, got {} back",
            echoed.len()
        )));
    }
    Ok(local)
}

/// Sends `count` distinct datagrams from `from` (port 0) to `to`, each until it comes back
/// intact from `to` itself. Returns the client's own address.
pub fn udp_echo_from(from: IpAddr, to: SocketAddr, count: u8) -> io::Result<SocketAddr> {
    let s = UdpSocket::bind(SocketAddr::new(from, 0))?;
    s.set_read_timeout(Some(UDP_RETRY_AFTER))?;
    let local = s.local_addr()?;
    let mut buf = vec![0u8; 65536];
    for i in 0..count {
        let mut payload = vec![0u8; 64 + usize::from(i) * 100];
        fill(TCP_SEED ^ u64::from(i), 0, &mut payload);
        payload[0] = i;
        let mut echoed = false;
        for _ in 0..UDP_ATTEMPTS {
            s.send_to(&payload, to)?;
            match s.recv_from(&mut buf) {
                Ok((n, src)) if buf[..n] == payload[..] => {
                    if src != to {
                        return Err(io::Error::other(format!(
                            "datagram {i} came back from {src}, not from {to}"
                        )));
                    }
                    echoed = true;
                    break;
                }
                // A late echo of an earlier datagram: wait for ours.
                Ok((n, _)) if n > 0 && buf[0] != i => continue,
                Ok((n, src)) => {
                    return Err(io::Error::other(format!(
                        "datagram {i} came back altered ({n} bytes from {src})"
                    )))
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
        if !echoed {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("datagram {i} to {to} not echoed after {UDP_ATTEMPTS} sends"),
            ));
        }
    }
    Ok(local)
}
