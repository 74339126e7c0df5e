//! rr-probe's forwarding and leak jobs: `serve` (echo on each SPEC and report every caller)
//! and `poke` (a TCP connect or one datagram per TARGET, all at once).
//! Called by `main`'s dispatch; it builds no frames by hand (that is `raw`).

use std::io;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

use rr_tests::frames::{self, Proto, Target};
use rr_tests::peer_echo::{self, Listen};

use crate::{exit_at_stdin_eof, parse_all, Fail};

/// Bound for each `poke` connect: long enough for the sandbox's ARP to give up on a neighbour
/// that never answers (3 probes a second apart, arp(7) mcast_solicit), short for a test.
const POKE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn serve(specs: &[&str]) -> Result<u8, Fail> {
    let specs: Vec<Listen> = parse_all(specs)?;
    exit_at_stdin_eof();
    peer_echo::serve(&specs).map_err(|e| Fail::Failed(e.to_string()))?;
    // The sockets are served on their own threads; this one waits for stdin's EOF.
    loop {
        thread::park();
    }
}

pub fn poke(targets: &[&str]) -> Result<u8, Fail> {
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

pub fn poke_one(t: Target) -> String {
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
