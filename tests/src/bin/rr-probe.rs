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
//! TCP path jobs (tests/tests/tcp_paths.rs); DATA and CTRL are two connections to the host, the
//! host's bytes are the `pattern` stream of HOST_SEED, the probe's that of TCP_SEED:
//!   recv-after-go DATA CTRL    connect both, read nothing from DATA until one byte arrives on
//!                              CTRL (print `go`), then read DATA to EOF:
//!                              `received N bytes sha256 H`
//!   send-until-blocked DATA CTRL BYTES
//!                              write BYTES to DATA without blocking until a write would block,
//!                              tell CTRL `blocked B\n` (or `unblocked B\n` if it never did),
//!                              write the rest, shut down writing, read DATA to EOF:
//!                              `blocked at B` or `never blocked`, `sent N bytes sha256 H`
//!   half-close ADDR BYTES      write BYTES, shut down writing, read the reply to EOF: its first
//!                              line as `reply LINE`, the rest as `body N bytes sha256 H`
//!   send-after-eof DATA CTRL BYTES
//!                              read DATA to EOF (`eof after N bytes`), then write BYTES and
//!                              shut down writing: `sent N bytes sha256 H`; then print the
//!                              host's line from CTRL as `host LINE`
//!   reset-close DATA CTRL      wait for a line on DATA, then close it with SO_LINGER 0 (a
//!                              RST): `reset sent`; then print the host's line from CTRL as
//!                              `host LINE`
//!                              (These two wait for the host's word because rootless-run and its
//!                              netstack exit with the probe, and a frame not yet forwarded
//!                              would go with them.)
//!   expect-reset ADDR          write one byte, read until the connection ends:
//!                              `reset after N bytes` (0) or `eof after N bytes` (1)
//!   tcp-counters NAME...       `NAME=VALUE` per counter from /proc/net/snmp (Tcp:) and
//!                              /proc/net/netstat (TcpExt:), this network namespace's
//!
//! Forwarding, DNS and leak jobs (tests/tests/forward.rs, api_socket.rs, dns.rs,
//! addressing.rs):
//!   serve SPEC...              SPEC is tcp:ADDR:PORT or udp:ADDR:PORT: bind each, echo, and
//!                              report every caller (`peer_echo`); until stdin reaches EOF
//!   poke TARGET...             TARGET is tcp:ADDR:PORT or udp:ADDR:PORT: all at once, a TCP
//!                              connect (bounded by POKE_TIMEOUT) or one datagram each; prints
//!                              `tcp ADDR:PORT connected|refused|unreachable|timeout|error E`
//!                              or `udp ADDR:PORT sent|error E`, in argument order
//!   craft IFNAME GW4 SRC4 SRC6 TARGET...
//!                              learn GW4's MAC by ARP on IFNAME (`gateway MAC`), then write
//!                              one hand-built TCP SYN or UDP datagram per TARGET from SRC4 or
//!                              SRC6 to that MAC (`sent TARGET`), whatever its destination
//!   sniff PREFIX...            print `ready`, then `seen PROTO SRC -> DST ...` for every IP
//!                              packet to one of the prefixes on any interface; until stdin EOF
//!   dns-query SERVER udp|tcp NAME [a|aaaa] [TIMEOUT_S]
//!                              one query: `rcode N`, `answer ADDR` per A/AAAA, `elapsed_ms T`
//!                              (no reply: `timeout`, exit 4; refused: `refused`, exit 3)
//!   dns-garbage SERVER udp|tcp malformed queries over UDP (`sent N udp`) or TCP, each on its
//!                              own connection (`sent N tcp`)
//!
//! Exit codes: 0 done, 1 failed (message on stderr), 2 usage, 3 connection refused,
//! 4 timed out, 64 + N caught signal N.

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::signal::{SigSet, Signal};
use nix::{setsockopt_impl, sockopt_impl};
use rr_tests::dns_wire::{self, TYPE_A, TYPE_AAAA};
use rr_tests::frames::{self, Link, Prefix, Proto, Target};
use rr_tests::pattern::{fill, hex, CHUNK, HOST_SEED, TCP_SEED};
use rr_tests::peer_echo::{self, Listen};
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

