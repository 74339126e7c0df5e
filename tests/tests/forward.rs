//! Port forwarding host -> sandbox with `--publish` (issue 9, items 2 and 7), as the
//! unprivileged test user: the sandbox sees a non-loopback caller as itself and a loopback
//! caller as the gateway (10.0.2.2 / fd00::2, never 127.0.0.1), UDP round trips with and
//! without host loopback, IPv6, port ranges, and the port is released when the run ends.
//! `rr-probe serve` runs in the sandbox and reports each caller (`peer_echo`); the clients
//! run in this (root, sealed-netns) process and connect to the published port from chosen
//! source addresses: 127.0.0.x and ::1, and the sealed namespace's 192.0.2.1 and 2001:db8::1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rr_tests::addrs::{GATEWAY_V4, GATEWAY_V6, HOST_V4, HOST_V6, SANDBOX_V4, SANDBOX_V6};
use rr_tests::child::TIMEOUT;
use rr_tests::host_client::{tcp_echo_from, udp_echo_from};
use rr_tests::peer_echo::{Call, PeerEcho};
use rr_tests::ports;
use rr_tests::sandbox::Harness;

/// The sandbox port the servers listen on (a privileged port: the sandbox is root in its own
/// user namespace, which owns its network namespace).
const GUEST_PORT: u16 = 80;
/// Bytes each TCP client sends and expects back.
const TCP_BYTES: usize = 100_000;
/// Datagrams each UDP client sends and expects back.
const UDP_DATAGRAMS: u8 = 4;
/// How long the sandbox waits after start before it forges frames (link-up's own traffic).
const FORGE_DELAY_MS: &str = "1500";

const LOOPBACK2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// A TCP echo from `from` to `to` that must succeed; returns the client's address.
fn tcp_client(server: &PeerEcho, from: IpAddr, to: SocketAddr) -> SocketAddr {
    tcp_echo_from(Some(from), to, TCP_BYTES).unwrap_or_else(|e| {
        panic!(
            "TCP echo from {from} through the published port {to} failed: {e}\n{}",
            server.output_so_far()
        )
    })
}

/// A UDP echo of `count` datagrams from `from` to `to` that must succeed; returns the
/// client's address and the calls the sandbox reported, one per datagram.
fn udp_client(
    server: &mut PeerEcho,
    from: IpAddr,
    to: SocketAddr,
    count: u8,
) -> (SocketAddr, Vec<Call>) {
    let client = udp_echo_from(from, to, count).unwrap_or_else(|e| {
        panic!(
            "UDP echo from {from} through the published port {to} failed: {e}\n{}",
            server.output_so_far()
        )
    });
    let calls = (0..count).map(|_| server.next_udp(TIMEOUT)).collect();
    (client, calls)
}

/// The run ended cleanly: the server exited 0 when its stdin closed, the launcher with it.
fn assert_clean_exit(server: PeerEcho) {
    let out = server.finish(TIMEOUT);
    assert_eq!(
        out.shell_status(),
        0,
        "the sandbox server or the launcher failed\n{out}"
    );
}

#[test]
fn tcp_from_a_non_loopback_host_address_arrives_as_that_address_and_port() {
    let h = Harness::new();
    let port = ports::free_port();
    let publish = format!("{port}:{GUEST_PORT}");
    let listen = format!("tcp:[::]:{GUEST_PORT}");
    let mut server = PeerEcho::launch(&h, &["--publish", &publish], &[&listen], TIMEOUT);

    let client = tcp_client(&server, HOST_V4.into(), sa(HOST_V4, port));
    let call = server.next_tcp(TIMEOUT);
    assert_eq!(
        call,
        Call {
            tcp: true,
            local: sa(SANDBOX_V4, GUEST_PORT),
            peer: client,
        },
        "a connection from {client} to --publish {publish} must reach the sandbox's \
         {SANDBOX_V4}:{GUEST_PORT} from {client} itself"
    );
    assert_clean_exit(server);
}

#[test]
fn tcp_from_loopback_arrives_from_the_gateway_never_from_127_0_0_1() {
    let h = Harness::new();
    let port = ports::free_port();
    let publish = format!("{port}:{GUEST_PORT}");
    let listen = format!("tcp:[::]:{GUEST_PORT}");
    let mut server = PeerEcho::launch(&h, &["--publish", &publish], &[&listen], TIMEOUT);

    for (from, to, gateway, local) in [
        (
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            sa(Ipv4Addr::LOCALHOST, port),
            IpAddr::V4(GATEWAY_V4),
            sa(SANDBOX_V4, GUEST_PORT),
        ),
        (
            IpAddr::V4(LOOPBACK2),
            sa(Ipv4Addr::LOCALHOST, port),
            IpAddr::V4(GATEWAY_V4),
            sa(SANDBOX_V4, GUEST_PORT),
        ),
        (
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            sa(Ipv6Addr::LOCALHOST, port),
            IpAddr::V6(GATEWAY_V6),
            sa(SANDBOX_V6, GUEST_PORT),
        ),
    ] {
        let client = tcp_client(&server, from, to);
        let call = server.next_tcp(TIMEOUT);
        assert_eq!(
            (call.tcp, call.local, call.peer.ip()),
            (true, local, gateway),
            "a connection from the host's loopback ({client} -> {to}) must arrive from the \
             gateway {gateway}, never as the sandbox's own loopback: {call:?}"
        );
    }
    assert_clean_exit(server);
}

