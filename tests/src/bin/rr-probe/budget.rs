//! rr-probe's `udp-budget` job (tests/tests/hostile.rs): new UDP flows while the sandbox's root
//! floods the helper with new flows to one destination, as scripts/stress's `udp-flood` does.
//!   `udp-budget IFNAME GW4 SELF4 SPOOFED4 FLOWS FLOOD_ADDR ECHO_ADDR BURST_PORT BURST`:
//!   write datagrams to FLOOD_ADDR from SPOOFED4 over FLOWS source ports, without pause, until
//!   told to stop; once `WARM_UP` are written: one datagram from a new socket to ECHO_ADDR
//!   (`exchange answered|refused|timeout after T ms`), then BURST datagrams, each from a new
//!   socket to its own port of GW4 counting up from BURST_PORT, where nothing listens
//!   (`burst N new flows in T ms: R refused within U ms, the first after F ms`); then stop
//!   the flood (`flooded N datagrams over F flows in T ms until stopped`, or `... ran out` if
//!   it hit `FLOOD_FOR` first, so the checks above were not all made during it).
//! Every datagram of ours is sent with IP_RECVERR, and sent again while our own kernel refuses
//! it (ENOBUFS: the flood fills tap0's queue), so that one that is lost was lost by the helper.
//! Called by `main`'s dispatch; frames come from `rr_tests::frames`.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{setsockopt, sockopt::Ipv4RecvErr};
use rr_tests::frames::{self, Link};
use smoltcp::wire::EthernetAddress;

use crate::hostile::{gateway_link, number, v4};
use crate::{resolve, Fail};

/// Flood datagrams written before the checks start: the helper's whole burst of new flows
/// (512) is spent several times over by then.
const WARM_UP: u64 = 5_000;
/// Longest the flood runs, so a stuck check cannot flood forever: far beyond what the checks
/// take (a few seconds).
const FLOOD_FOR: Duration = Duration::from_secs(30);
/// First source port of the flood; the others count up.
const FLOOD_SPORT: u16 = 1024;
/// Payload of every datagram.
const PAYLOAD: &[u8] = b"budget";
/// How long the exchange waits for its answer, and the burst for its refusals: far beyond a
/// loopback round trip, below the timeouts applications wait instead.
const FATE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one datagram of ours is offered to a queue that keeps refusing it.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

pub fn udp_budget(args: &[&str]) -> Result<u8, Fail> {
    let &[ifname, gw, me, spoofed, flows, flood_to, echo_addr, burst_port, burst] = args else {
        return Err(Fail::Usage("udp-budget needs 9 arguments".to_owned()));
    };
    let (gw, me, spoofed) = (v4(gw)?, v4(me)?, v4(spoofed)?);
    let flows = number(flows)?.clamp(1, u64::from(u16::MAX - FLOOD_SPORT));
    let burst_port: u16 = burst_port
        .parse()
        .map_err(|_| Fail::Usage(format!("{burst_port}: not a port")))?;
    let burst = number(burst)?.min(u64::from(u16::MAX - burst_port)) as u16;
    let (flood_to, echo_addr) = (resolve(flood_to)?, resolve(echo_addr)?);
    let (link, gw_mac) = gateway_link(ifname, me, gw)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (warm, warmed) = mpsc::channel();
    let flood = Flood {
        link,
        gw_mac,
        from: spoofed,
        flows,
        to: flood_to,
    };
    let flooder = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || flood.run(&stop, warm))
    };
    let checks = warmed
        .recv_timeout(SEND_TIMEOUT)
        .map_err(|_| Fail::Timeout("the flood's first datagrams".to_owned()))
        .and_then(|()| exchange(echo_addr))
        .and_then(|fate| {
            println!("exchange {fate}");
            burst_fates(gw, burst_port, burst)
        });
    stop.store(true, Ordering::Relaxed);
    let flooded = flooder
        .join()
        .map_err(|_| Fail::Failed("the flood thread panicked".to_owned()))?;
    println!("{}", checks?);
    println!("{}", flooded?);
    Ok(0)
}

/// The flood: where its frames go and come from.
struct Flood {
    link: Link,
    gw_mac: EthernetAddress,
    from: Ipv4Addr,
    flows: u64,
    to: SocketAddr,
}

impl Flood {
    /// Writes datagrams until `stop` (or `FLOOD_FOR`), telling `warm` after `WARM_UP`; what it
    /// did, as the job prints it.
    fn run(self, stop: &AtomicBool, warm: mpsc::Sender<()>) -> Result<String, Fail> {
        let start = Instant::now();
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) && start.elapsed() < FLOOD_FOR {
            let sport = FLOOD_SPORT + (sent % self.flows) as u16;
            let from = SocketAddr::new(self.from.into(), sport);
            let frame = frames::datagram(self.link.mac(), self.gw_mac, from, self.to, PAYLOAD)
                .map_err(Fail::Usage)?;
            // A full tap queue refuses a frame: a flood overruns it by design.
            if self.link.send(&frame).is_ok() {
                sent += 1;
                if sent == WARM_UP {
                    let _ = warm.send(());
                }
            }
        }
        let how = match stop.load(Ordering::Relaxed) {
            true => "until stopped",
            false => "ran out",
        };
        Ok(format!(
            "flooded {sent} datagrams over {} flows in {} ms {how}",
            self.flows,
            start.elapsed().as_millis()
        ))
    }
}

