//! rr-probe's hostile-sandbox jobs (tests/tests/hostile*.rs): what a sandbox's root may do to
//! the helper with raw frames on tap0, next to the ordinary sockets that must survive it.
//!   `upload ADDR`: connect, print `connected`, then write until the connection fails.
//!   `forge-rst-syn IFNAME GW4 ADDR BYTES`: connect to an echo server at ADDR and echo one
//!   chunk and one byte, reading that byte's sequence number off tap0; forge RSTs at every
//!   sequence number but the next expected one (in the window and out of it) and SYNs on that
//!   connection's 4-tuple (`forged N around SEQ`); then echo BYTES more and close:
//!   `echoed N bytes intact`.
//!   `flows-full TCP_ADDR N UDP_ADDR DNS_SERVER`: hold N connections to TCP_ADDR (`holding
//!   N`), then report the fate of one datagram to UDP_ADDR (`udp answered|refused|timeout`),
//!   of one DNS query over UDP (`dns rcode R|refused|timeout`) and of one more connection to
//!   TCP_ADDR (`tcp connected|refused|timeout`), each with `after T ms`.
//!   `udp-until-refused UDP_ADDR COUNT DNS_SERVER`: up to COUNT datagrams, each from a new
//!   socket (a new flow), until one is not answered: `refused after N answered` or
//!   `timeout after N answered`; then the DNS query's fate as above.
//!   `syn-flood IFNAME GW4 SELF4 SPOOFED4 COUNT FLOOD_ADDR ECHO_ADDR BYTES`: write COUNT
//!   SYNs to FLOOD_ADDR from SPOOFED4 (an address the sandbox does not have, so its kernel
//!   leaves the SYN-ACKs unanswered), each from another port (`flooded COUNT`); then echo
//!   BYTES through a new connection to ECHO_ADDR (`echoed N bytes intact after T ms`, the time
//!   from connect to the end of the echo); then hold until stdin reaches EOF.
//!   `udp-flood IFNAME GW4 SELF4 SPOOFED4 DATAGRAMS FLOWS TARGET ECHO_ADDR BASELINE`: start a
//!   bystander echo through ECHO_ADDR and time its first BASELINE bytes (`bystander
//!   undisturbed N bytes in T ms`); write DATAGRAMS datagrams to TARGET from SPOOFED4 over
//!   FLOWS source ports, opening a new connection to ECHO_ADDR halfway (`flooded ... in T ms;
//!   bystander moved N bytes meanwhile`); then `new connection echoed N bytes intact after
//!   T ms` and, once the bystander stops, `bystander echoed N bytes intact`.
//! Called by `main`'s dispatch; frames come from `rr_tests::frames`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use rr_tests::frames::{self, Link};
use rr_tests::pattern::{fill, CHUNK, TCP_SEED};
use smoltcp::wire::TcpControl;

use crate::dns::{dns_over_udp, DNS_ID};
use crate::{connect_tcp, io_fail, resolve, Fail, IO_TIMEOUT};

/// ARP for the gateway: resent this often, until `ARP_TIMEOUT`.
const ARP_RETRY: Duration = Duration::from_secs(1);
const ARP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a datagram or query waits for its fate: far beyond a loopback round trip, and
/// below the resolver and UDP timeouts an application would wait instead.
const FATE_TIMEOUT: Duration = Duration::from_secs(10);

pub fn upload(addr: &str) -> Result<u8, Fail> {
    let mut stream = connect_tcp(addr)?;
    println!("connected");
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    loop {
        fill(TCP_SEED, sent, &mut buf);
        match stream.write(&buf) {
            Ok(n) => sent += n as u64,
            Err(e) => return Err(io_fail(&format!("write after {sent} bytes"), e)),
        }
    }
}

pub fn forge_rst_syn(ifname: &str, gw: &str, addr: &str, bytes: &str) -> Result<u8, Fail> {
    let (total, gw) = (number(bytes)?, v4(gw)?);
    let mut stream = connect_tcp(addr)?;
    let mut offset = 0;
    echo(&mut stream, &mut offset, CHUNK as u64)?;
    let (local, peer) = match (stream.local_addr(), stream.peer_addr()) {
        (Ok(l), Ok(p)) => (l, p),
        (Err(e), _) | (_, Err(e)) => return Err(Fail::Failed(format!("addresses: {e}"))),
    };
    let std::net::IpAddr::V4(me) = local.ip() else {
        return Err(Fail::Usage(format!("{local}: forging is IPv4 only")));
    };
    let (link, gw_mac) = gateway_link(ifname, me, gw)?;
    // One byte more, read off the wire: the next sequence number the helper expects from us.
    echo(&mut stream, &mut offset, 1)?;
    let (seq, len) = link
        .next_data_segment(local, peer, IO_TIMEOUT)
        .map_err(|e| io_fail("our own segment on the wire", e))?;
    let next = seq.wrapping_add(len as u32);
    let forged = forge(&link, gw_mac, local, peer, next)?;
    println!("forged {forged} around {next}");
    echo(&mut stream, &mut offset, total)?;
    finish(stream)?;
    println!("echoed {offset} bytes intact");
    Ok(0)
}

