//! rr-probe: the integration tests' hands inside the sandbox (and inside namespaces the tests
//! build). One job per subcommand, reported on stdout and through the exit code, so a test checks
//! bytes and codes rather than a shell's say-so. Every blocking step has a timeout.
//!
//! Subcommands:
//!   tcp-echo ADDR:PORT BYTES   send BYTES of the `pattern` stream, read the echo, compare sha256
//!   udp-echo ADDR:PORT [N]     send N (default 4) distinct datagrams, expect each echoed intact
//!   connect ADDR:PORT          print `connected` (0) or `refused` (3)
//!   hold TOKEN                 print `ready`, then block until stdin reaches EOF (TOKEN only
//!                              marks the command line, so a test can find the process)
//!   trap-signals               print `ready`, wait for one of the signals rootless-run forwards,
//!                              print `caught SIG…`, exit 64 + its number (exit 1 if stdin
//!                              reaches EOF first)
//!   serve-tcp-echo ADDR:PORT   print `listening ADDR:PORT`, echo every connection (printing
//!                              `peer ADDR:PORT` first) until stdin reaches EOF
//!
//! Exit codes: 0 done, 1 failed (message on stderr), 2 usage, 3 connection refused,
//! 4 timed out, 64 + N caught signal N.

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use rr_tests::pattern::{fill, hex, CHUNK, TCP_SEED};
use sha2::{Digest, Sha256};

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_REFUSED: u8 = 3;
const EXIT_TIMEOUT: u8 = 4;
/// `trap-signals` exits with this plus the signal number: below 128, so it cannot be mistaken
/// for a death by signal, and distinct for every forwarded signal.
const EXIT_SIGNAL_BASE: u8 = 64;

/// Bound for connect and for each read or write: liveness only.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Per-datagram wait before `udp-echo` resends it.
const UDP_RETRY_AFTER: Duration = Duration::from_secs(2);
/// Sends per datagram before `udp-echo` gives up.
const UDP_ATTEMPTS: u32 = 5;
/// Datagram sizes `udp-echo` cycles through: tiny, small, one Ethernet MTU's worth, larger
/// than 1500 (needs the 65520 MTU or fragmentation).
const UDP_SIZES: [usize; 4] = [1, 64, 1400, 8192];

/// The signals rootless-run forwards to its child (issue 3, item 2).
const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// How a job ended when it did not succeed.
enum Fail {
    Usage(String),
    Failed(String),
    Refused,
    Timeout(String),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match strs.as_slice() {
        ["tcp-echo", addr, bytes] => tcp_echo(addr, bytes),
        ["udp-echo", addr] => udp_echo(addr, "4"),
        ["udp-echo", addr, count] => udp_echo(addr, count),
        ["connect", addr] => connect(addr),
        ["hold", _token] => hold(),
        ["trap-signals"] => trap_signals(),
        ["serve-tcp-echo", addr] => serve_tcp_echo(addr),
        _ => Err(Fail::Usage(
            "usage: rr-probe tcp-echo|udp-echo|connect|hold|trap-signals|serve-tcp-echo ARGS"
                .to_owned(),
        )),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Fail::Usage(m)) => {
            eprintln!("rr-probe: {m}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Fail::Failed(m)) => {
            eprintln!("rr-probe: {m}");
            ExitCode::from(EXIT_FAILED)
        }
        Err(Fail::Refused) => {
            println!("refused");
            ExitCode::from(EXIT_REFUSED)
        }
        Err(Fail::Timeout(m)) => {
            println!("timeout");
            eprintln!("rr-probe: {m}: timed out");
            ExitCode::from(EXIT_TIMEOUT)
        }
    }
}

fn resolve(addr: &str) -> Result<SocketAddr, Fail> {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Fail::Usage(format!("{addr}: not ADDR:PORT")))
}

/// Maps an I/O error of `what` to refused, timeout or failure.
fn io_fail(what: &str, e: io::Error) -> Fail {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Fail::Refused,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Fail::Timeout(what.to_owned()),
        _ => Fail::Failed(format!("{what}: {e}")),
    }
}

fn connect_tcp(addr: &str) -> Result<TcpStream, Fail> {
    let sa = resolve(addr)?;
    let s = TcpStream::connect_timeout(&sa, IO_TIMEOUT)
        .map_err(|e| io_fail(&format!("connect {addr}"), e))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| Fail::Failed(format!("set timeouts: {e}")))?;
    Ok(s)
}

