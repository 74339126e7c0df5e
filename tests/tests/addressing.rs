//! The address options and the virtual subnet's edges (issue 9, items 5, 6 and 7), as the
//! unprivileged test user: `--disable-host-loopback` against every spelling of the host's
//! loopback (through the gateway, and in hand-crafted frames to 127.0.0.1, 127.0.0.2,
//! 0.0.0.0, ::1, ::ffff:127.0.0.1 and ::, which no socket in the sandbox would send out),
//! `--cidr` and `--cidr6` (addresses, routes, the gateway reaching the host, DNS), `--mac`,
//! `--outbound-addr` and `--outbound-addr6` (by address and by interface name), and
//! the leak test: the subnet's own addresses never reach the real network.
//! Baits (`bait`) are what must see nothing; each is first shown to catch what it should.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread;

use rr_tests::addrs::{GATEWAY_V4, GATEWAY_V6, SANDBOX_V4, SANDBOX_V6};
use rr_tests::bait::{BaitNet, Catch, LoopbackBait, BAIT_V4, BAIT_V6};
use rr_tests::child::{run, TIMEOUT};
use rr_tests::pattern::{sha256_hex, TCP_SEED};
use rr_tests::resolver::{Behaviour, FakeResolver, ANSWER_V4, ANSWER_V6, ZONE};
use rr_tests::sandbox::{command, Harness};
use rr_tests::servers::TcpEcho;
use rr_tests::steps::{Steps, StepsOutput};

/// Bytes of each TCP echo through a moved gateway.
const ECHO_BYTES: u64 = 100_000;

fn run_steps(h: &Harness, flags: &[&str], steps: &Steps) -> StepsOutput {
    let argv = h.as_user_argv(&h.rootless_run_with(flags, &steps.sh(h)));
    StepsOutput::new(run(
        format!("rootless-run {} -- steps", flags.join(" ")),
        &mut command(&argv),
        TIMEOUT,
    ))
}

fn targets(protos: &[&str], ips: &[IpAddr], port: u16) -> Vec<String> {
    ips.iter()
        .flat_map(|ip| {
            protos
                .iter()
                .map(move |p| format!("{p}:{}", SocketAddr::new(*ip, port)))
        })
        .collect()
}

/// `$P craft tap0 ...`: hand-built frames from the sandbox's addresses to the gateway's MAC.
fn craft(targets: &[String]) -> String {
    format!(
        "$P craft tap0 {GATEWAY_V4} {SANDBOX_V4} {SANDBOX_V6} {}",
        targets.join(" ")
    )
}