/// Writes RSTs and SYNs on the 4-tuple `local` -> `peer`, whose next expected sequence
/// number is `next`, at every other number: in the window, far outside it, just behind it;
/// how many.
fn forge(
    link: &Link,
    gw_mac: smoltcp::wire::EthernetAddress,
    local: SocketAddr,
    peer: SocketAddr,
    next: u32,
) -> Result<usize, Fail> {
    let send = |control, seq| {
        let frame =
            frames::segment(link.mac(), gw_mac, local, peer, control, seq).map_err(Fail::Usage)?;
        link.send(&frame).map_err(|e| Fail::Failed(e.to_string()))
    };
    let offsets = [1, 1000, 60_000, 1 << 20, 1 << 31, u32::MAX];
    for off in offsets {
        send(TcpControl::Rst, next.wrapping_add(off))?;
    }
    for off in offsets {
        send(TcpControl::Syn, next.wrapping_add(off))?;
    }
    send(TcpControl::Syn, next)?;
    Ok(2 * offsets.len() + 1)
}

/// Ends an echo: shuts down writing, then expects EOF with nothing more before it.
fn finish(mut stream: TcpStream) -> Result<(), Fail> {
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| Fail::Failed(format!("shutdown(write): {e}")))?;
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .map_err(|e| io_fail("read to EOF", e))?;
    match rest.is_empty() {
        true => Ok(()),
        false => Err(Fail::Failed(format!("{} bytes after the echo", rest.len()))),
    }
}

/// Writes `len` more bytes of the pattern from `offset` and reads each chunk's echo back,
/// comparing it.
fn echo(stream: &mut TcpStream, offset: &mut u64, len: u64) -> Result<(), Fail> {
    let mut out = vec![0u8; CHUNK];
    let mut back = vec![0u8; CHUNK];
    let end = *offset + len;
    while *offset < end {
        let n = CHUNK.min((end - *offset) as usize);
        fill(TCP_SEED, *offset, &mut out[..n]);
        stream
            .write_all(&out[..n])
            .map_err(|e| io_fail(&format!("write at {offset}"), e))?;
        stream
            .read_exact(&mut back[..n])
            .map_err(|e| io_fail(&format!("read the echo at {offset}"), e))?;
        if back[..n] != out[..n] {
            return Err(Fail::Failed(format!("echo differs at {offset}")));
        }
        *offset += n as u64;
    }
    Ok(())
}

pub fn flows_full(tcp: &str, count: &str, udp: &str, dns: &str) -> Result<u8, Fail> {
    let n: usize = count
        .parse()
        .map_err(|_| Fail::Usage(format!("{count}: not a number")))?;
    let held = (0..n)
        .map(|_| connect_tcp(tcp))
        .collect::<Result<Vec<_>, _>>()?;
    println!("holding {}", held.len());
    println!("udp {}", udp_fate(resolve(udp)?)?);
    println!("dns {}", dns_fate(resolve(dns)?)?);
    let start = Instant::now();
    let fate = match connect_tcp(tcp) {
        Ok(_) => "connected",
        Err(Fail::Refused) => "refused",
        Err(Fail::Timeout(_)) => "timeout",
        Err(other) => return Err(other),
    };
    println!("tcp {fate} after {} ms", start.elapsed().as_millis());
    drop(held);
    Ok(0)
}

pub fn udp_until_refused(udp: &str, count: &str, dns: &str) -> Result<u8, Fail> {
    let n: usize = count
        .parse()
        .map_err(|_| Fail::Usage(format!("{count}: not a number")))?;
    let to = resolve(udp)?;
    let mut answered = 0;
    let mut verdict = None;
    for _ in 0..n {
        let fate = udp_fate(to)?;
        if !fate.starts_with("answered") {
            verdict = Some(fate);
            break;
        }
        answered += 1;
    }
    let Some(fate) = verdict else {
        println!("all {n} answered");
        return Ok(0);
    };
    println!("{fate} after {answered} answered");
    println!("dns {}", dns_fate(resolve(dns)?)?);
    Ok(0)
}

