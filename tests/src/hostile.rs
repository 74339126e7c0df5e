//! Host-side servers for the hostile-sandbox tests (tests/tests/hostile.rs): a sink that
//! reports how an upload through the helper ended (EOF, or the error its read failed with),
//! a listener that never accepts, whose queue shows how many connections the helper holds on
//! the host at once, and a UDP server that notes when each new source (a new host socket of
//! the helper: a new flow) first appears.
//! Listens on 127.0.0.1, port 0, in the test's sealed netns; one thread per server, no sleeps:
//! the test waits on its channel with a timeout.

use std::collections::HashSet;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How an upload to a `TcpSink` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadEnd {
    /// A clean EOF (the peer's FIN) after this many bytes.
    Eof(u64),
    /// The read failed with this error kind after this many bytes.
    Failed(io::ErrorKind, u64),
}

/// What a `TcpSink` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// `progress_at` bytes have arrived.
    Progress,
    /// The connection ended.
    End(UploadEnd),
}

/// Accepts one connection and reads it to its end, reporting progress and how it ended.
pub struct TcpSink {
    addr: SocketAddr,
    events: Receiver<Event>,
}

impl TcpSink {
    /// Listens on 127.0.0.1:0; reports progress once `progress_at` bytes have arrived.
    pub fn start(progress_at: u64) -> TcpSink {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("bind a TCP sink on 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (tx, events) = mpsc::channel();
        thread::spawn(move || {
            if let Ok((conn, _)) = listener.accept() {
                drain(conn, progress_at, &tx);
            }
        });
        TcpSink { addr, events }
    }

    /// The port it listens on (the sandbox reaches it as 10.0.2.2 on this port).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Waits until `progress_at` bytes have arrived; panics after `timeout` or if the
    /// connection ended first.
    pub fn wait_progress(&self, timeout: Duration) {
        match self.events.recv_timeout(timeout) {
            Ok(Event::Progress) => {}
            other => panic!(
                "TCP sink on {}: no progress within {timeout:?}: {other:?}",
                self.addr
            ),
        }
    }

    /// Waits for the connection's end; panics after `timeout`.
    pub fn wait_end(&self, timeout: Duration) -> UploadEnd {
        loop {
            match self.events.recv_timeout(timeout) {
                Ok(Event::End(end)) => return end,
                Ok(Event::Progress) => continue,
                Err(e) => panic!("TCP sink on {}: no end within {timeout:?}: {e}", self.addr),
            }
        }
    }
}

fn drain(mut conn: std::net::TcpStream, progress_at: u64, tx: &Sender<Event>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    let mut told = false;
    let end = loop {
        match conn.read(&mut buf) {
            Ok(0) => break UploadEnd::Eof(bytes),
            Ok(n) => bytes += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break UploadEnd::Failed(e.kind(), bytes),
        }
        if !told && bytes >= progress_at {
            told = true;
            let _ = tx.send(Event::Progress);
        }
    };
    let _ = tx.send(Event::End(end));
}

/// Connections a `Backlogged` listener's queue may hold (the sealed netns's somaxconn is the
/// default 4096, so the kernel keeps this many).
const BACKLOG: i32 = 4096;

/// /proc/net/tcp's state codes for ESTABLISHED and SYN_SENT (include/net/tcp_states.h).
const TCP_ESTABLISHED: &str = "01";
const TCP_SYN_SENT: &str = "02";

/// A listener that never accepts, with a queue of `BACKLOG`: the kernel completes connects to
/// it until the queue is full (reset connections stay queued too), and later ones wait in
/// SYN_SENT; either way each is a connection someone holds open toward it.
pub struct Backlogged {
    listener: TcpListener,
}

impl Backlogged {
    /// Listens on 127.0.0.1:0.
    pub fn start() -> Backlogged {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("bind a listener on 127.0.0.1:0: {e}"));
        let backlog = nix::sys::socket::Backlog::new(BACKLOG).expect("a valid backlog");
        nix::sys::socket::listen(&listener.as_fd(), backlog)
            .unwrap_or_else(|e| panic!("listen({BACKLOG}): {e}"));
        Backlogged { listener }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    }

    /// Connections toward its port open now, counted at the connecting end (in this netns:
    /// the helper's host sockets), established or still connecting.
    pub fn connections(&self) -> usize {
        let table = std::fs::read_to_string("/proc/net/tcp")
            .unwrap_or_else(|e| panic!("read /proc/net/tcp: {e}"));
        let port = format!(":{:04X}", self.port());
        table
            .lines()
            .skip(1)
            .filter(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                matches!(fields.as_slice(), [_, _, remote, st, ..]
                    if remote.ends_with(&port) && (*st == TCP_ESTABLISHED || *st == TCP_SYN_SENT))
            })
            .count()
    }
}

/// How often the `UdpSources` thread looks at its stop flag when nothing arrives.
const UDP_POLL: Duration = Duration::from_millis(100);

/// A UDP server that answers nothing and notes when each source address first sent to it.
pub struct UdpSources {
    addr: SocketAddr,
    firsts: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
}

impl UdpSources {
    /// Listens on 127.0.0.1:0.
    pub fn start() -> UdpSources {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("bind a UDP server on 127.0.0.1:0: {e}"));
        let addr = sock.local_addr().expect("a bound socket has an address");
        sock.set_read_timeout(Some(UDP_POLL))
            .expect("SO_RCVTIMEO on a UDP socket");
        let firsts = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, st) = (Arc::clone(&firsts), Arc::clone(&stop));
        thread::spawn(move || {
            let mut seen = HashSet::new();
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                if let Ok((_, from)) = sock.recv_from(&mut buf) {
                    if seen.insert(from) {
                        f.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(Instant::now());
                    }
                }
            }
        });
        UdpSources { addr, firsts, stop }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Distinct sources seen so far.
    pub fn sources(&self) -> usize {
        self.firsts.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The most new sources that first appeared within any `window`.
    pub fn most_new_within(&self, window: Duration) -> usize {
        let firsts = self.firsts.lock().unwrap_or_else(|e| e.into_inner());
        let mut most = 0;
        let mut start = 0;
        for (end, &t) in firsts.iter().enumerate() {
            while firsts
                .get(start)
                .is_some_and(|&s| t.duration_since(s) > window)
            {
                start += 1;
            }
            most = most.max(end + 1 - start);
        }
        most
    }
}

impl Drop for UdpSources {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
