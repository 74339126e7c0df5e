//! rr-probe's raw frame jobs: `craft` (ARP for the gateway, then hand-built TCP SYNs or UDP
//! datagrams) and `sniff` (report every IP packet to given prefixes).
//! Called by `main`'s dispatch; the frame building and parsing are `rr_tests::frames`'.

use std::time::Duration;

use rr_tests::frames::{self, Link, Prefix, Target};

use crate::{exit_at_stdin_eof, io_fail, parse_all, Fail};

/// `craft`: ARP requests are resent this often, until ARP_TIMEOUT.
const ARP_RETRY: Duration = Duration::from_secs(1);
const ARP_TIMEOUT: Duration = Duration::from_secs(10);
/// `craft`: source port of the first crafted packet (the next ones count up).
const CRAFT_SPORT: u16 = 40000;

pub fn craft(ifname: &str, gw: &str, src4: &str, src6: &str, targets: &[&str]) -> Result<u8, Fail> {
    let bad = |what: &str, v: &str| Fail::Usage(format!("{v}: not an {what} address"));
    let gw: std::net::Ipv4Addr = gw.parse().map_err(|_| bad("IPv4", gw))?;
    let src4: std::net::IpAddr = src4.parse().map_err(|_| bad("IPv4", src4))?;
    let src6: std::net::IpAddr = src6.parse().map_err(|_| bad("IPv6", src6))?;
    let std::net::IpAddr::V4(arp_src) = src4 else {
        return Err(bad("IPv4", &src4.to_string()));
    };
    let targets: Vec<Target> = parse_all(targets)?;
    let link = Link::open(ifname).map_err(|e| Fail::Failed(e.to_string()))?;
    let gw_mac = link
        .resolve(arp_src, gw, ARP_RETRY, ARP_TIMEOUT)
        .map_err(|e| io_fail(&format!("ARP for {gw} on {ifname}"), e))?;
    println!("gateway {gw_mac}");
    for (i, t) in targets.into_iter().enumerate() {
        let src = if t.dst.is_ipv4() { src4 } else { src6 };
        let sport = CRAFT_SPORT + i as u16;
        let frame = frames::craft(link.mac(), gw_mac, src, sport, t).map_err(Fail::Usage)?;
        link.send(&frame).map_err(|e| Fail::Failed(e.to_string()))?;
        println!("sent {t}");
    }
    Ok(0)
}

/// `forge-macs-then-serve`'s first half: after `delay_ms`, writes `count` ARP requests for
/// `gw` as `src` onto `ifname`, each from another made-up source MAC
/// (frames::forged_arp_request).
pub fn forge_macs(
    ifname: &str,
    count: &str,
    src: &str,
    gw: &str,
    delay_ms: &str,
) -> Result<(), Fail> {
    let number = |v: &str| {
        v.parse::<u32>()
            .map_err(|_| Fail::Usage(format!("{v}: not a number")))
    };
    let (count, delay_ms) = (number(count)?, number(delay_ms)?);
    // Quiet the link first: no IPv6 on it, so no MLD report or solicitation of the sandbox's
    // own teaches the helper anything between the forged frames and what the test sends.
    let sysctl = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    std::fs::write(&sysctl, "1").map_err(|e| io_fail(&format!("write 1 to {sysctl}"), e))?;
    std::thread::sleep(Duration::from_millis(delay_ms.into()));
    let bad = |v: &str| Fail::Usage(format!("{v}: not an IPv4 address"));
    let src: std::net::Ipv4Addr = src.parse().map_err(|_| bad(src))?;
    let gw: std::net::Ipv4Addr = gw.parse().map_err(|_| bad(gw))?;
    let link = Link::open(ifname).map_err(|e| Fail::Failed(e.to_string()))?;
    for i in 0..count {
        let frame = frames::forged_arp_request(i, src, gw);
        link.send(&frame).map_err(|e| Fail::Failed(e.to_string()))?;
    }
    println!("forged {count}");
    Ok(())
}

pub fn sniff(prefixes: &[&str]) -> Result<u8, Fail> {
    let prefixes: Vec<Prefix> = parse_all(prefixes)?;
    exit_at_stdin_eof();
    // `ready` comes once the socket is open: nothing sent after it can be missed.
    frames::sniff(
        &prefixes,
        || println!("ready"),
        |seen| println!("seen {seen}"),
    )
    .map_err(|e| Fail::Failed(e.to_string()))?;
    Ok(0)
}