/// What became of one datagram to `to` from a new connected socket: `answered`, `refused`
/// (ECONNREFUSED: an ICMP port unreachable came back) or `timeout`, with the time taken.
fn udp_fate(to: SocketAddr) -> Result<String, Fail> {
    let any: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().expect("a literal address")
    } else {
        "[::]:0".parse().expect("a literal address")
    };
    let sock = UdpSocket::bind(any).map_err(|e| Fail::Failed(format!("bind: {e}")))?;
    sock.connect(to)
        .and_then(|()| sock.set_read_timeout(Some(FATE_TIMEOUT)))
        .map_err(|e| Fail::Failed(format!("connect a UDP socket to {to}: {e}")))?;
    let start = Instant::now();
    let sent = sock.send(b"fate");
    let got = sent.and_then(|_| sock.recv(&mut [0u8; 64]));
    let fate = match got {
        Ok(_) => "answered",
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "refused",
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            "timeout"
        }
        Err(e) => return Err(Fail::Failed(format!("datagram to {to}: {e}"))),
    };
    Ok(format!("{fate} after {} ms", start.elapsed().as_millis()))
}

/// What became of one DNS query over UDP to `server`: `rcode R`, `refused` or `timeout`.
fn dns_fate(server: SocketAddr) -> Result<String, Fail> {
    let query = rr_tests::dns_wire::query(DNS_ID, "fate.example", rr_tests::dns_wire::TYPE_A);
    let start = Instant::now();
    let fate = match dns_over_udp(server, &query, FATE_TIMEOUT) {
        Ok(reply) => match rr_tests::dns_wire::Header::parse(&reply) {
            Ok(h) => format!("rcode {}", h.rcode()),
            Err(e) => return Err(Fail::Failed(format!("a malformed reply: {e}"))),
        },
        Err(Fail::Refused) => "refused".to_owned(),
        Err(Fail::Timeout(_)) => "timeout".to_owned(),
        Err(other) => return Err(other),
    };
    Ok(format!("{fate} after {} ms", start.elapsed().as_millis()))
}

/// First source port of a SYN flood; the others count up and wrap below 65536.
const FLOOD_SPORT: u16 = 1024;

pub fn syn_flood(args: &[&str]) -> Result<u8, Fail> {
    let &[ifname, gw, me, spoofed, count, flood, echo_addr, bytes] = args else {
        return Err(Fail::Usage("syn-flood needs 8 arguments".to_owned()));
    };
    let (gw, me, spoofed) = (v4(gw)?, v4(me)?, v4(spoofed)?);
    let (count, total) = (number(count)?, number(bytes)?);
    let flood = resolve(flood)?;
    let (link, gw_mac) = gateway_link(ifname, me, gw)?;
    let ports = u64::from(u16::MAX - FLOOD_SPORT);
    let mut dropped = 0;
    for i in 0..count {
        let sport = FLOOD_SPORT + (i % ports) as u16;
        let from = SocketAddr::new(spoofed.into(), sport);
        let frame = frames::segment(link.mac(), gw_mac, from, flood, TcpControl::Syn, i as u32)
            .map_err(Fail::Usage)?;
        // A full tap queue refuses a frame (ENOBUFS): a flood overruns it by design.
        dropped += u64::from(link.send(&frame).is_err());
    }
    println!("flooded {count} ({dropped} refused by the tap queue)");
    let start = Instant::now();
    let mut stream = connect_tcp(echo_addr)?;
    let mut offset = 0;
    echo(&mut stream, &mut offset, total)?;
    println!(
        "echoed {offset} bytes intact after {} ms",
        start.elapsed().as_millis()
    );
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    Ok(0)
}

/// Payload of a flood datagram.
const FLOOD_PAYLOAD: &[u8] = b"flood";

/// What a job's thread reports: its result, or why it failed.
type Reported<T> = thread::JoinHandle<Result<T, Fail>>;

