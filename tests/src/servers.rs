//! Servers the sandbox reaches through its gateway 10.0.2.2, which the netstack maps to the
//! host's 127.0.0.1 with the same port. The test process runs as root inside the sealed netns,
//! so these listen on its 127.0.0.1, port 0, and report every peer, byte count and digest on a
//! channel the test waits on. Also a port that refuses connections. Threads, no async.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use nix::sys::socket::{bind, getsockname, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
use sha2::{Digest, Sha256};

use crate::pattern::hex;

/// The sandbox's name for the host's 127.0.0.1 (slirp4netns default).
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

/// One finished connection to a `TcpEcho`.
#[derive(Debug, Clone)]
pub struct TcpRecord {
    /// Who connected (as the host saw it).
    pub peer: SocketAddr,
    /// Bytes received (and echoed) before the peer's FIN.
    pub bytes: u64,
    /// sha256 (hex) of those bytes.
    pub sha256: String,
    /// The error that ended the connection early, if any.
    pub error: Option<String>,
}

/// A TCP echo server: echoes until the peer half-closes, then half-closes back.
pub struct TcpEcho {
    addr: SocketAddr,
    records: Receiver<TcpRecord>,
    stop: Arc<AtomicBool>,
}

impl TcpEcho {
    /// Listens on `127.0.0.1:0`.
    pub fn start() -> TcpEcho {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("bind a TCP echo server on 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, records) = mpsc::channel();
        let stopping = Arc::clone(&stop);
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let tx = tx.clone();
                thread::spawn(move || {
                    let _ = tx.send(echo_tcp(conn));
                });
            }
        });
        TcpEcho {
            addr,
            records,
            stop,
        }
    }

    /// The port it listens on (the sandbox connects to 10.0.2.2 on this port).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Waits for the next finished connection; panics after `timeout`.
    pub fn next_record(&self, timeout: Duration) -> TcpRecord {
        self.records.recv_timeout(timeout).unwrap_or_else(|e| {
            panic!(
                "TCP echo server on {}: no finished connection within {timeout:?}: {e}",
                self.addr
            )
        })
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn echo_tcp(mut conn: TcpStream) -> TcpRecord {
    let peer = conn
        .peer_addr()
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let error = loop {
        match conn.read(&mut buf) {
            Ok(0) => {
                break conn
                    .shutdown(Shutdown::Write)
                    .err()
                    .map(|e| format!("shutdown: {e}"))
            }
            Ok(n) => {
                hasher.update(&buf[..n]);
                bytes += n as u64;
                if let Err(e) = conn.write_all(&buf[..n]) {
                    break Some(format!("write: {e}"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Some(format!("read: {e}")),
        }
    };
    TcpRecord {
        peer,
        bytes,
        sha256: hex(&hasher.finalize()),
        error,
    }
}

/// A UDP echo server: sends every datagram back to its sender.
pub struct UdpEcho {
    addr: SocketAddr,
    peers: Receiver<(SocketAddr, usize)>,
    stop: Arc<AtomicBool>,
}

impl UdpEcho {
    /// Binds `127.0.0.1:0`.
    pub fn start() -> UdpEcho {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("bind a UDP echo server on 127.0.0.1:0: {e}"));
        let addr = sock.local_addr().expect("a bound socket has an address");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, peers) = mpsc::channel();
        let stopping = Arc::clone(&stop);
        thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, peer)) = sock.recv_from(&mut buf) {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                // Record before echoing: once the sender has its echo, the record exists.
                let _ = tx.send((peer, n));
                let _ = sock.send_to(&buf[..n], peer);
            }
        });
        UdpEcho { addr, peers, stop }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every (peer, size) echoed so far, without waiting.
    pub fn echoed(&self) -> Vec<(SocketAddr, usize)> {
        self.peers.try_iter().collect()
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(s) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) {
            let _ = s.send_to(b"", self.addr);
        }
    }
}

/// A TCP port on 127.0.0.1 that refuses connections: a socket bound to it that never listens,
/// which keeps the port from being taken by anyone else while the test runs.
pub struct ClosedPort {
    _sock: OwnedFd,
    port: u16,
}

impl ClosedPort {
    /// Binds a fresh port without listening.
    pub fn new() -> ClosedPort {
        let sock = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap_or_else(|e| panic!("socket(AF_INET, SOCK_STREAM): {e}"));
        bind(sock.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0))
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
        let local: SockaddrIn =
            getsockname(sock.as_raw_fd()).unwrap_or_else(|e| panic!("getsockname: {e}"));
        ClosedPort {
            _sock: sock,
            port: local.port(),
        }
    }

    /// The refusing port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        ClosedPort::new()
    }
}
