//! Fuzz target for the whole stack as the sandbox sees it: a sequence of frames (each as a
//! 2-byte big-endian length, then that many bytes) goes into a real `Stack` through a datagram
//! socket pair standing in for tap0, and the stack runs until it has read them all (one
//! `run_until` whose stop fd is already readable). Every frame passes through `wire::parse`,
//! the link's MAC handling, ARP, NDP, ICMP, DHCP, router solicitations and the flow table's
//! refusals. The host side is switched off: no outbound, no host loopback, no DNS, so nothing
//! a frame asks for leaves the process (TCP with a host socket is `tcp_flow`'s, against a fake).
//! The stack must never panic, and every frame it writes back must come from the gateway's
//! MAC, fit the MTU, and parse, with a correct IPv4 header checksum.
#![no_main]

use std::io::{ErrorKind, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use netstack::config::{StackConfig, GATEWAY_MAC};
use netstack::wire::{self, Frame};
use netstack::Stack;
use smoltcp::wire::{EthernetFrame, EthernetProtocol, Ipv4Packet};

const MTU: u32 = 1500;
/// Frames per input: the stack reads two tap batches (64 each) in one `run_until`.
const MAX_FRAMES: usize = 64;
/// Ethernet header.
const ETH_HEADER: usize = 14;

fuzz_target!(|data: &[u8]| {
    let (tap, sandbox) = UnixDatagram::pair().expect("socket pair");
    sandbox.set_nonblocking(true).expect("non-blocking");
    let mut rest = data;
    for _ in 0..MAX_FRAMES {
        let [hi, lo, tail @ ..] = rest else { break };
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (frame, next) = tail.split_at(len);
        rest = next;
        if frame.is_empty() {
            continue;
        }
        match sandbox.send(frame) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("write to the fake tap: {e}"),
        }
    }
    let cfg = StackConfig {
        mtu: MTU,
        outbound: false,
        host_loopback: false,
        dns: false,
        router_advertisements: true,
        dhcp_server: true,
        max_flows: 64,
        busy_poll: Duration::ZERO,
        ..StackConfig::default()
    };
    let (_control, commands) = netstack::command::channel().expect("command channel");
    let stack = Stack::new(OwnedFd::from(tap), cfg, commands).expect("stack");
    let (mut stop_tx, stop_rx) = UnixStream::pair().expect("stop pair");
    stop_tx.write_all(b"x").expect("stop");
    stack
        .run_until(stop_rx.as_fd(), Duration::ZERO)
        .expect("the stack stops cleanly");
    drop(stop_tx);
    drop(stop_rx);

    let mut buf = vec![0u8; 70_000];
    loop {
        let n = match sandbox.recv(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("read the fake tap: {e}"),
        };
        check_reply(&buf[..n]);
    }
});

/// A frame the stack sent toward the sandbox.
fn check_reply(frame: &[u8]) {
    assert!(
        frame.len() <= ETH_HEADER + MTU as usize,
        "frame over the MTU"
    );
    let eth = EthernetFrame::new_checked(frame).expect("a whole Ethernet header");
    assert_eq!(
        eth.src_addr().0,
        GATEWAY_MAC,
        "frames come from the gateway"
    );
    let parsed = wire::parse(frame);
    assert!(parsed.is_ok(), "our own frame does not parse: {parsed:?}");
    if let Ok((_, Frame::Ip { .. })) = parsed {
        if eth.ethertype() == EthernetProtocol::Ipv4 {
            let ip = Ipv4Packet::new_checked(eth.payload()).expect("parsed above");
            assert!(ip.verify_checksum(), "IPv4 header checksum");
        }
    }
}