/// Bound for each `poke` connect: long enough for the sandbox's ARP to give up on a neighbour
/// that never answers (3 probes a second apart, arp(7) mcast_solicit), short for a test.
const POKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound for a `dns-query` reply, in seconds.
const DNS_TIMEOUT_S: &str = "30";
/// `craft`: ARP requests are resent this often, until ARP_TIMEOUT.
const ARP_RETRY: Duration = Duration::from_secs(1);
const ARP_TIMEOUT: Duration = Duration::from_secs(10);
/// `craft`: source port of the first crafted packet (the next ones count up).
const CRAFT_SPORT: u16 = 40000;
/// The ID of every `dns-query` query.
const DNS_ID: u16 = 0x7272;

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

// TCP_QUICKACK, which nix lacks: setting it sends a delayed ACK at once (tcp(7)).
sockopt_impl!(
    /// TCP_QUICKACK
    TcpQuickAck,
    SetOnly,
    libc::IPPROTO_TCP,
    libc::TCP_QUICKACK,
    bool
);

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
        ["recv-after-go", data, ctrl] => recv_after_go(data, ctrl),
        ["send-until-blocked", data, ctrl, bytes] => send_until_blocked(data, ctrl, bytes),
        ["half-close", addr, bytes] => half_close(addr, bytes),
        ["send-after-eof", data, ctrl, bytes] => send_after_eof(data, ctrl, bytes),
        ["reset-close", data, ctrl] => reset_close(data, ctrl),
        ["expect-reset", addr] => expect_reset(addr),
        ["tcp-counters", names @ ..] if !names.is_empty() => tcp_counters(names),
        ["serve", specs @ ..] if !specs.is_empty() => serve(specs),
        ["poke", targets @ ..] if !targets.is_empty() => poke(targets),
        ["craft", ifname, gw, src4, src6, targets @ ..] if !targets.is_empty() => {
            craft(ifname, gw, src4, src6, targets)
        }
        ["sniff", prefixes @ ..] if !prefixes.is_empty() => sniff(prefixes),
        ["dns-query", server, proto, name] => dns_query(server, proto, name, "a", DNS_TIMEOUT_S),
        ["dns-query", server, proto, name, qtype] => {
            dns_query(server, proto, name, qtype, DNS_TIMEOUT_S)
        }
        ["dns-query", server, proto, name, qtype, secs] => {
            dns_query(server, proto, name, qtype, secs)
        }
        ["dns-garbage", server, proto] => dns_garbage(server, proto),
        _ => Err(Fail::Usage(
            "usage: rr-probe tcp-echo|udp-echo|connect|hold|trap-signals|serve-tcp-echo|\
             recv-after-go|send-until-blocked|half-close|send-after-eof|reset-close|\
             expect-reset|tcp-counters|serve|poke|craft|sniff|dns-query|dns-garbage ARGS"
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

fn parse_bytes(bytes: &str) -> Result<u64, Fail> {
    bytes
        .parse()
        .map_err(|_| Fail::Usage(format!("{bytes}: not a byte count")))
}

/// Reads `stream` to EOF: (bytes, sha256 hex). `check` names the stream whose bytes must come
/// (None: anything goes); the first byte that differs fails the job, with its offset.
fn read_to_eof(stream: &mut TcpStream, check: Option<u64>) -> Result<(u64, String), Fail> {
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut buf = vec![0u8; CHUNK];
    let mut want = vec![0u8; CHUNK];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok((received, hex(&hasher.finalize()))),
            Ok(n) => {
                if let Some(seed) = check {
                    fill(seed, received, &mut want[..n]);
                    if buf[..n] != want[..n] {
                        let i = (0..n).find(|&i| buf[i] != want[i]).unwrap_or(0);
                        return Err(Fail::Failed(format!(
                            "byte {} differs from the stream sent",
                            received + i as u64
                        )));
                    }
                }
                hasher.update(&buf[..n]);
                received += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_fail(&format!("read after {received} bytes"), e)),
        }
    }
}

/// Writes bytes `from..total` of the TCP_SEED stream, hashing them into `hasher`.
fn write_pattern(
    stream: &mut TcpStream,
    from: u64,
    total: u64,
    hasher: &mut Sha256,
) -> Result<(), Fail> {
    let mut buf = vec![0u8; CHUNK];
    let mut sent = from;
    while sent < total {
        let n = CHUNK.min((total - sent) as usize);
        fill(TCP_SEED, sent, &mut buf[..n]);
        stream
            .write_all(&buf[..n])
            .map_err(|e| io_fail(&format!("write after {sent} bytes"), e))?;
        hasher.update(&buf[..n]);
        sent += n as u64;
    }
    Ok(())
}

