//! rr-probe's TCP path jobs (tests/tests/tcp_paths.rs): `recv-after-go`,
//! `send-until-blocked`, `half-close`, `send-after-eof`, `reset-close`, `expect-reset` and
//! `tcp-counters`, with the pattern-stream reading and writing they share.
//! Called by `main`'s dispatch; the host side of each path is the test's, not ours.

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};

use nix::libc;
use nix::{setsockopt_impl, sockopt_impl};
use rr_tests::pattern::{fill, hex, CHUNK, HOST_SEED, TCP_SEED};
use sha2::{Digest, Sha256};

use crate::{connect_tcp, io_fail, Fail, EXIT_FAILED};

// TCP_QUICKACK, which nix lacks: setting it sends a delayed ACK at once (tcp(7)).
sockopt_impl!(
    /// TCP_QUICKACK
    TcpQuickAck,
    SetOnly,
    libc::IPPROTO_TCP,
    libc::TCP_QUICKACK,
    bool
);

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

pub fn recv_after_go(data: &str, ctrl: &str) -> Result<u8, Fail> {
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

pub fn send_until_blocked(data: &str, ctrl: &str, bytes: &str) -> Result<u8, Fail> {
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

pub fn half_close(addr: &str, bytes: &str) -> Result<u8, Fail> {
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

pub fn send_after_eof(data: &str, ctrl: &str, bytes: &str) -> Result<u8, Fail> {
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

pub fn reset_close(data: &str, ctrl: &str) -> Result<u8, Fail> {
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

pub fn expect_reset(addr: &str) -> Result<u8, Fail> {
    let mut stream = connect_tcp(addr)?;
    stream
        .write_all(b"x")
        .map_err(|e| io_fail("write one byte", e))?;
    // Said as soon as it is true, so a test can act on an established connection.
    println!("connected");
    io::stdout()
        .flush()
        .map_err(|e| io_fail("flush stdout", e))?;
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

pub fn tcp_counters(names: &[&str]) -> Result<u8, Fail> {
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