fn tcp_echo(addr: &str, bytes: &str) -> Result<u8, Fail> {
    let total: u64 = bytes
        .parse()
        .map_err(|_| Fail::Usage(format!("{bytes}: not a byte count")))?;
    let stream = connect_tcp(addr)?;
    let mut writer = stream
        .try_clone()
        .map_err(|e| Fail::Failed(format!("dup socket: {e}")))?;
    // Write and read at once: the echo comes back while we send, and neither side may block
    // the other (that is the backpressure under test).
    let sender = thread::spawn(move || -> Result<String, String> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        while sent < total {
            let n = CHUNK.min((total - sent) as usize);
            fill(TCP_SEED, sent, &mut buf[..n]);
            writer
                .write_all(&buf[..n])
                .map_err(|e| format!("write after {sent} bytes: {e}"))?;
            hasher.update(&buf[..n]);
            sent += n as u64;
        }
        writer
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("shutdown(write): {e}"))?;
        Ok(hex(&hasher.finalize()))
    });
    let mut reader = stream;
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut buf = vec![0u8; CHUNK];
    let read_result = loop {
        match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                hasher.update(&buf[..n]);
                received += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(io_fail(&format!("read after {received} bytes"), e)),
        }
    };
    let sent_hex = match sender.join() {
        Ok(Ok(h)) => h,
        Ok(Err(m)) => return Err(Fail::Failed(m)),
        Err(_) => return Err(Fail::Failed("sender thread panicked".to_owned())),
    };
    read_result?;
    let got_hex = hex(&hasher.finalize());
    println!("sent {total} bytes sha256 {sent_hex}");
    println!("received {received} bytes sha256 {got_hex}");
    if received == total && got_hex == sent_hex {
        Ok(0)
    } else {
        Err(Fail::Failed(format!(
            "echo differs: sent {total} bytes, received {received}"
        )))
    }
}

fn udp_echo(addr: &str, count: &str) -> Result<u8, Fail> {
    let count: usize = count
        .parse()
        .map_err(|_| Fail::Usage(format!("{count}: not a datagram count")))?;
    let sa = resolve(addr)?;
    let sock = UdpSocket::bind(("0.0.0.0", 0)).map_err(|e| Fail::Failed(format!("bind: {e}")))?;
    sock.connect(sa)
        .and_then(|()| sock.set_read_timeout(Some(UDP_RETRY_AFTER)))
        .map_err(|e| Fail::Failed(format!("connect {addr}: {e}")))?;
    let mut reply = vec![0u8; 65536];
    for i in 0..count {
        let size = UDP_SIZES[i % UDP_SIZES.len()];
        let mut payload = vec![0u8; size];
        // The first byte tells datagrams apart, so a late echo of a resend is recognised.
        fill(TCP_SEED ^ i as u64, 0, &mut payload);
        payload[0] = i as u8;
        let mut echoed = false;
        for _ in 0..UDP_ATTEMPTS {
            sock.send(&payload)
                .map_err(|e| io_fail(&format!("send datagram {i}"), e))?;
            match sock.recv(&mut reply) {
                Ok(n) if reply[..n] == payload[..] => {
                    echoed = true;
                    break;
                }
                Ok(n) if n > 0 && usize::from(reply[0]) != i % 256 => continue,
                Ok(n) => {
                    return Err(Fail::Failed(format!(
                        "datagram {i} ({size} bytes) came back altered ({n} bytes)"
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
                Err(e) => return Err(io_fail(&format!("recv datagram {i}"), e)),
            }
        }
        if !echoed {
            return Err(Fail::Timeout(format!(
                "datagram {i} ({size} bytes) not echoed after {UDP_ATTEMPTS} sends"
            )));
        }
    }
    println!("echoed {count} datagrams");
    Ok(0)
}

fn connect(addr: &str) -> Result<u8, Fail> {
    connect_tcp(addr)?;
    println!("connected");
    Ok(0)
}

fn hold() -> Result<u8, Fail> {
    println!("ready");
    let mut sink = Vec::new();
    io::stdin()
        .read_to_end(&mut sink)
        .map_err(|e| Fail::Failed(format!("read stdin: {e}")))?;
    Ok(0)
}

fn trap_signals() -> Result<u8, Fail> {
    let mut set = SigSet::empty();
    // Blocked signals are queued even if an inherited disposition ignores them
    // (kernel/signal.c, sig_ignored), so sigwait sees them either way.
    for sig in FORWARDED {
        set.add(sig);
    }
    set.thread_block()
        .map_err(|e| Fail::Failed(format!("block signals: {e}")))?;
    // Never outlive the test: give up when stdin (held by the test) reaches EOF. The thread
    // inherits the blocked mask, so the signal still goes to sigwait below.
    thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = io::stdin().read_to_end(&mut sink);
        eprintln!("rr-probe: trap-signals: stdin closed before any signal arrived");
        std::process::exit(i32::from(EXIT_FAILED));
    });
    println!("ready");
    let sig = set
        .wait()
        .map_err(|e| Fail::Failed(format!("sigwait: {e}")))?;
    println!("caught {}", sig.as_str());
    Ok(EXIT_SIGNAL_BASE + sig as u8)
}

fn serve_tcp_echo(addr: &str) -> Result<u8, Fail> {
    let sa = resolve(addr)?;
    let listener = TcpListener::bind(sa).map_err(|e| Fail::Failed(format!("bind {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Fail::Failed(format!("getsockname: {e}")))?;
    println!("listening {local}");
    // Live exactly as long as whoever started us keeps stdin open.
    thread::spawn(|| {
        let mut lines = io::stdin().lock();
        let mut buf = String::new();
        while matches!(lines.read_line(&mut buf), Ok(n) if n > 0) {
            buf.clear();
        }
        std::process::exit(0);
    });
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        if let Ok(peer) = conn.peer_addr() {
            println!("peer {peer}");
        }
        thread::spawn(move || {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match conn.read(&mut buf) {
                    Ok(0) => {
                        let _ = conn.shutdown(Shutdown::Write);
                        break;
                    }
                    Ok(n) => {
                        if conn.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        });
    }
    Ok(0)
}