pub fn udp_flood(args: &[&str]) -> Result<u8, Fail> {
    let &[ifname, gw, me, spoofed, datagrams, flows, target, echo_addr, baseline] = args else {
        return Err(Fail::Usage("udp-flood needs 9 arguments".to_owned()));
    };
    let (gw, me, spoofed) = (v4(gw)?, v4(me)?, v4(spoofed)?);
    let (datagrams, flows, baseline) = (number(datagrams)?, number(flows)?, number(baseline)?);
    let flows = flows.clamp(1, u64::from(u16::MAX - FLOOD_SPORT));
    let target = resolve(target)?;
    let (link, gw_mac) = gateway_link(ifname, me, gw)?;
    let moved = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, undisturbed) = mpsc::channel();
    let bystander = bystand(connect_tcp(echo_addr)?, baseline, &moved, &stop, tx);
    let took = undisturbed
        .recv_timeout(IO_TIMEOUT)
        .map_err(|_| Fail::Timeout("the bystander's first bytes".to_owned()))?;
    println!(
        "bystander undisturbed {baseline} bytes in {} ms",
        took.as_millis()
    );
    let (before, start) = (moved.load(Ordering::Relaxed), Instant::now());
    let mut newcomer: Option<Reported<Duration>> = None;
    let mut dropped = 0;
    for i in 0..datagrams {
        if i == datagrams / 2 {
            let addr = echo_addr.to_owned();
            newcomer = Some(thread::spawn(move || {
                let start = Instant::now();
                let mut stream = connect_tcp(&addr)?;
                echo(&mut stream, &mut 0, CHUNK as u64)?;
                Ok(start.elapsed())
            }));
        }
        let from = SocketAddr::new(spoofed.into(), FLOOD_SPORT + (i % flows) as u16);
        let frame = frames::datagram(link.mac(), gw_mac, from, target, FLOOD_PAYLOAD)
            .map_err(Fail::Usage)?;
        dropped += u64::from(link.send(&frame).is_err());
    }
    let (flood_ms, during) = (
        start.elapsed().as_millis(),
        moved.load(Ordering::Relaxed) - before,
    );
    println!(
        "flooded {datagrams} datagrams over {flows} flows in {flood_ms} ms ({dropped} refused \
         by the tap queue); bystander moved {during} bytes meanwhile"
    );
    let took = joined(newcomer.ok_or_else(|| Fail::Usage("no datagrams".to_owned()))?)?;
    println!(
        "new connection echoed {CHUNK} bytes intact after {} ms",
        took.as_millis()
    );
    stop.store(true, Ordering::Relaxed);
    let total = joined(bystander)?;
    println!("bystander echoed {total} bytes intact");
    Ok(0)
}

/// A thread echoing chunks through `stream` until `stop`, counting into `moved`; it sends
/// the time its first `baseline` bytes took, and returns the total once the echo ended clean.
fn bystand(
    mut stream: TcpStream,
    baseline: u64,
    moved: &Arc<AtomicU64>,
    stop: &Arc<AtomicBool>,
    tx: mpsc::Sender<Duration>,
) -> Reported<u64> {
    let (moved, stop) = (Arc::clone(moved), Arc::clone(stop));
    thread::spawn(move || {
        let (start, mut offset) = (Instant::now(), 0);
        let mut told = false;
        while !stop.load(Ordering::Relaxed) {
            echo(&mut stream, &mut offset, CHUNK as u64)?;
            moved.store(offset, Ordering::Relaxed);
            if !told && offset >= baseline {
                told = true;
                let _ = tx.send(start.elapsed());
            }
        }
        finish(stream)?;
        Ok(offset)
    })
}

fn joined<T>(handle: Reported<T>) -> Result<T, Fail> {
    handle
        .join()
        .map_err(|_| Fail::Failed("a job thread panicked".to_owned()))?
}

pub fn v4(v: &str) -> Result<std::net::Ipv4Addr, Fail> {
    v.parse()
        .map_err(|_| Fail::Usage(format!("{v}: not an IPv4 address")))
}

pub fn number(v: &str) -> Result<u64, Fail> {
    v.parse()
        .map_err(|_| Fail::Usage(format!("{v}: not a number")))
}

/// A packet socket on `ifname` and the MAC of the gateway `gw`, asked by ARP as `me`.
pub fn gateway_link(
    ifname: &str,
    me: std::net::Ipv4Addr,
    gw: std::net::Ipv4Addr,
) -> Result<(Link, smoltcp::wire::EthernetAddress), Fail> {
    let link = Link::open(ifname).map_err(|e| Fail::Failed(e.to_string()))?;
    let gw_mac = link
        .resolve(me, gw, ARP_RETRY, ARP_TIMEOUT)
        .map_err(|e| io_fail(&format!("ARP for {gw} on {ifname}"), e))?;
    Ok((link, gw_mac))
}
