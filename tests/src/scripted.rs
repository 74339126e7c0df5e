//! Host-side TCP servers for the TCP path tests (`tests/tests/tcp_paths.rs`), each with one
//! scripted behaviour toward one sandbox connection: fill the path before the sandbox reads,
//! stop reading until the sandbox's writes block, reply after EOF, shut down writing first,
//! take a RST, send one. They listen on 127.0.0.1 port 0 (the sandbox dials 10.0.2.2), serve
//! one connection (two where the script has a control channel), and report what they saw on a
//! channel the test waits on. The bytes they send are the `pattern` stream of `HOST_SEED`.
//! Threads, no async; every socket wait is bounded by `IO_TIMEOUT`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};
use sha2::{Digest, Sha256};

use crate::pattern::{fill, hex, CHUNK, HOST_SEED};

/// Bound for each accept-side read or write: liveness only.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// What the server does with its connection.
#[derive(Debug, Clone, Copy)]
pub enum Script {
    /// DATA and CTRL: write `bytes` to DATA without blocking until a write would block (the
    /// sandbox is not reading, so its window and every buffer on the way are full), send one
    /// byte on CTRL, write the rest blocking, shut down writing, read DATA to EOF.
    FillThenGo {
        /// Bytes to send; more than the whole path can hold.
        bytes: u64,
    },
    /// DATA and CTRL: read nothing from DATA until CTRL says `blocked B` or `unblocked B`,
    /// then read DATA to EOF and close.
    DrainAfterBlocked,
    /// Read to EOF, then write `got N SHA256\n` and `bytes` more, and close.
    ReplyAfterEof {
        /// Body bytes after the reply line.
        bytes: u64,
    },
    /// DATA and CTRL: write `GREETING` to DATA, shut down writing, read DATA to EOF, then
    /// tell CTRL `read N SHA256 END` (see `Report::summary`).
    ShutWriteFirst,
    /// DATA and CTRL: write `ready\n` to DATA, read DATA until the connection ends (EOF or an
    /// error), then tell CTRL as `ShutWriteFirst` does.
    AwaitReset,
    /// Read one byte, then close with SO_LINGER 0, which sends a RST.
    ResetAfterByte,
}

/// What `ShutWriteFirst` writes before it shuts down its write side.
pub const GREETING: &[u8] = b"hello, then EOF\n";

/// What the server saw on its connection.
#[derive(Debug, Clone)]
pub struct Report {
    /// Bytes read from the sandbox on DATA, and their sha256 (hex).
    pub received: u64,
    /// sha256 (hex) of the bytes read.
    pub received_sha256: String,
    /// How reading DATA ended: `Ok` at EOF, else the error's kind.
    pub read_end: Result<(), io::ErrorKind>,
    /// Bytes written to the sandbox on DATA.
    pub sent: u64,
    /// `FillThenGo`: bytes written when a write first would block (None: it never did).
    /// `DrainAfterBlocked`: the count the sandbox reported on CTRL.
    pub blocked_at: Option<u64>,
    /// `FillThenGo`: the `tx_queue:rx_queue` (hex, /proc/net/tcp) of both ends of the host side
    /// of the path when the server blocked: its own socket's, then the netstack's.
    pub queues_at_block: Vec<String>,
    /// The line read from CTRL (`DrainAfterBlocked`), without its newline.
    pub ctrl_line: String,
    /// A step that failed other than by how reading ended.
    pub error: Option<String>,
}

/// A one-connection server running a `Script`.
pub struct Scripted {
    data_port: u16,
    ctrl_port: u16,
    reports: Receiver<Report>,
}

impl Scripted {
    /// Listens on 127.0.0.1:0 (and a second port for CTRL) and runs `script` on the first
    /// connection.
    pub fn start(script: Script) -> Scripted {
        let data = listen();
        let ctrl = listen();
        let data_port = port_of(&data);
        let ctrl_port = port_of(&ctrl);
        let (tx, reports) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(serve(script, &data, &ctrl));
        });
        Scripted {
            data_port,
            ctrl_port,
            reports,
        }
    }

    /// Port of DATA (the sandbox connects to 10.0.2.2 on it).
    pub fn port(&self) -> u16 {
        self.data_port
    }

    /// Port of CTRL, for scripts that use it; the sandbox connects to it after DATA.
    pub fn ctrl_port(&self) -> u16 {
        self.ctrl_port
    }

    /// Waits for the report; panics after `timeout`.
    pub fn report(&self, timeout: Duration) -> Report {
        self.reports.recv_timeout(timeout).unwrap_or_else(|e| {
            panic!(
                "scripted server on 127.0.0.1:{}: no report within {timeout:?}: {e}",
                self.data_port
            )
        })
    }
}

fn listen() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("bind a TCP server on 127.0.0.1:0: {e}"))
}

fn port_of(l: &TcpListener) -> u16 {
    l.local_addr()
        .expect("a bound listener has an address")
        .port()
}