fn recv_after_go(data: &str, ctrl: &str) -> Result<u8, Fail> {
    let mut data = connect_tcp(data)?;
    let mut ctrl = connect_tcp(ctrl)?;
    let mut go = [0u8; 1];
    ctrl.read_exact(&mut go)
        .map_err(|e| io_fail("read the go byte on CTRL", e))?;
    // An ACK the sandbox's kernel still delays goes out now, with the window as it stands: a
    // path that filled the window exactly has then advertised zero, one that stalled with the
    // window open has not. Then the sandbox's own count of zero windows, before it reads.
    nix::sys::socket::setsockopt(&data, TcpQuickAck, &true)
        .map_err(|e| Fail::Failed(format!("TCP_QUICKACK: {e}")))?;
    let at_go = counters(&[
        "TCPWantZeroWindowAdv",
        "TCPToZeroWindowAdv",
        "TCPZeroWindowDrop",
        "TCPRcvQDrop",
        "PruneCalled",
        "TCPRcvCollapsed",
    ])?;
    let at_go: Vec<String> = at_go.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("go queues={} {}", tcp_queues(&data), at_go.join(" "));
    let (n, sha) = read_to_eof(&mut data, Some(HOST_SEED))?;
    println!("received {n} bytes sha256 {sha}");
    Ok(0)
}

fn send_until_blocked(data: &str, ctrl: &str, bytes: &str) -> Result<u8, Fail> {
    let total = parse_bytes(bytes)?;
    let mut data = connect_tcp(data)?;
    let mut ctrl = connect_tcp(ctrl)?;
    data.set_nonblocking(true)
        .map_err(|e| Fail::Failed(format!("O_NONBLOCK: {e}")))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    let mut blocked = false;
    while sent < total {
        let n = CHUNK.min((total - sent) as usize);
        fill(TCP_SEED, sent, &mut buf[..n]);
        match data.write(&buf[..n]) {
            Ok(k) => {
                hasher.update(&buf[..k]);
                sent += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                blocked = true;
                break;
            }
            Err(e) => return Err(io_fail(&format!("write after {sent} bytes"), e)),
        }
    }
    let word = if blocked { "blocked" } else { "unblocked" };
    ctrl.write_all(format!("{word} {sent}\n").as_bytes())
        .map_err(|e| io_fail("write to CTRL", e))?;
    if blocked {
        println!("blocked at {sent}");
    } else {
        println!("never blocked");
    }
    data.set_nonblocking(false)
        .map_err(|e| Fail::Failed(format!("clear O_NONBLOCK: {e}")))?;
    write_pattern(&mut data, sent, total, &mut hasher)?;
    data.shutdown(Shutdown::Write)
        .map_err(|e| Fail::Failed(format!("shutdown(write): {e}")))?;
    println!("sent {total} bytes sha256 {}", hex(&hasher.finalize()));
    let (n, _) = read_to_eof(&mut data, None)?;
    if n != 0 {
        return Err(Fail::Failed(format!("the host sent {n} unexpected bytes")));
    }
    Ok(0)
}

fn half_close(addr: &str, bytes: &str) -> Result<u8, Fail> {
    let total = parse_bytes(bytes)?;
    let mut stream = connect_tcp(addr)?;
    let mut hasher = Sha256::new();
    write_pattern(&mut stream, 0, total, &mut hasher)?;
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| Fail::Failed(format!("shutdown(write): {e}")))?;
    println!("sent {total} bytes sha256 {}", hex(&hasher.finalize()));
    // The reply's first line, byte by byte so that nothing of the body is read ahead.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return Err(Fail::Failed("EOF before the reply line".to_owned())),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_fail("read the reply line", e)),
        }
    }
    println!("reply {}", String::from_utf8_lossy(&line));
    let (n, sha) = read_to_eof(&mut stream, Some(HOST_SEED))?;
    println!("body {n} bytes sha256 {sha}");
    Ok(0)
}

fn send_after_eof(data: &str, ctrl: &str, bytes: &str) -> Result<u8, Fail> {
    let total = parse_bytes(bytes)?;
    let mut stream = connect_tcp(data)?;
    let ctrl = connect_tcp(ctrl)?;
    let (n, _) = read_to_eof(&mut stream, None)?;
    println!("eof after {n} bytes");
    let mut hasher = Sha256::new();
    write_pattern(&mut stream, 0, total, &mut hasher)?;
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| Fail::Failed(format!("shutdown(write): {e}")))?;
    println!("sent {total} bytes sha256 {}", hex(&hasher.finalize()));
    print_host_line(ctrl)
}