#[test]
fn disable_host_loopback_blocks_every_spelling_of_the_hosts_loopback() {
    let h = Harness::new();
    let lo4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let lo4b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let bait = LoopbackBait::start(&[lo4, lo4b, lo6]);
    let port = bait.port();
    let gateways = [IpAddr::V4(GATEWAY_V4), IpAddr::V6(GATEWAY_V6)];
    let through_gateway = targets(&["tcp", "udp"], &gateways, port);

    // Control: with host loopback on, sockets and crafted frames to the gateway reach the
    // baits. This shows the baits catch, and that crafted frames are taken by the stack.
    let steps = Steps::new()
        .step("poke", &format!("$P poke {}", through_gateway.join(" ")))
        .step("craft", &craft(&through_gateway));
    let out = run_steps(&h, &[], &steps);
    assert_eq!(
        out.step("craft").exit,
        Some(0),
        "crafting frames failed\n{}",
        out.out
    );
    let caught = bait.caught(TIMEOUT);
    for (tcp, local) in [(true, lo4), (false, lo4), (true, lo6), (false, lo6)] {
        let n = caught
            .iter()
            .filter(|c| match c {
                Catch::Tcp { local: l, .. } => tcp && l.ip() == local,
                Catch::Udp { local: l, .. } => !tcp && l.ip() == local,
            })
            .count();
        assert_eq!(
            n,
            2,
            "control: the {} bait on {local} must catch the socket's and the crafted \
             packet's: {caught:?}\n{}",
            if tcp { "TCP" } else { "UDP" },
            out.out
        );
    }

    // Every spelling, with host loopback off.
    let spellings: Vec<IpAddr> = [
        "127.0.0.1",
        "127.0.0.2",
        "0.0.0.0",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:127.0.0.2",
        "::",
        "::ffff:0.0.0.0",
    ]
    .iter()
    .map(|s| s.parse().expect("a literal address"))
    .collect();
    let mut crafted = through_gateway.clone();
    crafted.extend(targets(&["tcp", "udp"], &spellings, port));
    let steps = Steps::new()
        .step("poke", &format!("$P poke {}", through_gateway.join(" ")))
        .step("craft", &craft(&crafted))
        // The stack answers this after it has handled every crafted frame before it.
        .step("after", &format!("$P poke tcp:{GATEWAY_V4}:{port}"));
    let out = run_steps(&h, &["--disable-host-loopback"], &steps);
    let caught = bait.caught(TIMEOUT);
    assert!(
        caught.is_empty(),
        "--disable-host-loopback: the host's loopback was reached: {caught:#?}\n{}",
        out.out
    );
    let craft = out.step("craft");
    assert!(
        craft.exit == Some(0)
            && craft
                .lines
                .iter()
                .filter(|l| l.starts_with("sent "))
                .count()
                == crafted.len(),
        "not every crafted frame was sent\n{}",
        out.out
    );
    for gw in gateways {
        let want = format!("tcp {} refused", SocketAddr::new(gw, port));
        assert!(
            out.step("poke").has(&want),
            "--disable-host-loopback: the gateway {gw} must refuse TCP (RST), want {want:?}\n{}",
            out.out
        );
    }
}

/// A TCP echo server on [::1] for the IPv6 gateway (servers::TcpEcho is IPv4): serves one
/// connection, then reports its peer.
fn v6_echo_once() -> (u16, mpsc::Receiver<SocketAddr>) {
    let l = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).expect("bind [::1]:0");
    let port = l.local_addr().expect("bound").port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        if let Ok((mut c, peer)) = l.accept() {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 || c.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = c.shutdown(std::net::Shutdown::Write);
            let _ = tx.send(peer);
        }
    });
    (port, rx)
}

#[test]
fn cidr_and_cidr6_move_the_sandbox_gateway_and_dns() {
    let h = Harness::new();
    let upstream = FakeResolver::start(Ipv4Addr::new(127, 0, 0, 81).into(), 0, Behaviour::Answer);
    let up = upstream.addr().to_string();
    let echo4 = TcpEcho::start();
    let (echo6_port, echo6_peer) = v6_echo_once();
    let name = format!("www.{ZONE}");
    let steps = Steps::new()
        .step("addr4", "ip -o -4 addr show dev tap0")
        .step("addr6", "ip -o -6 addr show dev tap0 scope global")
        .step("route4", "ip -4 route show default")
        .step("route6", "ip -6 route show default")
        .step("conf", "cat /etc/resolv.conf")
        .step(
            "echo4",
            &format!("$P tcp-echo 10.0.3.2:{} {ECHO_BYTES}", echo4.port()),
        )
        .step(
            "echo6",
            &format!("$P tcp-echo [fd00:1234::2]:{echo6_port} {ECHO_BYTES}"),
        )
        .step("dns4", &format!("$P dns-query 10.0.3.3:53 udp {name} a"))
        .step(
            "dns6",
            &format!("$P dns-query [fd00:1234::3]:53 tcp {name} aaaa"),
        );
    let flags = [
        "--cidr",
        "10.0.3.0/24",
        "--cidr6",
        "fd00:1234::/64",
        "--dns-upstream",
        &up,
    ];
    let out = run_steps(&h, &flags, &steps);
    let has = |step: &str, want: &str| {
        let s = out.step(step);
        assert!(
            s.lines.iter().any(|l| l.contains(want)),
            "step {step}: expected {want:?} in {:?}\n{}",
            s.lines,
            out.out
        );
    };
    has("addr4", "inet 10.0.3.100/24");
    has("addr6", "inet6 fd00:1234::100/64");
    has("route4", "default via 10.0.3.2 dev tap0");
    has("route6", "default via fd00:1234::2 dev tap0");
    let conf = out.step("conf");
    let nameservers: Vec<&str> = conf
        .lines
        .iter()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .map(str::trim)
        .collect();
    assert_eq!(
        nameservers,
        ["10.0.3.3", "fd00:1234::3"],
        "the generated resolv.conf must name the moved forwarder\n{}",
        out.out
    );
    let sha = sha256_hex(TCP_SEED, ECHO_BYTES);
    for step in ["echo4", "echo6"] {
        has(step, &format!("received {ECHO_BYTES} bytes sha256 {sha}"));
    }
    let rec = echo4.next_record(TIMEOUT);
    assert!(
        rec.peer.ip().is_loopback() && rec.bytes == ECHO_BYTES,
        "10.0.3.2 must reach the host's loopback: {rec:?}"
    );
    let peer6 = echo6_peer
        .recv_timeout(TIMEOUT)
        .expect("the [::1] echo served one connection");
    assert!(
        peer6.ip().is_loopback(),
        "fd00:1234::2 must reach ::1, saw {peer6}"
    );
    has("dns4", "answer 198.51.100.53");
    has("dns4", "rcode 0");
    has("dns6", &format!("answer {ANSWER_V6}"));
    assert_eq!(ANSWER_V4.to_string(), "198.51.100.53");
}