fn accept(l: &TcpListener) -> io::Result<TcpStream> {
    let (s, _) = l.accept()?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

impl Report {
    fn new() -> Report {
        Report {
            received: 0,
            received_sha256: hex(&Sha256::digest(b"")),
            read_end: Ok(()),
            sent: 0,
            blocked_at: None,
            ctrl_line: String::new(),
            queues_at_block: Vec::new(),
            error: None,
        }
    }

    /// `read N SHA256 END` with END `eof` or the error kind: what the sandbox waits for on
    /// CTRL, so that it outlives its connection until the host has seen the end of it (when
    /// the sandboxed program exits, rootless-run and its netstack go with it).
    pub fn summary(&self) -> String {
        let end = match self.read_end {
            Ok(()) => "eof".to_owned(),
            Err(kind) => format!("{kind:?}"),
        };
        format!("read {} {} {end}", self.received, self.received_sha256)
    }

    /// Reads `s` until EOF or an error, recording bytes, digest and how it ended.
    fn read_all(&mut self, s: &mut TcpStream) {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        self.read_end = loop {
            match s.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    self.received += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e.kind()),
            }
        };
        self.received_sha256 = hex(&hasher.finalize());
    }

    /// Writes bytes `self.sent..total` of the HOST_SEED stream, blocking.
    fn write_until(&mut self, s: &mut TcpStream, total: u64) -> io::Result<()> {
        let mut buf = vec![0u8; CHUNK];
        while self.sent < total {
            let n = CHUNK.min((total - self.sent) as usize);
            fill(HOST_SEED, self.sent, &mut buf[..n]);
            s.write_all(&buf[..n])?;
            self.sent += n as u64;
        }
        Ok(())
    }

    /// Writes without blocking until a write would block or `total` is sent.
    fn write_until_blocked(&mut self, s: &mut TcpStream, total: u64) -> io::Result<()> {
        s.set_nonblocking(true)?;
        let mut buf = vec![0u8; CHUNK];
        while self.sent < total {
            let n = CHUNK.min((total - self.sent) as usize);
            fill(HOST_SEED, self.sent, &mut buf[..n]);
            match s.write(&buf[..n]) {
                Ok(k) => self.sent += k as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked_at = Some(self.sent);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        s.set_nonblocking(false)
    }
}

fn serve(script: Script, data: &TcpListener, ctrl: &TcpListener) -> Report {
    let mut r = Report::new();
    if let Err(e) = run_script(script, data, ctrl, &mut r) {
        r.error = Some(format!("{script:?}: {e}"));
    }
    r
}

fn run_script(
    script: Script,
    data: &TcpListener,
    ctrl: &TcpListener,
    r: &mut Report,
) -> io::Result<()> {
    let mut d = accept(data)?;
    match script {
        Script::FillThenGo { bytes } => {
            let mut c = accept(ctrl)?;
            r.write_until_blocked(&mut d, bytes)?;
            r.queues_at_block = tcp_queues(&d);
            c.write_all(b"g")?;
            r.write_until(&mut d, bytes)?;
            d.shutdown(Shutdown::Write)?;
            r.read_all(&mut d);
        }
        Script::DrainAfterBlocked => {
            let c = accept(ctrl)?;
            BufReader::new(c).read_line(&mut r.ctrl_line)?;
            r.ctrl_line = r.ctrl_line.trim_end().to_owned();
            r.blocked_at = r
                .ctrl_line
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok());
            r.read_all(&mut d);
        }
        Script::ReplyAfterEof { bytes } => {
            r.read_all(&mut d);
            if r.read_end.is_ok() {
                d.write_all(format!("got {} {}\n", r.received, r.received_sha256).as_bytes())?;
                r.write_until(&mut d, bytes)?;
            }
        }
        Script::ShutWriteFirst => {
            let mut c = accept(ctrl)?;
            d.write_all(GREETING)?;
            d.shutdown(Shutdown::Write)?;
            r.read_all(&mut d);
            c.write_all(format!("{}\n", r.summary()).as_bytes())?;
        }
        Script::AwaitReset => {
            let mut c = accept(ctrl)?;
            d.write_all(b"ready\n")?;
            r.read_all(&mut d);
            c.write_all(format!("{}\n", r.summary()).as_bytes())?;
        }
        Script::ResetAfterByte => {
            let mut byte = [0u8; 1];
            d.read_exact(&mut byte)?;
            r.received = 1;
            let linger = nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            setsockopt(&d, sockopt::Linger, &linger).map_err(io::Error::from)?;
            drop(d);
        }
    }
    Ok(())
}

/// `tx_queue:rx_queue` of `s` and of its peer, from /proc/net/tcp of this network namespace
/// (the netstack's host sockets live here too); for failure messages.
fn tcp_queues(s: &TcpStream) -> Vec<String> {
    let (Ok(local), Ok(peer)) = (s.local_addr(), s.peer_addr()) else {
        return Vec::new();
    };
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let hex_addr = |a: std::net::SocketAddr| match a {
        std::net::SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        std::net::SocketAddr::V6(_) => String::new(),
    };
    let (l, p) = (hex_addr(local), hex_addr(peer));
    let mut out = Vec::new();
    for (a, b, who) in [(&l, &p, "server"), (&p, &l, "netstack")] {
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 4 && f[1] == a.as_str() && f[2] == b.as_str() {
                out.push(format!("{who} {}", f[4]));
            }
        }
    }
    out
}