/// Prints the host's line from CTRL as `host LINE`.
fn print_host_line(ctrl: TcpStream) -> Result<u8, Fail> {
    let mut line = String::new();
    io::BufReader::new(ctrl)
        .read_line(&mut line)
        .map_err(|e| io_fail("read the host's line on CTRL", e))?;
    println!("host {}", line.trim_end());
    Ok(0)
}

fn reset_close(data: &str, ctrl: &str) -> Result<u8, Fail> {
    let stream = connect_tcp(data)?;
    let ctrl = connect_tcp(ctrl)?;
    let mut line = String::new();
    io::BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| io_fail("read the host's line", e))?;
    if line.is_empty() {
        return Err(Fail::Failed("EOF before the host's line".to_owned()));
    }
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::Linger, &linger)
        .map_err(|e| Fail::Failed(format!("SO_LINGER 0: {e}")))?;
    drop(stream);
    println!("reset sent");
    print_host_line(ctrl)
}

fn expect_reset(addr: &str) -> Result<u8, Fail> {
    let mut stream = connect_tcp(addr)?;
    stream
        .write_all(b"x")
        .map_err(|e| io_fail("write one byte", e))?;
    let mut received = 0u64;
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                println!("eof after {received} bytes");
                return Ok(EXIT_FAILED);
            }
            Ok(n) => received += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                println!("reset after {received} bytes");
                return Ok(0);
            }
            Err(e) => return Err(io_fail(&format!("read after {received} bytes"), e)),
        }
    }
}

fn tcp_counters(names: &[&str]) -> Result<u8, Fail> {
    for name in names {
        let [(name, value)] = counters(&[name])?;
        println!("{name}={value}");
    }
    Ok(0)
}

/// `N` counters by name from `Tcp:` and `TcpExt:` of this network namespace (in each file a
/// header line, then a values line).
fn counters<const N: usize>(names: &[&str; N]) -> Result<[(String, u64); N], Fail> {
    let mut counters = Vec::new();
    for (file, prefix) in [("/proc/net/snmp", "Tcp:"), ("/proc/net/netstat", "TcpExt:")] {
        let text =
            std::fs::read_to_string(file).map_err(|e| Fail::Failed(format!("read {file}: {e}")))?;
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with(prefix)).collect();
        if let [header, values, ..] = rows.as_slice() {
            counters.extend(
                header
                    .split_whitespace()
                    .zip(values.split_whitespace())
                    .skip(1)
                    .map(|(k, v)| (k.to_owned(), v.to_owned())),
            );
        }
    }
    let mut out: [(String, u64); N] = std::array::from_fn(|_| (String::new(), 0));
    for (slot, name) in out.iter_mut().zip(names) {
        let value = counters
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| Fail::Failed(format!("no TCP counter {name}")))?;
        *slot = ((*name).to_owned(), value);
    }
    Ok(out)
}

/// `tx_queue:rx_queue` (hex) of `s` from /proc/net/tcp of this network namespace.
fn tcp_queues(s: &TcpStream) -> String {
    let Ok(SocketAddr::V4(local)) = s.local_addr() else {
        return "?".to_owned();
    };
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(local.ip().octets()),
        local.port()
    );
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 4 && f[1] == want)
        .map_or_else(|| "?".to_owned(), |f| f[4].to_owned())
}

/// Exits the process when stdin reaches EOF: the test that started us decides our lifetime.
fn exit_at_stdin_eof() {
    thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
}

fn parse_all<T: std::str::FromStr<Err = String>>(args: &[&str]) -> Result<Vec<T>, Fail> {
    args.iter()
        .map(|a| a.parse::<T>().map_err(Fail::Usage))
        .collect()
}

fn serve(specs: &[&str]) -> Result<u8, Fail> {
    let specs: Vec<Listen> = parse_all(specs)?;
    exit_at_stdin_eof();
    peer_echo::serve(&specs).map_err(|e| Fail::Failed(e.to_string()))?;
    // The sockets are served on their own threads; this one waits for stdin's EOF.
    loop {
        thread::park();
    }
}

