//! The whole loop in-process, without privilege: a SOCK_SEQPACKET socketpair stands in for the
//! tap (it keeps frame boundaries like a tap fd) and a loopback listener is the host server.
//! Checks a TCP flow end to end and that its steady state allocates nothing.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::Events;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use smoltcp::wire::EthernetAddress;

use super::*;
use crate::config::{DNS_V4, GATEWAY_V4};
use crate::sys::alloc_count::allocations;
use crate::wire::emit::{self, Csum, TcpHeader};
use crate::wire::{TcpFlags, L2};

const SANDBOX_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0x64]);
const SPORT: u16 = 40000;
const IRS: u32 = 1_000_000;
const MTU: u32 = 1500;
const DEADLINE: Duration = Duration::from_secs(10);

struct Rig {
    lp: EventLoop,
    events: Events,
    sandbox: OwnedFd,
    listener: TcpListener,
    /// Allocations the loop made while `counting` was on.
    allocs: u64,
    counting: bool,
}

fn sandbox_ip() -> IpAddr {
    IpAddr::V4(crate::config::SANDBOX_V4)
}

fn gateway_ip() -> IpAddr {
    IpAddr::V4(GATEWAY_V4)
}

impl Rig {
    fn new() -> Rig {
        let cfg = StackConfig {
            mtu: MTU,
            ..StackConfig::default()
        };
        Rig::with(cfg, None)
    }

    /// A rig with `cfg` (its MTU should stay `MTU`) and a command channel when given.
    fn with(cfg: StackConfig, commands: Option<crate::command::Commands>) -> Rig {
        let (tap, sandbox) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        let lp = EventLoop::new(tap, cfg, commands).expect("event loop");
        Rig {
            lp,
            events: Events::with_capacity(64),
            sandbox,
            listener: TcpListener::bind("127.0.0.1:0").expect("listener"),
            allocs: 0,
            counting: false,
        }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().expect("local addr").port()
    }

    fn turn(&mut self) {
        let before = allocations();
        self.lp
            .turn(&mut self.events, Some(Duration::from_millis(5)))
            .expect("turn");
        if self.counting {
            self.allocs += allocations() - before;
        }
    }

    /// Opens a flow from SPORT: SYN, the SYN-ACK, the host's accept, our ACK.
    /// Returns our peer's initial sequence number and the host's end of the connection.
    fn connect(&mut self) -> (u32, TcpStream) {
        let syn = TcpFlags {
            syn: true,
            ..TcpFlags::default()
        };
        self.send(IRS, 0, syn, &[], true);
        let mut buf = [0u8; 2048];
        let (iss, ack, flags, _) = self.recv(&mut buf);
        assert!(
            flags.syn && flags.ack,
            "SYN-ACK once the host connect succeeded"
        );
        assert_eq!(ack, IRS + 1);
        let (server, _) = self.listener.accept().expect("accept");
        server.set_read_timeout(Some(DEADLINE)).expect("timeout");
        self.send(IRS + 1, iss + 1, ACK, &[], false);
        (iss, server)
    }

    /// Writes a TCP segment from the sandbox to 10.0.2.2:port.
    fn send(&mut self, seq: u32, ack: u32, flags: TcpFlags, payload: &[u8], syn_opts: bool) {
        self.send_from(SPORT, seq, ack, flags, payload, syn_opts);
    }

    /// Same, from sandbox port `sport`.
    fn send_from(
        &mut self,
        sport: u16,
        seq: u32,
        ack: u32,
        flags: TcpFlags,
        payload: &[u8],
        syn_opts: bool,
    ) {
        let mut buf = [0u8; 1600];
        let l2 = L2 {
            src: SANDBOX_MAC,
            dst: EthernetAddress(GATEWAY_MAC),
        };
        let off = emit::tcp_payload_offset(sandbox_ip(), emit::options_len(syn_opts, false));
        buf[off..off + payload.len()].copy_from_slice(payload);
        let hdr = TcpHeader {
            src_port: sport,
            dst_port: self.port(),
            seq,
            ack,
            flags,
            window: 1024, // << 7 = 128 KiB
            syn_options: syn_opts.then_some((1460, Some(7))),
            timestamp: None,
        };
        let len = emit::tcp(
            &mut buf,
            l2,
            sandbox_ip(),
            gateway_ip(),
            &hdr,
            payload.len(),
            Csum::Full,
        )
        .expect("emit");
        nix::unistd::write(&self.sandbox, &buf[..len]).expect("write to fake tap");
    }

