//! An echo server that says who called: `rr-probe serve tcp:ADDR:PORT udp:ADDR:PORT ...` runs
//! it inside the sandbox (the far end of a published port), and `PeerEcho` drives it from the
//! test. It prints `listening PROTO LOCAL` per socket, then `ready`; then, per TCP connection,
//! `tcp LOCAL from PEER` when it is accepted (LOCAL is the connection's own address), and per
//! UDP datagram `udp LOCAL from PEER N` (LOCAL is the bound address). IPv4-mapped addresses
//! are printed as IPv4, so a dual-stack [::] socket reports IPv4 callers as themselves.
//! TCP connections are echoed until the peer half-closes, datagrams are sent back to their
//! sender. The server lives until its stdin reaches EOF.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

use crate::child::{Outcome, Running};
use crate::sandbox::{command, Harness};

/// Protocol and address of one socket the server opens: `tcp:ADDR:PORT` or `udp:ADDR:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// True for TCP, false for UDP.
    pub tcp: bool,
    /// Where to bind.
    pub addr: SocketAddr,
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Listen, String> {
        let (tcp, rest) = match s.split_once(':') {
            Some(("tcp", rest)) => (true, rest),
            Some(("udp", rest)) => (false, rest),
            _ => return Err(format!("{s}: not tcp:ADDR:PORT or udp:ADDR:PORT")),
        };
        let addr = rest.parse().map_err(|e| format!("{s}: {e}"))?;
        Ok(Listen { tcp, addr })
    }
}

/// `addr` with an IPv4-mapped IPv6 address written as IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Binds every socket in `specs`, prints the `listening` lines and `ready`, then serves until
/// the process exits. Returns only if a bind fails.
pub fn serve(specs: &[Listen]) -> io::Result<()> {
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    for spec in specs {
        let what = |e: io::Error| io::Error::new(e.kind(), format!("bind {spec:?}: {e}"));
        if spec.tcp {
            let l = TcpListener::bind(spec.addr).map_err(what)?;
            println!("listening tcp {}", canonical(l.local_addr()?));
            tcp.push(l);
        } else {
            let s = UdpSocket::bind(spec.addr).map_err(what)?;
            println!("listening udp {}", canonical(s.local_addr()?));
            udp.push(s);
        }
    }
    println!("ready");
    for l in tcp {
        thread::spawn(move || {
            // accept's own peer address: a connection reset in the queue has no peer_addr().
            while let Ok((conn, peer)) = l.accept() {
                if let Ok(local) = conn.local_addr() {
                    println!("tcp {} from {}", canonical(local), canonical(peer));
                }
                thread::spawn(move || echo_tcp(conn));
            }
        });
    }
    for s in udp {
        thread::spawn(move || {
            let local = s.local_addr().map(canonical);
            let mut buf = vec![0u8; 65536];
            while let Ok((n, peer)) = s.recv_from(&mut buf) {
                if let Ok(local) = local {
                    println!("udp {local} from {} {n}", canonical(peer));
                }
                let _ = s.send_to(&buf[..n], peer);
            }
        });
    }
    Ok(())
}

fn echo_tcp(mut conn: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => {
                let _ = conn.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// One caller the server reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// True for a TCP connection, false for a UDP datagram.
    pub tcp: bool,
    /// The connection's local address (TCP) or the bound address (UDP).
    pub local: SocketAddr,
    /// Who called, as the sandbox sees it.
    pub peer: SocketAddr,
}

/// Reads a `tcp LOCAL from PEER` or `udp LOCAL from PEER N` line.
pub fn parse_call(line: &str) -> Option<Call> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (tcp, local, peer) = match words.as_slice() {
        ["tcp", local, "from", peer] => (true, local, peer),
        ["udp", local, "from", peer, _] => (false, local, peer),
        _ => return None,
    };
    Some(Call {
        tcp,
        local: local.parse().ok()?,
        peer: peer.parse().ok()?,
    })
}

/// The server as the test sees it: a running command (usually `rootless-run ... -- rr-probe
/// serve ...`) whose stdout carries the lines above.
pub struct PeerEcho {
    run: Running,
}