fn poke(targets: &[&str]) -> Result<u8, Fail> {
    let targets: Vec<Target> = parse_all(targets)?;
    let handles: Vec<_> = targets
        .into_iter()
        .map(|t| thread::spawn(move || format!("{} {}", t, poke_one(t))))
        .collect();
    for h in handles {
        let line = h
            .join()
            .map_err(|_| Fail::Failed("a poke thread panicked".to_owned()))?;
        // `tcp:ADDR:PORT outcome` reads better as `tcp ADDR:PORT outcome`.
        println!("{}", line.replacen(':', " ", 1));
    }
    Ok(0)
}

fn poke_one(t: Target) -> String {
    match t.proto {
        Proto::Tcp => match TcpStream::connect_timeout(&t.dst, POKE_TIMEOUT) {
            Ok(_) => "connected".to_owned(),
            Err(e) => match e.kind() {
                io::ErrorKind::ConnectionRefused => "refused".to_owned(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timeout".to_owned(),
                io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                    "unreachable".to_owned()
                }
                _ => format!("error {e}"),
            },
        },
        Proto::Udp => {
            let any: SocketAddr = if t.dst.is_ipv4() {
                "0.0.0.0:0".parse().expect("a literal address")
            } else {
                "[::]:0".parse().expect("a literal address")
            };
            let sent = UdpSocket::bind(any)
                .and_then(|s| s.set_broadcast(t.dst.is_ipv4()).map(|()| s))
                .and_then(|s| s.send_to(frames::BAIT_PAYLOAD, t.dst));
            match sent {
                Ok(_) => "sent".to_owned(),
                Err(e) => format!("error {e}"),
            }
        }
    }
}

fn craft(ifname: &str, gw: &str, src4: &str, src6: &str, targets: &[&str]) -> Result<u8, Fail> {
    let bad = |what: &str, v: &str| Fail::Usage(format!("{v}: not an {what} address"));
    let gw: std::net::Ipv4Addr = gw.parse().map_err(|_| bad("IPv4", gw))?;
    let src4: std::net::IpAddr = src4.parse().map_err(|_| bad("IPv4", src4))?;
    let src6: std::net::IpAddr = src6.parse().map_err(|_| bad("IPv6", src6))?;
    let std::net::IpAddr::V4(arp_src) = src4 else {
        return Err(bad("IPv4", &src4.to_string()));
    };
    let targets: Vec<Target> = parse_all(targets)?;
    let link = Link::open(ifname).map_err(|e| Fail::Failed(e.to_string()))?;
    let gw_mac = link
        .resolve(arp_src, gw, ARP_RETRY, ARP_TIMEOUT)
        .map_err(|e| io_fail(&format!("ARP for {gw} on {ifname}"), e))?;
    println!("gateway {gw_mac}");
    for (i, t) in targets.into_iter().enumerate() {
        let src = if t.dst.is_ipv4() { src4 } else { src6 };
        let sport = CRAFT_SPORT + i as u16;
        let frame = frames::craft(link.mac(), gw_mac, src, sport, t).map_err(Fail::Usage)?;
        link.send(&frame).map_err(|e| Fail::Failed(e.to_string()))?;
        println!("sent {t}");
    }
    Ok(0)
}

fn sniff(prefixes: &[&str]) -> Result<u8, Fail> {
    let prefixes: Vec<Prefix> = parse_all(prefixes)?;
    exit_at_stdin_eof();
    // `ready` comes once the socket is open: nothing sent after it can be missed.
    frames::sniff(
        &prefixes,
        || println!("ready"),
        |seen| println!("seen {seen}"),
    )
    .map_err(|e| Fail::Failed(e.to_string()))?;
    Ok(0)
}

fn dns_query(server: &str, proto: &str, name: &str, qtype: &str, secs: &str) -> Result<u8, Fail> {
    let sa = resolve(server)?;
    let qtype = match qtype {
        "a" => TYPE_A,
        "aaaa" => TYPE_AAAA,
        _ => return Err(Fail::Usage(format!("{qtype}: not a or aaaa"))),
    };
    let timeout = Duration::from_secs(
        secs.parse()
            .map_err(|_| Fail::Usage(format!("{secs}: not a number of seconds")))?,
    );
    let query = dns_wire::query(DNS_ID, name, qtype);
    let start = Instant::now();
    let reply = match proto {
        "udp" => dns_over_udp(sa, &query, timeout)?,
        "tcp" => dns_over_tcp(sa, &query, timeout)?,
        _ => return Err(Fail::Usage(format!("{proto}: not udp or tcp"))),
    };
    let elapsed = start.elapsed();
    let parsed = dns_wire::parse_reply(&reply)
        .map_err(|e| Fail::Failed(format!("a malformed reply ({e}): {reply:02x?}")))?;
    if parsed.header.id != DNS_ID {
        return Err(Fail::Failed(format!(
            "the reply's id {:#06x} is not the query's",
            parsed.header.id
        )));
    }
    println!("rcode {}", parsed.header.rcode());
    for a in parsed.addrs {
        println!("answer {a}");
    }
    println!("elapsed_ms {}", elapsed.as_millis());
    Ok(0)
}

