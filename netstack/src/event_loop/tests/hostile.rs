//! The loop against hostile input, in-process: malformed frames are counted and dropped, and
//! mutations of valid frames (xorshift-seeded, reproducible) and hostile segments on a live
//! flow never panic it nor stop other flows. Run by `cargo test`; the rig is `super`'s.

use super::*;

#[test]
fn malformed_frames_are_counted_and_dropped() {
    let mut r = Rig::new();
    for frame in [&[0u8; 3][..], &[0xffu8; 60][..], &[0u8; 1514][..]] {
        nix::unistd::write(&r.sandbox, frame).expect("write");
    }
    let start = Instant::now();
    while r.lp.drops.malformed < 2 {
        assert!(
            start.elapsed() < DEADLINE,
            "malformed frames not counted: {:?}",
            r.lp.drops
        );
        r.turn();
    }
}

/// xorshift64: reproducible mutations without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Valid frames of every kind the loop handles, as seeds for mutation.
fn seed_frames(port: u16) -> Vec<Vec<u8>> {
    let l2 = L2 {
        src: SANDBOX_MAC,
        dst: EthernetAddress(GATEWAY_MAC),
    };
    let mut seeds = Vec::new();
    for flags in [
        TcpFlags {
            syn: true,
            ..TcpFlags::default()
        },
        ACK,
        TcpFlags {
            fin: true,
            ack: true,
            ..TcpFlags::default()
        },
    ] {
        let mut buf = vec![0u8; 200];
        let hdr = TcpHeader {
            src_port: SPORT,
            dst_port: port,
            seq: IRS,
            ack: 1,
            flags,
            window: 100,
            syn_options: flags.syn.then_some((1460, Some(7))),
            timestamp: None,
        };
        let len = emit::tcp(
            &mut buf,
            l2,
            sandbox_ip(),
            gateway_ip(),
            &hdr,
            40,
            Csum::Full,
        )
        .expect("emit");
        buf.truncate(len);
        seeds.push(buf);
    }
    let mut buf = vec![0u8; 200];
    let src = std::net::SocketAddr::new(sandbox_ip(), 5000);
    let dst = std::net::SocketAddr::new(IpAddr::V4(DNS_V4), 53);
    let len = emit::udp(&mut buf, l2, src, dst, 30, Csum::Full).expect("emit");
    buf.truncate(len);
    seeds.push(buf);
    // ARP request for the gateway, and an ICMP echo request to it.
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&SANDBOX_MAC.0);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&SANDBOX_MAC.0);
    arp.extend_from_slice(&[10, 0, 2, 100, 0, 0, 0, 0, 0, 0, 10, 0, 2, 2]);
    seeds.push(arp);
    let mut echo = vec![0u8; 14 + 20 + 16];
    echo[..6].copy_from_slice(&GATEWAY_MAC);
    echo[6..12].copy_from_slice(&SANDBOX_MAC.0);
    echo[12..14].copy_from_slice(&[0x08, 0x00]);
    echo[14..34].copy_from_slice(&[
        0x45, 0, 0, 36, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 2, 100, 10, 0, 2, 2,
    ]);
    echo[34..42].copy_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
    seeds.push(echo);
    seeds
}

#[test]
fn mutated_frames_never_panic_or_stop_the_loop() {
    let mut r = Rig::new();
    // Nothing a mutated frame addresses may leave this process: no outbound, no host
    // loopback, no DNS upstream. Only parsing, the control plane and refusals run.
    r.lp.cfg.outbound = false;
    r.lp.cfg.host_loopback = false;
    r.lp.cfg.dns = false;
    let seeds = seed_frames(r.port());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut frame = Vec::with_capacity(2048);
    for i in 0..20_000 {
        frame.clear();
        frame.extend_from_slice(&seeds[rng.below(seeds.len())]);
        for _ in 0..=rng.below(4) {
            match rng.below(3) {
                0 if !frame.is_empty() => {
                    let at = rng.below(frame.len());
                    frame[at] = rng.next() as u8;
                }
                0 => {}
                1 => frame.truncate(rng.below(frame.len() + 1)),
                _ => frame.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
            }
        }
        if frame.is_empty() {
            continue;
        }
        // The fake tap refuses writes when full; turn the loop to drain it.
        while nix::unistd::write(&r.sandbox, &frame).is_err() {
            r.turn();
        }
        if i % 64 == 0 {
            r.turn();
            let mut sink = [0u8; 2048];
            while nix::unistd::read(&r.sandbox, &mut sink).is_ok() {}
        }
    }
    // Still serving: a fresh connection through the gateway works.
    r.lp.cfg.host_loopback = true;
    let mut sink = [0u8; 2048];
    while nix::unistd::read(&r.sandbox, &mut sink).is_ok() {
        r.turn();
    }
    let syn = TcpFlags {
        syn: true,
        ..TcpFlags::default()
    };
    r.send_from(SPORT + 9, IRS + 7, 0, syn, &[], true);
    let (_, ack, flags, _) = r.recv_for(SPORT + 9, &mut sink);
    assert!(
        flags.syn && flags.ack && ack == IRS + 8,
        "loop no longer serves new flows: {flags:?} ack {ack}"
    );
}

#[test]
fn hostile_segments_on_a_live_flow_never_panic_and_other_flows_carry_on() {
    let mut r = Rig::new();
    let (iss, _victim) = r.connect();
    let mut buf = [0u8; 2048];
    let syn = TcpFlags {
        syn: true,
        ..TcpFlags::default()
    };
    let mut rng = Rng(42);
    let payload = [0xa5u8; 1400];
    // Random SYNs open new flows to the listener: accept and drop them as they come.
    r.listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    for _ in 0..5_000 {
        let flags = TcpFlags {
            syn: rng.below(8) == 0,
            ack: rng.below(4) != 0,
            fin: rng.below(8) == 0,
            rst: rng.below(64) == 0,
        };
        let len = rng.below(payload.len());
        let seq = IRS.wrapping_add(rng.next() as u32 % 200_000);
        let ack = iss.wrapping_add(rng.next() as u32 % 200_000);
        r.send(seq, ack, flags, &payload[..len], false);
        r.turn();
        while nix::unistd::read(&r.sandbox, &mut buf).is_ok() {}
        while r.listener.accept().is_ok() {}
    }
    // A second connection, to a fresh listener, still works end to end.
    r.listener = TcpListener::bind("127.0.0.1:0").expect("second listener");
    r.send_from(SPORT + 1, IRS, 0, syn, &[], true);
    let (iss2, ack, flags, _) = r.recv_for(SPORT + 1, &mut buf);
    assert!(flags.syn && flags.ack && ack == IRS + 1);
    let (mut server, _) = r.listener.accept().expect("accept second");
    server.set_read_timeout(Some(DEADLINE)).expect("timeout");
    r.send_from(SPORT + 1, IRS + 1, iss2 + 1, ACK, b"still here", false);
    let mut got = [0u8; 10];
    let start = Instant::now();
    let mut have = 0;
    server.set_nonblocking(true).expect("nonblocking");
    while have < got.len() {
        assert!(start.elapsed() < DEADLINE, "second flow carried nothing");
        r.turn();
        match server.read(&mut got[have..]) {
            Ok(n) => have += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("second flow: {e}"),
        }
    }
    assert_eq!(&got, b"still here");
}
