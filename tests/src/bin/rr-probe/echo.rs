//! rr-probe's echo jobs: `tcp-echo`, `udp-echo`, `connect` and `serve-tcp-echo`.
//! Called by `main`'s dispatch; each checks bytes end to end and reports on stdout.
//! Nothing here parses the command line or chooses an exit code beyond its `Result`.

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, TcpListener, UdpSocket};
use std::thread;
use std::time::Duration;

use rr_tests::pattern::{fill, hex, CHUNK, TCP_SEED};
use sha2::{Digest, Sha256};

use crate::{connect_tcp, io_fail, resolve, Fail};

/// Per-datagram wait before `udp-echo` resends it.
const UDP_RETRY_AFTER: Duration = Duration::from_secs(2);
/// Sends per datagram before `udp-echo` gives up.
const UDP_ATTEMPTS: u32 = 5;
/// Datagram sizes `udp-echo` cycles through: tiny, small, one Ethernet MTU's worth, larger
/// than 1500 (needs the 65520 MTU or fragmentation).
const UDP_SIZES: [usize; 4] = [1, 64, 1400, 8192];

pub fn tcp_echo(addr: &str, bytes: &str) -> Result<u8, Fail> {
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

pub fn udp_echo(addr: &str, count: &str) -> Result<u8, Fail> {
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

pub fn connect(addr: &str) -> Result<u8, Fail> {
    connect_tcp(addr)?;
    println!("connected");
    Ok(0)
}

pub fn serve_tcp_echo(addr: &str) -> Result<u8, Fail> {
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