fn dns_over_udp(server: SocketAddr, query: &[u8], timeout: Duration) -> Result<Vec<u8>, Fail> {
    let any: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("a literal address")
    } else {
        "[::]:0".parse().expect("a literal address")
    };
    let sock = UdpSocket::bind(any).map_err(|e| Fail::Failed(format!("bind: {e}")))?;
    sock.connect(server)
        .and_then(|()| sock.send(query))
        .map_err(|e| io_fail(&format!("send the query to {server}"), e))?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Fail::Timeout(format!("no DNS reply from {server}")));
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| Fail::Failed(format!("SO_RCVTIMEO: {e}")))?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                // Anything but a reply to our query (a stray datagram) is passed over.
                if dns_wire::Header::parse(&buf[..n]).is_ok_and(|h| h.id == DNS_ID) {
                    return Ok(buf[..n].to_vec());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_fail(&format!("no DNS reply from {server}"), e)),
        }
    }
}

fn dns_over_tcp(server: SocketAddr, query: &[u8], timeout: Duration) -> Result<Vec<u8>, Fail> {
    let mut s = TcpStream::connect_timeout(&server, timeout)
        .map_err(|e| io_fail(&format!("connect {server}"), e))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .map_err(|e| Fail::Failed(format!("set timeouts: {e}")))?;
    s.write_all(&dns_wire::tcp_frame(query))
        .map_err(|e| io_fail(&format!("send the query to {server}"), e))?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)
        .map_err(|e| io_fail(&format!("no DNS reply from {server} over TCP"), e))?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut reply)
        .map_err(|e| io_fail(&format!("read the reply from {server} over TCP"), e))?;
    Ok(reply)
}

/// Malformed DNS messages, each one the forwarder must drop (and keep serving).
fn garbage() -> Vec<Vec<u8>> {
    let good = dns_wire::query(0x6666, "garbage.rr-test.example", TYPE_A);
    let mut bad_label = good.clone();
    bad_label[dns_wire::HEADER_LEN] = 0x47;
    let mut looped = good[..dns_wire::HEADER_LEN].to_vec();
    looped.extend_from_slice(&[0xc0, dns_wire::HEADER_LEN as u8, 0, 1, 0, 1]);
    vec![
        vec![0x12],                                // shorter than a header
        good[..dns_wire::HEADER_LEN].to_vec(),     // a header promising a question
        good[..dns_wire::HEADER_LEN + 5].to_vec(), // a name cut short
        bad_label,                                 // a label length over 63
        looped,                                    // a compression pointer to itself
    ]
}

fn dns_garbage(server: &str, proto: &str) -> Result<u8, Fail> {
    let sa = resolve(server)?;
    let msgs = garbage();
    match proto {
        "udp" => {
            let any: SocketAddr = if sa.is_ipv4() {
                "0.0.0.0:0".parse().expect("a literal address")
            } else {
                "[::]:0".parse().expect("a literal address")
            };
            let sock = UdpSocket::bind(any).map_err(|e| Fail::Failed(format!("bind: {e}")))?;
            for m in &msgs {
                sock.send_to(m, sa)
                    .map_err(|e| io_fail(&format!("send to {sa}"), e))?;
            }
            println!("sent {} udp", msgs.len());
        }
        "tcp" => {
            // Each malformed message on its own connection, and one connection that promises
            // 300 bytes and sends 10 before closing.
            for m in &msgs {
                let mut s = connect_tcp(server)?;
                s.write_all(&dns_wire::tcp_frame(m))
                    .map_err(|e| io_fail("send a malformed message over TCP", e))?;
            }
            let mut s = connect_tcp(server)?;
            s.write_all(&[1, 44, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
                .map_err(|e| io_fail("send a short message over TCP", e))?;
            println!("sent {} tcp", msgs.len() + 1);
        }
        _ => return Err(Fail::Usage(format!("{proto}: not udp or tcp"))),
    }
    Ok(0)
}