#[test]
fn mac_sets_the_address_of_tap0() {
    const MAC: &str = "02:72:72:00:00:01";
    let h = Harness::new();
    let steps = Steps::new().step("link", "ip -o link show dev tap0");
    let out = run_steps(&h, &["--mac", MAC], &steps);
    assert!(
        out.step("link")
            .lines
            .iter()
            .any(|l| l.contains(&format!("link/ether {MAC} "))),
        "--mac {MAC}: tap0 must carry that address\n{}",
        out.out
    );
}

/// The subnet's own addresses (network, gateway, DNS even when off, every other host, the
/// broadcast) are answered or refused by the stack, never routed out: three runs (defaults;
/// DNS and host loopback off; a moved subnet) poke them all over TCP and UDP from a launcher
/// whose every route ends at a sniffer, which must see none of it.
#[test]
fn the_virtual_subnets_addresses_never_leak_to_the_real_network() {
    let h = Harness::new();
    let watch = ["10.0.2.0/24", "fd00::/64", "10.0.3.0/24", "fd00:1234::/64"];
    let probes: Vec<IpAddr> = ["10.0.2.3", "fd00::3", "10.0.3.3", "fd00:1234::3"]
        .iter()
        .map(|s| s.parse().expect("a literal address"))
        .collect();
    let mut net = BaitNet::build(&h, &watch, &probes);
    let hosts = |v4: &str, v6: &str| -> Vec<IpAddr> {
        let v4s = [0, 1, 2, 3, 4, 99, 101, 254, 255]
            .iter()
            .map(|last| format!("{v4}.{last}").parse().expect("an IPv4 address"));
        let v6s = ["", "1", "2", "3", "4", "ff", "101", "ffff:ffff:ffff:ffff"]
            .iter()
            .map(|tail| format!("{v6}{tail}").parse().expect("an IPv6 address"));
        v4s.chain(v6s).collect()
    };
    let default_hosts = hosts("10.0.2", "fd00::");
    let moved_hosts = hosts("10.0.3", "fd00:1234::");
    // Never the machine's resolver: an upstream on the outer namespace's loopback, where
    // nothing listens.
    let no_upstream = ["--dns-upstream", "127.0.0.1:9"];
    let runs: [(&[&str], &Vec<IpAddr>); 3] = [
        (&no_upstream, &default_hosts),
        (
            &["--disable-dns", "--disable-host-loopback"],
            &default_hosts,
        ),
        (
            &[
                "--cidr",
                "10.0.3.0/24",
                "--cidr6",
                "fd00:1234::/64",
                "--disable-dns",
            ],
            &moved_hosts,
        ),
    ];
    for (n, (flags, ips)) in runs.iter().enumerate() {
        let barrier = BaitNet::barrier(n as u16);
        let mut pokes = targets(&["tcp", "udp"], ips, 53);
        pokes.extend(targets(&["tcp", "udp"], ips, 9));
        let steps = Steps::new()
            .step("poke", &format!("$P poke {}", pokes.join(" ")))
            .step("barrier", &format!("$P connect {barrier}"));
        let argv = net.in_outer(&h.as_user_argv(&h.rootless_run_with(flags, &steps.sh(&h))));
        let out = StepsOutput::new(run(
            format!("rootless-run {} -- poke the subnet", flags.join(" ")),
            &mut command(&argv),
            TIMEOUT,
        ));
        assert_eq!(
            (out.step("poke").exit, out.step("barrier").exit),
            (Some(0), Some(0)),
            "rootless-run {flags:?}: the pokes or the barrier failed, so the check proves \
             nothing\n{}",
            out.out
        );
        let seen = net.seen_before_barrier(n as u16, TIMEOUT);
        assert!(
            seen.is_empty(),
            "rootless-run {flags:?}: the subnet's own addresses reached the network: \
             {seen:#?}\n{}",
            out.out
        );
    }
}