/// UDP both ways, with host loopback on and off: slirp4netns 1.2 loses the replies when it is
/// off, because the sandbox answers the gateway address.
#[test]
fn udp_round_trips_with_and_without_host_loopback() {
    let h = Harness::new();
    for extra in [&[][..], &["--disable-host-loopback"][..]] {
        let port = ports::free_port();
        let publish = format!("{port}:{GUEST_PORT}/udp");
        let mut flags = vec!["--publish", &publish];
        flags.extend(extra);
        let listen = format!("udp:[::]:{GUEST_PORT}");
        let mut server = PeerEcho::launch(&h, &flags, &[&listen], TIMEOUT);

        for (lo, gateway) in [
            (IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V4(GATEWAY_V4)),
            (IpAddr::V6(Ipv6Addr::LOCALHOST), IpAddr::V6(GATEWAY_V6)),
        ] {
            let to = sa(lo, port);
            let (client, calls) = udp_client(&mut server, lo, to, UDP_DATAGRAMS);
            for call in calls {
                assert_eq!(
                    (call.tcp, call.local.port(), call.peer.ip()),
                    (false, GUEST_PORT, gateway),
                    "flags {flags:?}: datagrams from {client} to {to} must reach sandbox port \
                     {GUEST_PORT} from the gateway {gateway}: {call:?}"
                );
            }
        }
        assert_clean_exit(server);
    }
}

/// Issue 14, item 1: the sandbox's root writes frames from made-up source MACs (ARP requests,
/// which the gateway answers). Frames toward the sandbox must still go to tap0's own MAC: a
/// datagram forwarded in right after them reaches the server. (When the helper learnt the
/// destination from any frame, it went to the last forged MAC and tap0 dropped it.) The
/// sandbox is kept quiet so that nothing of its own teaches the right MAC back in between:
/// IPv4 only, IPv6 switched off on tap0 by the probe (no MLD reports or solicitations), and
/// the forging starts after FORGE_DELAY_MS, once link-up's own frames are out.
#[test]
fn forged_source_macs_do_not_redirect_frames_toward_the_sandbox() {
    let h = Harness::new();
    let port = ports::free_port();
    let publish = format!("{port}:{GUEST_PORT}/udp");
    let listen = format!("udp:0.0.0.0:{GUEST_PORT}");
    let job = [
        "forge-macs-then-serve",
        "tap0",
        "2000",
        "10.0.2.100",
        "10.0.2.2",
        FORGE_DELAY_MS,
    ];
    let flags = ["--disable-ipv6", "--publish", &publish];
    let mut server = PeerEcho::launch_job(&h, &flags, &job, &[&listen], TIMEOUT);
    let to = sa(Ipv4Addr::LOCALHOST, port);
    let (client, calls) = udp_client(
        &mut server,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        to,
        UDP_DATAGRAMS,
    );
    assert!(
        calls.iter().all(|c| c.local.port() == GUEST_PORT),
        "datagrams from {client} after 2000 forged frames must reach the sandbox: {calls:?}"
    );
    assert_clean_exit(server);
}

/// The design's rule for every forward (DESIGN.md, "Port forwards keep the caller's
/// address"; docs/architecture.md, "UDP forwards": key as for TCP): a datagram from a
/// non-loopback host address arrives as that address and port.
#[test]
fn udp_from_a_non_loopback_host_address_arrives_as_that_address_and_port() {
    let h = Harness::new();
    let port = ports::free_port();
    let publish = format!("{port}:{GUEST_PORT}/udp");
    let listen = format!("udp:[::]:{GUEST_PORT}");
    let mut server = PeerEcho::launch(&h, &["--publish", &publish], &[&listen], TIMEOUT);
    for host in [IpAddr::V4(HOST_V4), IpAddr::V6(HOST_V6)] {
        let to = sa(host, port);
        let (client, calls) = udp_client(&mut server, host, to, UDP_DATAGRAMS);
        for call in calls {
            assert_eq!(
                (call.tcp, call.local.port(), call.peer),
                (false, GUEST_PORT, client),
                "--publish {publish}: datagrams from {client} to {to} must reach the sandbox \
                 from {client} itself: {call:?}"
            );
        }
    }
    assert_clean_exit(server);
}