    /// Turns the loop until the sandbox receives a TCP segment; returns (seq, ack, flags, payload len).
    fn recv(&mut self, payload: &mut [u8]) -> (u32, u32, TcpFlags, usize) {
        self.recv_for(SPORT, payload)
    }

    /// Same, for segments to sandbox port `dport` (others are discarded).
    fn recv_for(&mut self, dport: u16, payload: &mut [u8]) -> (u32, u32, TcpFlags, usize) {
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        loop {
            match nix::unistd::read(&self.sandbox, &mut buf) {
                Ok(n) => {
                    if let Ok((_, Frame::Ip { l4: L4::Tcp(s), .. })) = wire::parse(&buf[..n]) {
                        if s.dst_port != dport {
                            continue;
                        }
                        payload[..s.payload.len()].copy_from_slice(s.payload);
                        return (s.seq, s.ack, s.flags, s.payload.len());
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => self.turn(),
                Err(e) => panic!("read fake tap: {e}"),
            }
            assert!(start.elapsed() < DEADLINE, "no segment for the sandbox");
        }
    }
}

const ACK: TcpFlags = TcpFlags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
};

#[test]
fn tcp_flow_through_the_loop_carries_data_both_ways_without_allocating() {
    let mut r = Rig::new();
    let (iss, mut server) = r.connect();

    // Warm-up, then count: sandbox -> host, 200 segments of 1000 bytes.
    let chunk = [0x5au8; 1000];
    let mut seq = IRS + 1;
    let mut got = [0u8; 1000];
    for i in 0..200 {
        r.counting = i >= 20;
        r.send(seq, iss + 1, ACK, &chunk, false);
        seq += 1000;
        r.turn();
        server
            .read_exact(&mut got)
            .expect("server reads the segment");
        assert_eq!(got, chunk);
    }

    // host -> sandbox: the server writes, the sandbox ACKs each segment.
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    server.write_all(&data).expect("server write");
    let mut received = Vec::with_capacity(data.len());
    let mut payload = [0u8; 2048];
    r.counting = true;
    while received.len() < data.len() {
        let (s, _, _, n) = r.recv(&mut payload);
        assert_eq!(s, iss + 1 + received.len() as u32, "in-order delivery");
        received.extend_from_slice(&payload[..n]);
        r.send(seq, s + n as u32, ACK, &[], false);
    }
    assert_eq!(received, data);
    assert_eq!(r.allocs, 0, "the steady-state data path allocated");

    // The sandbox resets: the host sees the connection reset.
    let rst = TcpFlags {
        rst: true,
        ..TcpFlags::default()
    };
    r.counting = false;
    r.send(seq, 0, rst, &[], false);
    let start = Instant::now();
    while r.lp.flows.occupied().count() > 0 {
        assert!(start.elapsed() < DEADLINE, "the RST did not end the flow");
        r.turn();
    }
    let mut one = [0u8; 1];
    let err = server.read(&mut one);
    assert!(
        matches!(&err, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "host must see RST, got {err:?}"
    );
}

#[test]
fn syn_to_closed_port_gets_rst_and_stray_segment_gets_rst() {
    let mut r = Rig::new();
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    r.listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    // Point the rig's port at the closed one by sending by hand.
    let mut buf = [0u8; 256];
    let l2 = L2 {
        src: SANDBOX_MAC,
        dst: EthernetAddress(GATEWAY_MAC),
    };
    let hdr = TcpHeader {
        src_port: SPORT,
        dst_port: port,
        seq: IRS,
        ack: 0,
        flags: TcpFlags {
            syn: true,
            ..TcpFlags::default()
        },
        window: 1024,
        syn_options: Some((1460, None)),
        timestamp: None,
    };
    let len = emit::tcp(
        &mut buf,
        l2,
        sandbox_ip(),
        gateway_ip(),
        &hdr,
        0,
        Csum::Full,
    )
    .expect("emit");
    nix::unistd::write(&r.sandbox, &buf[..len]).expect("write");
    let mut scratch = [0u8; 2048];
    let (_, ack, flags, _) = r.recv(&mut scratch);
    assert!(flags.rst && flags.ack, "refused connect answers RST");
    assert_eq!(ack, IRS + 1);

    // A segment for no flow is answered with RST at its ACK number.
    r.send(IRS + 50, 777, ACK, b"zz", false);
    let (seq, _, flags, _) = r.recv(&mut scratch);
    assert!(flags.rst);
    assert_eq!(seq, 777);
}

/// Writes a UDP datagram from the sandbox's port `sport` to `dst`.
fn send_udp(rig: &Rig, sport: u16, dst: std::net::SocketAddr, payload: &[u8]) {
    send_udp_from(
        rig,
        std::net::SocketAddr::new(sandbox_ip(), sport),
        dst,
        payload,
    );
}

/// Writes a UDP datagram from the sandbox address `src` to `dst`.
fn send_udp_from(rig: &Rig, src: std::net::SocketAddr, dst: std::net::SocketAddr, payload: &[u8]) {
    let l2 = L2 {
        src: SANDBOX_MAC,
        dst: EthernetAddress(GATEWAY_MAC),
    };
    let mut buf = [0u8; 1600];
    let off = emit::udp_payload_offset(src.ip());
    buf[off..off + payload.len()].copy_from_slice(payload);
    let len = emit::udp(&mut buf, l2, src, dst, payload.len(), Csum::Full).expect("emit");
    nix::unistd::write(&rig.sandbox, &buf[..len]).expect("write to fake tap");
}

#[test]
fn udp_replies_beyond_one_batch_each_reach_the_sandbox_as_their_own_frame_in_order() {
    let mut rig = Rig::new();
    let host = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = host.local_addr().expect("addr").port();
    let dst = std::net::SocketAddr::new(gateway_ip(), port);
    send_udp(&rig, 5300, dst, b"hello");
    host.set_nonblocking(true).expect("nonblocking");
    let mut got = [0u8; 64];
    let start = Instant::now();
    let (n, flow) = loop {
        rig.turn();
        match host.recv_from(&mut got) {
            Ok(r) => break r,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("host recv: {e}"),
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the datagram never reached the host"
        );
    };
    assert_eq!(&got[..n], b"hello");
    // More replies than one recvmmsg takes, sizes 1..=N bytes, queued before the loop looks.
    let replies = 3 * crate::sys::socket::MAX_BATCH + 1;
    for i in 1..=replies {
        host.send_to(&vec![i as u8; i], flow).expect("reply");
    }
    let start = Instant::now();
    let mut seen = 0;
    let mut buf = [0u8; 2048];
    while seen < replies {
        match nix::unistd::read(&rig.sandbox, &mut buf) {
            Ok(n) => {
                let Ok((_, Frame::Ip { l4, .. })) = wire::parse(&buf[..n]) else {
                    continue;
                };
                let L4::Udp {
                    src_port,
                    dst_port,
                    payload,
                } = l4
                else {
                    continue;
                };
                seen += 1;
                assert_eq!((src_port, dst_port), (port, 5300));
                assert_eq!(payload, &vec![seen as u8; seen][..], "reply {seen}");
            }
            Err(nix::errno::Errno::EAGAIN) => rig.turn(),
            Err(e) => panic!("read fake tap: {e}"),
        }
        assert!(
            start.elapsed() < DEADLINE,
            "only {seen} of {replies} replies came"
        );
    }
}

#[test]
fn stop_then_linger_delivers_the_sandboxs_last_bytes_and_fin() {
    let mut r = Rig::new();
    let (iss, mut server) = r.connect();
    // The command's last write and its FIN are still queued on the tap when it exits.
    let fin = TcpFlags {
        fin: true,
        ack: true,
        ..TcpFlags::default()
    };
    r.send(IRS + 1, iss + 1, fin, b"last words", false);
    let (stop_rx, stop_tx) = nix::unistd::pipe().expect("pipe");
    nix::unistd::write(&stop_tx, b"x").expect("stop");
    let started = Instant::now();
    r.lp.run_until(stop_rx.as_fd(), DEADLINE)
        .expect("run_until");
    assert!(
        started.elapsed() < DEADLINE,
        "returned only at the linger deadline"
    );
    let mut got = Vec::new();
    server.read_to_end(&mut got).expect("host reads to EOF");
    assert_eq!(got, b"last words");
}

#[test]
fn stop_with_an_open_flow_returns_at_the_linger_deadline() {
    let mut r = Rig::new();
    let (_, mut server) = r.connect();
    let (stop_rx, stop_tx) = nix::unistd::pipe().expect("pipe");
    nix::unistd::write(&stop_tx, b"x").expect("stop");
    let linger = Duration::from_millis(50);
    let started = Instant::now();
    r.lp.run_until(stop_rx.as_fd(), linger).expect("run_until");
    assert!(
        started.elapsed() >= linger,
        "a flow the sandbox never closed holds the linger"
    );
    drop(r);
    let mut one = [0u8; 1];
    let err = server.read(&mut one);
    assert!(
        matches!(&err, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "a cut-off flow must reach the host as a reset, not EOF: {err:?}"
    );
}

mod budget;
mod dhcp;
mod dns;
mod forward;
mod hostile;
mod policy;
mod ra;