/// `--outbound-addr` / `--outbound-addr6`: outbound flows leave from the given address, or
/// from the first address of the given interface. The launcher runs in the bait topology's
/// outer namespace, given extra addresses here; the control server reports the source.
#[test]
fn outbound_addr_and_outbound_addr6_choose_the_source_of_outbound_flows() {
    let h = Harness::new();
    let mut net = BaitNet::build(&h, &[], &[]);
    // Second addresses on the link, and another interface (a veth pair kept inside the outer
    // namespace: no dummy module here) whose addresses the bait reaches through the outer one.
    net.ip_outer(&["addr", "add", "203.0.113.3/24", "dev", "rr-out"]);
    net.ip_outer(&[
        "-6",
        "addr",
        "add",
        "2001:db8:b::3/64",
        "dev",
        "rr-out",
        "nodad",
    ]);
    net.ip_outer(&[
        "link",
        "add",
        "rr-src",
        "type",
        "veth",
        "peer",
        "name",
        "rr-src-peer",
    ]);
    net.ip_outer(&["addr", "add", "203.0.113.5/32", "dev", "rr-src"]);
    net.ip_outer(&[
        "-6",
        "addr",
        "add",
        "2001:db8:b::5/128",
        "dev",
        "rr-src",
        "nodad",
    ]);
    net.ip_outer(&["link", "set", "rr-src", "up"]);
    net.ip_bait(&[
        "-6",
        "route",
        "add",
        "2001:db8:b::5/128",
        "via",
        "2001:db8:b::2",
    ]);
    let control4 = SocketAddr::from((BAIT_V4, 7000)).to_string();
    let control6 = SocketAddr::from((BAIT_V6, 7000)).to_string();
    let steps = Steps::new()
        .step("v4", &format!("$P connect {control4}"))
        .step("v6", &format!("$P connect {control6}"));
    for (v4, v6, want4, want6) in [
        (
            "203.0.113.3",
            "2001:db8:b::3",
            "203.0.113.3",
            "2001:db8:b::3",
        ),
        ("rr-src", "rr-src", "203.0.113.5", "2001:db8:b::5"),
    ] {
        let flags = [
            "--outbound-addr",
            v4,
            "--outbound-addr6",
            v6,
            "--dns-upstream",
            "127.0.0.1:9",
        ];
        let argv = net.in_outer(&h.as_user_argv(&h.rootless_run_with(&flags, &steps.sh(&h))));
        let out = StepsOutput::new(run(
            format!("rootless-run {}", flags.join(" ")),
            &mut command(&argv),
            TIMEOUT,
        ));
        for (step, want) in [("v4", want4), ("v6", want6)] {
            assert_eq!(
                out.step(step).exit,
                Some(0),
                "{flags:?}: the {step} connection failed\n{}",
                out.out
            );
            let peer = net.next_control_call(TIMEOUT);
            assert_eq!(
                peer.ip().to_string(),
                want,
                "{flags:?}: the {step} flow must leave from {want}, it came from {peer}\n{}",
                out.out
            );
        }
    }
}