#[test]
fn ipv6_publish_on_loopback_and_on_all_addresses() {
    let h = Harness::new();
    let (lo_port, any_port) = (ports::free_port(), ports::free_port());
    let on_lo = format!("[::1]:{lo_port}:{GUEST_PORT}");
    let on_lo_udp = format!("[::1]:{lo_port}:{GUEST_PORT}/udp");
    let on_any = format!("{any_port}:{GUEST_PORT}");
    let flags = [
        "--publish",
        &on_lo,
        "--publish",
        &on_lo_udp,
        "--publish",
        &on_any,
    ];
    let tcp = format!("tcp:[::]:{GUEST_PORT}");
    let udp = format!("udp:[::]:{GUEST_PORT}");
    let mut server = PeerEcho::launch(&h, &flags, &[&tcp, &udp], TIMEOUT);

    let lo = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let client = tcp_client(&server, lo, sa(lo, lo_port));
    let call = server.next_tcp(TIMEOUT);
    assert_eq!(
        (call.tcp, call.local, call.peer.ip()),
        (true, sa(SANDBOX_V6, GUEST_PORT), IpAddr::V6(GATEWAY_V6)),
        "TCP from {client} to --publish {on_lo} must arrive at [{SANDBOX_V6}]:{GUEST_PORT} \
         from {GATEWAY_V6}"
    );

    let (client, calls) = udp_client(&mut server, lo, sa(lo, lo_port), 1);
    let call = calls[0];
    assert_eq!(
        (call.tcp, call.peer.ip()),
        (false, IpAddr::V6(GATEWAY_V6)),
        "UDP from {client} to --publish {on_lo_udp} must arrive from {GATEWAY_V6}"
    );

    let client = tcp_client(&server, HOST_V6.into(), sa(HOST_V6, any_port));
    let call = server.next_tcp(TIMEOUT);
    assert_eq!(
        (call.tcp, call.local, call.peer),
        (true, sa(SANDBOX_V6, GUEST_PORT), client),
        "TCP from {client} to --publish {on_any} (all addresses, IPv6 included) must arrive \
         from {client} itself"
    );

    // Published on ::1 only: the IPv4 loopback and the other addresses stay closed.
    for closed in [sa(Ipv4Addr::LOCALHOST, lo_port), sa(HOST_V6, lo_port)] {
        let got = std::net::TcpStream::connect(closed).map_err(|e| e.kind());
        assert_eq!(
            got.err(),
            Some(std::io::ErrorKind::ConnectionRefused),
            "--publish {on_lo} must listen on [::1] only, yet {closed} accepted"
        );
    }
    assert_clean_exit(server);
}

#[test]
fn port_ranges_map_each_host_port_to_its_own_sandbox_port() {
    const N: u16 = 3;
    const GUEST_BASE: u16 = 8000;
    let h = Harness::new();
    let base = ports::free_block(N);
    let range = format!(
        "{base}-{}:{GUEST_BASE}-{}",
        base + N - 1,
        GUEST_BASE + N - 1
    );
    let range_udp = format!("{range}/udp");
    let specs: Vec<String> = (0..N)
        .flat_map(|i| {
            let p = GUEST_BASE + i;
            [format!("tcp:[::]:{p}"), format!("udp:[::]:{p}")]
        })
        .collect();
    let spec_refs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let flags = ["--publish", &range, "--publish", &range_udp];
    let mut server = PeerEcho::launch(&h, &flags, &spec_refs, TIMEOUT);

    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // Backwards, so that an off-by-one that maps everything to the first port shows.
    for i in (0..N).rev() {
        let to = sa(lo, base + i);
        tcp_client(&server, lo, to);
        let call = server.next_tcp(TIMEOUT);
        assert_eq!(
            (call.tcp, call.local.port()),
            (true, GUEST_BASE + i),
            "--publish {range}: TCP to {to} must reach sandbox port {}: {call:?}",
            GUEST_BASE + i
        );
        // One datagram: a retry's extra line could be read for the next port.
        let (_, calls) = udp_client(&mut server, lo, to, 1);
        let call = calls[0];
        assert_eq!(
            (call.tcp, call.local.port()),
            (false, GUEST_BASE + i),
            "--publish {range_udp}: UDP to {to} must reach sandbox port {}: {call:?}",
            GUEST_BASE + i
        );
    }
    assert_clean_exit(server);
}

#[test]
fn published_ports_are_released_when_the_run_ends() {
    let h = Harness::new();
    let port = ports::free_port();
    let tcp = format!("{port}:{GUEST_PORT}");
    let udp = format!("{port}:{GUEST_PORT}/udp");
    let listen = format!("tcp:[::]:{GUEST_PORT}");
    let server = PeerEcho::launch(
        &h,
        &["--publish", &tcp, "--publish", &udp],
        &[&listen],
        TIMEOUT,
    );
    // Precondition: the launcher holds the port while it runs.
    assert!(
        !ports::is_free(port),
        "--publish {tcp} and {udp}: port {port} is not bound while the sandbox runs\n{}",
        server.output_so_far()
    );
    assert_clean_exit(server);
    assert!(
        ports::is_free(port),
        "port {port} is still bound after rootless-run exited"
    );
}
