//! rr-probe's `flood` job, the hostile sandbox of scripts/stress: writes COUNT hand-built
//! frames onto the sandbox's tap as fast as the link takes them, after learning the gateway's
//! MAC by ARP (as `craft`). Kinds:
//!   malformed   random bytes behind a valid or random Ethernet header, a third from made-up
//!               source MACs, a third cut inside an IP, TCP or UDP header
//!   syn         SYNs to TARGET from source ports 20000 up (one half-open flow each)
//!   udp         datagrams to TARGET over FLOWS source ports from 10000 up (one flow each)
//!   rst, syn-on RSTs or SYNs with random sequence numbers on one flow, SRC4:SPORT -> TARGET
//! Prints `gateway MAC`, then `sent N KIND in T ms` (`failed F` when the link refused frames:
//! a full queue drops them). Frames come from `rr_tests::frames::craft`, reworked in place
//! with smoltcp's views (checksums recomputed). Reproducible: a fixed xorshift seed.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use rr_tests::frames::{self, Link, Proto, Target};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, IpAddress, Ipv4Packet, TcpPacket, TcpSeqNumber,
};

use crate::{io_fail, Fail};

const ARP_RETRY: Duration = Duration::from_secs(1);
const ARP_TIMEOUT: Duration = Duration::from_secs(10);
/// First source port of `syn` floods, and of `udp` flows.
const SYN_SPORT: u16 = 20000;
const UDP_SPORT: u16 = 10000;
/// Ethernet and IPv4 header lengths of crafted frames (no IP options).
const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;

/// xorshift64: reproducible floods without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

pub fn flood(ifname: &str, gw: &str, src4: &str, kind: &str, rest: &[&str]) -> Result<u8, Fail> {
    let bad = |v: &str| Fail::Usage(format!("{v}: not an IPv4 address"));
    let gw: Ipv4Addr = gw.parse().map_err(|_| bad(gw))?;
    let src: Ipv4Addr = src4.parse().map_err(|_| bad(src4))?;
    let number = |v: &str| {
        v.parse::<u32>()
            .map_err(|_| Fail::Usage(format!("{v}: not a number")))
    };
    let target = |v: &str| v.parse::<Target>().map_err(Fail::Usage);
    let link = Link::open(ifname).map_err(|e| Fail::Failed(e.to_string()))?;
    let gw_mac = link
        .resolve(src, gw, ARP_RETRY, ARP_TIMEOUT)
        .map_err(|e| io_fail(&format!("ARP for {gw} on {ifname}"), e))?;
    println!("gateway {gw_mac}");
    let mut rng = Rng(0x05ee_d0ff_100d);
    let me = link.mac();
    let craft = |sport: u16, t: Target| {
        frames::craft(me, gw_mac, IpAddr::V4(src), sport, t).map_err(Fail::Usage)
    };
    let start = Instant::now();
    let (mut sent, mut failed) = (0u32, 0u32);
    let mut send = |frame: &[u8]| match link.send(frame) {
        Ok(()) => sent += 1,
        Err(_) => failed += 1,
    };
    match (kind, rest) {
        ("malformed", [count]) => {
            let tcp = craft(40000, target(format!("tcp:{gw}:80").as_str())?)?;
            let udp = craft(40000, target(format!("udp:{gw}:53").as_str())?)?;
            for i in 0..number(count)? {
                send(&malformed(&mut rng, i, [tcp.as_slice(), udp.as_slice()]));
            }
        }
        ("syn", [count, to]) => {
            let t = tcp_target(to)?;
            for i in 0..number(count)? {
                send(&craft(SYN_SPORT.wrapping_add(i as u16), t)?);
            }
        }
        ("udp", [count, to, flows]) => {
            let t = target(to)?;
            let flows = number(flows)?.max(1);
            for i in 0..number(count)? {
                send(&craft(UDP_SPORT.wrapping_add((i % flows) as u16), t)?);
            }
        }
        ("rst" | "syn-on", [count, to, sport]) => {
            let sport = sport
                .parse::<u16>()
                .map_err(|_| Fail::Usage(format!("{sport}: not a port")))?;
            let mut frame = craft(sport, tcp_target(to)?)?;
            for _ in 0..number(count)? {
                forge(&mut frame, kind == "rst", rng.next() as u32);
                send(&frame);
            }
        }
        _ => {
            return Err(Fail::Usage(
                "flood IFNAME GW4 SRC4 malformed COUNT | syn COUNT tcp:ADDR:PORT | \
                 udp COUNT udp:ADDR:PORT FLOWS | rst|syn-on COUNT tcp:ADDR:PORT SPORT"
                    .to_owned(),
            ))
        }
    }
    let ms = start.elapsed().as_millis();
    match failed {
        0 => println!("sent {sent} {kind} in {ms} ms"),
        f => println!("sent {sent} {kind} in {ms} ms, failed {f}"),
    }
    Ok(0)
}

fn tcp_target(v: &str) -> Result<Target, Fail> {
    match v.parse::<Target>().map_err(Fail::Usage)? {
        t @ Target {
            proto: Proto::Tcp,
            dst,
        } if dst.is_ipv4() => Ok(t),
        _ => Err(Fail::Usage(format!("{v}: not tcp:IPV4:PORT"))),
    }
}

/// Turns a crafted IPv4 SYN into a RST (or keeps it a SYN) at sequence number `seq`.
fn forge(frame: &mut [u8], rst: bool, seq: u32) {
    let (src, dst) = {
        let ip = Ipv4Packet::new_unchecked(&frame[ETH_LEN..]);
        (ip.src_addr(), ip.dst_addr())
    };
    let mut tcp = TcpPacket::new_unchecked(&mut frame[ETH_LEN + IPV4_LEN..]);
    tcp.set_seq_number(TcpSeqNumber(seq as i32));
    tcp.set_syn(!rst);
    tcp.set_rst(rst);
    tcp.fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst));
}

/// Frame `i` of a malformed flood, reworked from one of `valid` (a TCP SYN and a UDP datagram).
fn malformed(rng: &mut Rng, i: u32, valid: [&[u8]; 2]) -> Vec<u8> {
    let base = valid[(i % 2) as usize];
    let mut f = match i % 3 {
        // Cut inside the IP or transport header, or just after it.
        0 => base[..(ETH_LEN + rng.next() as usize % (base.len() - ETH_LEN)).max(1)].to_vec(),
        // Random bytes after the Ethernet header, any length up to a full frame.
        1 => {
            let len = ETH_LEN + rng.next() as usize % 1500;
            let mut f = base[..ETH_LEN].to_vec();
            f.extend((ETH_LEN..len).map(|_| rng.next() as u8));
            f
        }
        // The valid frame with a few bytes flipped.
        _ => {
            let mut f = base.to_vec();
            for _ in 0..1 + rng.next() % 4 {
                let at = ETH_LEN + rng.next() as usize % (f.len() - ETH_LEN);
                f[at] ^= rng.next() as u8 | 1;
            }
            f
        }
    };
    if i % 3 == 1 && f.len() >= ETH_LEN {
        // From a made-up source MAC (locally administered, unicast).
        let [a, b, c, d] = i.to_be_bytes();
        EthernetFrame::new_unchecked(&mut f[..])
            .set_src_addr(EthernetAddress([0x02, 0x99, a, b, c, d]));
    }
    f
}
