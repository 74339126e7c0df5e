//! A fake upstream DNS server for the DNS forwarder's tests, on an address of the host's
//! loopback (127.0.0.0/8) the test chooses, UDP and TCP on one port. It answers `ZONE` names
//! with fixed documentation addresses, other names with NXDOMAIN, or (`Silent`) never answers
//! at all; every message it receives is reported on a channel, with whether it was a well-formed
//! query. Threads, no async; it stops when dropped. The tests never use the machine's resolver:
//! this is the only upstream they name.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::dns_wire::{self, RCODE_NOERROR, RCODE_NXDOMAIN};

/// Names under this suffix are answered (`.example` is reserved for documentation, RFC 2606).
pub const ZONE: &str = "rr-test.example";

/// The A answer for every name in `ZONE` (TEST-NET-2, RFC 5737).
pub const ANSWER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);

/// The AAAA answer for every name in `ZONE` (documentation prefix, RFC 3849).
pub const ANSWER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0x5e, 0x53);

/// Bound on one TCP connection's reads: liveness only.
const TCP_IO_TIMEOUT: Duration = Duration::from_secs(60);

/// How the server treats queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer `ZONE` names with `ANSWER_V4` / `ANSWER_V6`, NXDOMAIN otherwise.
    Answer,
    /// Read every query and never reply (an upstream that is down but not refusing).
    Silent,
}

/// Which transport a message came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A UDP datagram.
    Udp,
    /// One length-prefixed message on a TCP connection.
    Tcp,
}

/// One message the server received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// UDP or TCP.
    pub transport: Transport,
    /// Who sent it.
    pub peer: SocketAddr,
    /// The question's name, if the message was a well-formed one-question query.
    pub name: Option<String>,
    /// The raw message (without the TCP length prefix).
    pub bytes: Vec<u8>,
}

/// The running server.
pub struct FakeResolver {
    addr: SocketAddr,
    seen: Receiver<Seen>,
    stop: Arc<AtomicBool>,
}

impl FakeResolver {
    /// Binds UDP and TCP on `ip:port` (port 0: one free port, the same for both). Panics if it
    /// cannot bind.
    pub fn start(ip: IpAddr, port: u16, behaviour: Behaviour) -> FakeResolver {
        let (udp, tcp) = bind_pair(ip, port);
        let addr = udp.local_addr().expect("a bound socket has an address");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, seen) = mpsc::channel();
        {
            let (tx, stop) = (tx.clone(), Arc::clone(&stop));
            thread::spawn(move || serve_udp(udp, behaviour, tx, stop));
        }
        {
            let stop = Arc::clone(&stop);
            thread::spawn(move || serve_tcp(tcp, behaviour, tx, stop));
        }
        FakeResolver { addr, seen, stop }
    }

    /// Address and port (the same for UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every message received so far, without waiting.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.try_iter().collect()
    }
}

impl Drop for FakeResolver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake both loops so they see the flag.
        if let Ok(s) = UdpSocket::bind(SocketAddr::new(self.addr.ip(), 0)) {
            let _ = s.send_to(b"", self.addr);
        }
        let _ = TcpStream::connect(self.addr);
    }
}

fn bind_pair(ip: IpAddr, port: u16) -> (UdpSocket, TcpListener) {
    // With port 0, UDP picks and TCP follows; a port TCP cannot have is retried a few times.
    for _ in 0..16 {
        let udp = UdpSocket::bind(SocketAddr::new(ip, port))
            .unwrap_or_else(|e| panic!("bind the fake resolver's UDP on {ip}:{port}: {e}"));
        let chosen = udp.local_addr().expect("bound").port();
        match TcpListener::bind(SocketAddr::new(ip, chosen)) {
            Ok(tcp) => return (udp, tcp),
            Err(e) if port != 0 => panic!("bind the fake resolver's TCP on {ip}:{port}: {e}"),
            Err(_) => continue,
        }
    }
    panic!("no port on {ip} free for both UDP and TCP");
}

/// The reply to `msg` under `behaviour`, or None (silent, or not a query we can answer).
fn answer(msg: &[u8], behaviour: Behaviour) -> Option<Vec<u8>> {
    if behaviour == Behaviour::Silent {
        return None;
    }
    let (_, q) = dns_wire::parse_query(msg).ok()?;
    let in_zone = q.name == ZONE || q.name.ends_with(&format!(".{ZONE}"));
    let (rcode, addrs) = if in_zone {
        (
            RCODE_NOERROR,
            vec![IpAddr::V4(ANSWER_V4), IpAddr::V6(ANSWER_V6)],
        )
    } else {
        (RCODE_NXDOMAIN, Vec::new())
    };
    dns_wire::reply(msg, rcode, &addrs).ok()
}

fn record(tx: &Sender<Seen>, transport: Transport, peer: SocketAddr, msg: &[u8]) {
    let name = dns_wire::parse_query(msg).ok().map(|(_, q)| q.name);
    let _ = tx.send(Seen {
        transport,
        peer,
        name,
        bytes: msg.to_vec(),
    });
}

fn serve_udp(sock: UdpSocket, behaviour: Behaviour, tx: Sender<Seen>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 65536];
    while let Ok((n, peer)) = sock.recv_from(&mut buf) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Record before replying: once the sender has its answer, the record exists.
        record(&tx, Transport::Udp, peer, &buf[..n]);
        if let Some(reply) = answer(&buf[..n], behaviour) {
            let _ = sock.send_to(&reply, peer);
        }
    }
}

fn serve_tcp(listener: TcpListener, behaviour: Behaviour, tx: Sender<Seen>, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(conn) = conn else { continue };
        let tx = tx.clone();
        thread::spawn(move || {
            let _ = serve_tcp_conn(conn, behaviour, &tx);
        });
    }
}

/// Reads length-prefixed messages until EOF, answering each (a silent server holds the
/// connection open until the peer gives up).
fn serve_tcp_conn(mut conn: TcpStream, behaviour: Behaviour, tx: &Sender<Seen>) -> io::Result<()> {
    conn.set_read_timeout(Some(TCP_IO_TIMEOUT))?;
    let peer = conn.peer_addr()?;
    loop {
        let mut len = [0u8; 2];
        conn.read_exact(&mut len)?;
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        conn.read_exact(&mut msg)?;
        record(tx, Transport::Tcp, peer, &msg);
        if let Some(reply) = answer(&msg, behaviour) {
            conn.write_all(&dns_wire::tcp_frame(&reply))?;
        }
    }
}