impl PeerEcho {
    /// Runs `rootless-run FLAGS -- rr-probe serve SPECS...` as the test user and waits for
    /// `ready`.
    pub fn launch(h: &Harness, flags: &[&str], specs: &[&str], timeout: Duration) -> PeerEcho {
        PeerEcho::launch_job(h, flags, &["serve"], specs, timeout)
    }

    /// As `launch`, with the probe's `job` words (a job that ends in `serve`, such as
    /// `forge-macs-then-serve IFNAME COUNT SRC4 GW4`) in front of the specs.
    pub fn launch_job(
        h: &Harness,
        flags: &[&str],
        job: &[&str],
        specs: &[&str],
        timeout: Duration,
    ) -> PeerEcho {
        let probe_args: Vec<&str> = job.iter().chain(specs).copied().collect();
        let argv = h.as_user_argv(&h.rootless_run_with(flags, &h.probe(&probe_args)));
        let what = format!(
            "rootless-run {} -- rr-probe {}",
            flags.join(" "),
            probe_args.join(" ")
        );
        PeerEcho::ready(Running::spawn(what, &mut command(&argv)), timeout)
    }

    /// Closes the server's stdin (it exits 0) and waits for the launcher to exit.
    pub fn finish(self, timeout: Duration) -> Outcome {
        let mut run = self.run;
        run.close_stdin();
        run.wait(timeout)
    }

    /// Waits for `ready` (all sockets bound) from `run`; panics with its output on timeout.
    pub fn ready(mut run: Running, timeout: Duration) -> PeerEcho {
        run.expect_line("the sandbox server's `ready`", timeout, |l| l == "ready");
        PeerEcho { run }
    }

    /// The next TCP connection the server reports (UDP lines before it are passed over);
    /// panics with the output so far on timeout.
    pub fn next_tcp(&mut self, timeout: Duration) -> Call {
        self.next_of(true, timeout)
    }

    /// The next UDP datagram the server reports (TCP lines before it are passed over);
    /// panics with the output so far on timeout.
    pub fn next_udp(&mut self, timeout: Duration) -> Call {
        self.next_of(false, timeout)
    }

    fn next_of(&mut self, tcp: bool, timeout: Duration) -> Call {
        let what = if tcp {
            "a `tcp LOCAL from PEER` line"
        } else {
            "a `udp LOCAL from PEER N` line"
        };
        let line = self.run.expect_line(what, timeout, |l| {
            parse_call(l).is_some_and(|c| c.tcp == tcp)
        });
        parse_call(&line).expect("the predicate accepted it")
    }

    /// The underlying command (to close its stdin, wait for it, or read its output).
    pub fn into_running(self) -> Running {
        self.run
    }

    /// Output so far, for messages.
    pub fn output_so_far(&self) -> String {
        self.run.output_so_far()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_specs_parse_both_protocols_and_families() {
        let l: Listen = "udp:[::]:53".parse().expect("spec");
        assert!(!l.tcp);
        assert_eq!(l.addr, "[::]:53".parse::<SocketAddr>().expect("addr"));
        assert!("sctp:0.0.0.0:1".parse::<Listen>().is_err());
    }

    #[test]
    fn calls_parse_and_other_lines_do_not() {
        assert_eq!(
            parse_call("tcp 10.0.2.100:80 from 192.0.2.1:40000"),
            Some(Call {
                tcp: true,
                local: "10.0.2.100:80".parse().expect("addr"),
                peer: "192.0.2.1:40000".parse().expect("addr"),
            })
        );
        assert_eq!(
            parse_call("udp [::]:53 from [fd00::2]:5353 12").map(|c| (c.tcp, c.peer.port())),
            Some((false, 5353))
        );
        assert_eq!(parse_call("listening tcp [::]:80"), None);
        assert_eq!(parse_call("ready"), None);
    }

    #[test]
    fn canonical_unmaps_ipv4_mapped_addresses_only() {
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:7".parse().expect("addr");
        assert_eq!(canonical(mapped).to_string(), "192.0.2.1:7");
        let v6: SocketAddr = "[fd00::2]:7".parse().expect("addr");
        assert_eq!(canonical(v6), v6);
    }
}