/// A new socket connected to `to`, reporting ICMP errors and local drops (IP_RECVERR).
fn new_socket(to: SocketAddr) -> Result<UdpSocket, Fail> {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .map_err(|e| Fail::Failed(format!("bind a UDP socket: {e}")))?;
    sock.connect(to)
        .map_err(|e| Fail::Failed(format!("connect a UDP socket to {to}: {e}")))?;
    setsockopt(&sock, Ipv4RecvErr, &true)
        .map_err(|e| Fail::Failed(format!("IP_RECVERR on a UDP socket: {e}")))?;
    Ok(sock)
}

/// Sends `PAYLOAD` on `sock` once our own kernel takes it; when it was taken.
fn send_taken(sock: &UdpSocket) -> Result<Instant, Fail> {
    let until = Instant::now() + SEND_TIMEOUT;
    loop {
        match sock.send(PAYLOAD) {
            Ok(_) => return Ok(Instant::now()),
            Err(e) if e.raw_os_error() == Some(libc_enobufs()) && Instant::now() < until => {
                thread::yield_now()
            }
            Err(e) => return Err(Fail::Failed(format!("send a datagram: {e}"))),
        }
    }
}

/// ENOBUFS: the device queue dropped the datagram (reported with IP_RECVERR only).
fn libc_enobufs() -> i32 {
    nix::errno::Errno::ENOBUFS as i32
}

/// One datagram from a new socket to `to` (an echo server) and its fate.
fn exchange(to: SocketAddr) -> Result<String, Fail> {
    let sock = new_socket(to)?;
    sock.set_read_timeout(Some(FATE_TIMEOUT))
        .map_err(|e| Fail::Failed(format!("SO_RCVTIMEO: {e}")))?;
    let sent = send_taken(&sock)?;
    let fate = match sock.recv(&mut [0u8; 64]) {
        Ok(_) => "answered",
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => "refused",
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => "timeout",
        Err(e) => return Err(Fail::Failed(format!("datagram to {to}: {e}"))),
    };
    Ok(format!("{fate} after {} ms", sent.elapsed().as_millis()))
}

/// `count` datagrams, each from a new socket to its own port of `gw` from `first` up, as fast
/// as they go; then how many were refused within `FATE_TIMEOUT`, and how soon the first was.
fn burst_fates(gw: Ipv4Addr, first: u16, count: u16) -> Result<String, Fail> {
    let start = Instant::now();
    let mut socks = Vec::with_capacity(usize::from(count));
    for port in (0..count).map(|i| first + i) {
        let sock = new_socket(SocketAddr::new(gw.into(), port))?;
        send_taken(&sock)?;
        socks.push(sock);
    }
    let (sent, took) = (Instant::now(), start.elapsed());
    // Each socket's fate once poll reports it: refused (true) or anything else (false).
    let mut fates: Vec<Option<bool>> = vec![None; socks.len()];
    let mut first_after = None;
    while sent.elapsed() < FATE_TIMEOUT && fates.iter().any(Option::is_none) {
        let left = FATE_TIMEOUT.saturating_sub(sent.elapsed());
        let open: Vec<usize> = (0..socks.len()).filter(|&i| fates[i].is_none()).collect();
        let mut fds: Vec<PollFd> = open
            .iter()
            .map(|&i| PollFd::new(socks[i].as_fd(), PollFlags::POLLIN))
            .collect();
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::ZERO);
        if poll(&mut fds, timeout).map_err(|e| Fail::Failed(format!("poll: {e}")))? == 0 {
            break;
        }
        let ready: Vec<usize> = fds
            .iter()
            .zip(&open)
            .filter(|(fd, _)| fd.any().unwrap_or(false))
            .map(|(_, &i)| i)
            .collect();
        drop(fds);
        for i in ready {
            let got = socks[i].recv(&mut [0u8; 64]);
            let was_refused = matches!(&got, Err(e) if e.kind() == ErrorKind::ConnectionRefused);
            if was_refused {
                first_after.get_or_insert(sent.elapsed());
            }
            fates[i] = Some(was_refused);
        }
    }
    let n = fates.iter().filter(|f| **f == Some(true)).count();
    let first = first_after.map_or("never".to_owned(), |d| format!("{} ms", d.as_millis()));
    Ok(format!(
        "burst {count} new flows in {} ms: {n} refused within {} ms, the first after {first}",
        took.as_millis(),
        FATE_TIMEOUT.as_millis()
    ))
}
