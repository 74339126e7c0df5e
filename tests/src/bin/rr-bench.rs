//! rr-bench: a tiny TCP request/response benchmark (std only), used by `scripts/bench`.
//!
//! ```text
//! rr-bench server ADDR                       echo every byte back, one thread per connection
//! rr-bench client rr|crr|crr-cf|once ADDR SECONDS
//!                                            print one JSON line with the rate
//! ```
//!
//! `rr`: one connection, 1-byte request, 1-byte response, as fast as possible (transactions/s).
//! `crr`: connect, 1-byte request, 1-byte response, close, repeat (connections/s). The request byte
//! `c` asks the server to close first, right after its response, and the client closes on the EOF
//! that follows. So TIME_WAIT stays on the server's side (port ADDR), not on the ephemeral ports of
//! whatever connects from the host's side (the client itself, or the helper under test).
//! `crr-cf`: the same with the client closing first (request byte `k`: the server answers and
//! closes on the client's EOF), as most HTTP clients, package managers and test suites do; the
//! TIME_WAIT sockets pile up on the client's side, and, through a helper, on the helper's
//! host sockets.
//! `once`: one `crr` connection (SECONDS is ignored): the time-to-first-connection workload.
//! Both sides set TCP_NODELAY. Every blocking call has a timeout, so a stuck peer is an error,
//! never a hang.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::exit;
use std::time::{Duration, Instant};

const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn usage() -> ! {
    eprintln!("usage: rr-bench server ADDR | rr-bench client rr|crr|crr-cf|once ADDR SECONDS");
    exit(2);
}

fn resolve(addr: &str) -> SocketAddr {
    match addr.to_socket_addrs().ok().and_then(|mut a| a.next()) {
        Some(a) => a,
        None => {
            eprintln!("rr-bench: bad address {addr}");
            exit(2);
        }
    }
}

fn serve(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() || buf[n - 1] == b'c' {
                    return;
                }
            }
        }
    }
}

fn server(addr: SocketAddr) {
    let l = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rr-bench: bind {addr}: {e}");
            exit(1);
        }
    };
    println!("listening {}", l.local_addr().unwrap());
    let _ = std::io::stdout().flush();
    for s in l.incoming() {
        match s {
            Ok(s) => {
                std::thread::spawn(move || serve(s));
            }
            Err(e) => eprintln!("rr-bench: accept: {e}"),
        }
    }
}

fn connect(addr: &SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(addr, IO_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

fn exchange(s: &mut TcpStream, req: u8) -> std::io::Result<()> {
    let mut b = [req];
    s.write_all(&b)?;
    s.read_exact(&mut b)?;
    if b[0] != req {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "wrong response byte",
        ));
    }
    Ok(())
}

/// Read the server's EOF after a `c` request (anything else is an error).
fn expect_eof(s: &mut TcpStream) -> std::io::Result<()> {
    let mut b = [0u8; 1];
    match s.read(&mut b)? {
        0 => Ok(()),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "data after the response",
        )),
    }
}

/// One connection: connect, exchange `c`, read the server's EOF, close.
fn one_crr(addr: &SocketAddr) -> std::io::Result<()> {
    let mut s = connect(addr)?;
    exchange(&mut s, b'c')?;
    expect_eof(&mut s)
}

fn client(mode: &str, addr: SocketAddr, secs: f64) {
    let deadline = Duration::from_secs_f64(secs);
    let mut count: u64 = 0;
    let start = Instant::now();
    let res: std::io::Result<()> = (|| {
        match mode {
            "rr" => {
                let mut s = connect(&addr)?;
                while start.elapsed() < deadline {
                    exchange(&mut s, b'r')?;
                    count += 1;
                }
            }
            "crr" => {
                while start.elapsed() < deadline {
                    one_crr(&addr)?;
                    count += 1;
                }
            }
            "crr-cf" => {
                while start.elapsed() < deadline {
                    let mut s = connect(&addr)?;
                    exchange(&mut s, b'k')?;
                    drop(s);
                    count += 1;
                }
            }
            "once" => {
                one_crr(&addr)?;
                count += 1;
            }
            _ => usage(),
        }
        Ok(())
    })();
    let elapsed = start.elapsed().as_secs_f64();
    if let Err(e) = res {
        eprintln!("rr-bench: {mode} to {addr} failed after {count} transactions: {e}");
        exit(1);
    }
    println!(
        "{{\"mode\":\"{mode}\",\"count\":{count},\"seconds\":{elapsed:.6},\"rate\":{:.1}}}",
        count as f64 / elapsed
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["server", addr] => server(resolve(addr)),
        ["client", mode, addr, secs] => {
            let secs: f64 = secs.parse().unwrap_or_else(|_| usage());
            client(mode, resolve(addr), secs)
        }
        _ => usage(),
    }
}
