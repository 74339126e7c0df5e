//! rootlesskit (Debian's 1.1) with `--net=slirp4netns --slirp4netns-binary=BIN --mtu=65520`
//! (issue 11, item 6), as the unprivileged test user inside the sealed netns, where BIN is the
//! slirp4netns under test (`dropin`: our rr-slirp4netns, or `RR_TEST_SLIRP4NETNS`). Each test:
//! the child echoes 1 MB through 10.0.2.2 to a server on this namespace's 127.0.0.1; then
//! `rootlessctl add-ports 127.0.0.1:H:80/tcp` forwards a host connection to a server in the
//! child, which reports who called; `remove-ports` closes the port again; rootlesskit exits 0
//! and no process of BIN is left. Once per port driver (slirp4netns: the forward is BIN's API
//! socket, and the child sees the gateway; builtin: rootlesskit's own, from the child's
//! loopback), and once with `--slirp4netns-sandbox=true --slirp4netns-seccomp=true`, where the
//! process holding the tap must also be confined.

use std::fs;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};

use rr_tests::addrs::{GATEWAY_V4, SANDBOX_V4};
use rr_tests::child::TIMEOUT;
use rr_tests::dropin::Slirp4netns;
use rr_tests::host_client::tcp_echo_from;
use rr_tests::pattern::{sha256_hex, TCP_SEED};
use rr_tests::peer_echo::{parse_call, Call};
use rr_tests::ports;
use rr_tests::procs::{self, Proc};
use rr_tests::rootlesskit::RootlessKit;
use rr_tests::sandbox::Harness;
use rr_tests::servers::{TcpEcho, GATEWAY};

/// The child's server port (privileged: the child is root in rootlesskit's user namespace).
const GUEST_PORT: u16 = 80;
/// Bytes the child echoes through 10.0.2.2.
const OUT_BYTES: u64 = 1_000_000;
/// Bytes the host echoes through the forwarded port.
const IN_BYTES: usize = 100_000;

/// CAP_NET_BIND_SERVICE (capability.h), the one capability slirp4netns's sandbox keeps.
const CAP_NET_BIND_SERVICE: u32 = 10;
/// Paths slirp4netns's own sandbox test (tests/test-slirp4netns-sandbox.sh) requires to be
/// absent from the sandboxed process's root.
const HIDDEN: [&str; 3] = ["home", "root", "var"];

/// What the child's server must see for a connection from the host's 127.0.0.1.
struct Seen {
    local: SocketAddr,
    peer: IpAddr,
}

/// The slirp4netns port driver: BIN's API forward, which shows a loopback client as the
/// gateway and delivers it to the child's tap address.
fn through_slirp4netns() -> Seen {
    Seen {
        local: SocketAddr::new(SANDBOX_V4.into(), GUEST_PORT),
        peer: GATEWAY_V4.into(),
    }
}

/// rootlesskit's builtin driver: its child-side process dials the child's own 127.0.0.1.
fn through_builtin() -> Seen {
    Seen {
        local: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), GUEST_PORT),
        peer: Ipv4Addr::LOCALHOST.into(),
    }
}

/// Runs the whole check for one driver and flag set; `confined` also checks the sandbox.
fn outbound_and_forwarded(driver: &str, flags: &[&str], seen: Seen, confined: bool) {
    let h = Harness::new();
    let bin = Slirp4netns::install(&h);
    let server = TcpEcho::start();
    let probe = h.probe(&[]).remove(0);
    let script = format!(
        "{probe} tcp-echo {GATEWAY}:{port} {OUT_BYTES} && exec {probe} serve tcp:0.0.0.0:{GUEST_PORT}",
        port = server.port()
    );
    let child = ["/bin/sh".to_owned(), "-c".to_owned(), script];
    let mut rk = RootlessKit::start(&h, &bin, driver, flags, &child);
    let context = format!(
        "rootlesskit --port-driver={driver} {flags:?} with {}",
        bin.source().display()
    );

    // Out: the child through 10.0.2.2 to this namespace's 127.0.0.1.
    let expected = sha256_hex(TCP_SEED, OUT_BYTES);
    let line = rk
        .running()
        .expect_line("the child's echo result", TIMEOUT, |l| {
            l.starts_with("received ")
        });
    assert_eq!(
        line,
        format!("received {OUT_BYTES} bytes sha256 {expected}"),
        "{context}: the child did not get its {OUT_BYTES} bytes back through {GATEWAY}\n{}",
        rk.running().output_so_far()
    );
    let rec = server.next_record(TIMEOUT);
    assert_eq!(
        (rec.bytes, rec.sha256.as_str(), rec.error.as_deref()),
        (OUT_BYTES, expected.as_str(), None),
        "{context}: the host side of the echo through {GATEWAY} differs: {rec:?}"
    );
    assert!(
        rec.peer.ip().is_loopback(),
        "{context}: {GATEWAY} must reach the host's loopback; the host saw {rec:?}"
    );

    rk.running()
        .expect_line("the child server's `ready`", TIMEOUT, |l| l == "ready");
    rk.wait_api(TIMEOUT);
    if confined {
        assert_tap_holder_confined(&h, &bin, &context);
    }

    // In: rootlessctl add-ports, a host connection, remove-ports.
    let host_port = ports::free_port();
    let spec = format!("127.0.0.1:{host_port}:{GUEST_PORT}/tcp");
    let added = rk.ctl(&h, &["add-ports", &spec], TIMEOUT);
    assert!(
        added.status.success(),
        "{context}: rootlessctl add-ports {spec} failed\n{added}\n{}",
        rk.running().output_so_far()
    );
    let id = added.stdout.trim().to_owned();
    assert!(
        id.parse::<u32>().is_ok(),
        "{context}: add-ports must print the new port's id\n{added}"
    );
    let to = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), host_port);
    let client = tcp_echo_from(None, to, IN_BYTES).unwrap_or_else(|e| {
        panic!(
            "{context}: echo through the forwarded {to} failed: {e}\n{}",
            rk.running().output_so_far()
        )
    });
    let line = rk
        .running()
        .expect_line("the child server's `tcp ... from ...`", TIMEOUT, |l| {
            parse_call(l).is_some_and(|c| c.tcp)
        });
    let call: Call = parse_call(&line).expect("the predicate accepted it");
    assert_eq!(
        (call.local, call.peer.ip()),
        (seen.local, seen.peer),
        "{context}: {client} -> {to} (add-ports {spec}) reached the child as {call:?}"
    );
    let removed = rk.ctl(&h, &["remove-ports", &id], TIMEOUT);
    assert!(
        removed.status.success(),
        "{context}: rootlessctl remove-ports {id} failed\n{removed}"
    );
    let after = TcpStream::connect(to).map_err(|e| e.kind());
    assert_eq!(
        after.err(),
        Some(ErrorKind::ConnectionRefused),
        "{context}: {to} must be closed after remove-ports {id}"
    );

    let out = rk.finish(TIMEOUT);
    assert_eq!(
        out.shell_status(),
        0,
        "{context}: rootlesskit or its child failed\n{out}"
    );
    if let Err(left) = procs::wait_gone(h.user().uid, bin.path(), TIMEOUT) {
        procs::kill_all(&left);
        panic!(
            "{context}: {} still runs after rootlesskit exited: {left:?}",
            bin.path()
        );
    }
}

/// The processes of `bin` that hold a tap (an fd on /dev/net/tun) must run under a seccomp
/// filter with no_new_privs, keep no capability beyond CAP_NET_BIND_SERVICE, and not see the
/// host's /home, /root or /var (what slirp4netns's --enable-sandbox/--enable-seccomp give).
fn assert_tap_holder_confined(h: &Harness, bin: &Slirp4netns, context: &str) {
    let all = procs::find(h.user().uid, bin.path());
    let holders: Vec<&Proc> = all.iter().filter(|p| holds_tun(p.pid)).collect();
    assert!(
        !holders.is_empty(),
        "{context}: no process of {} holds /dev/net/tun: {all:?}",
        bin.path()
    );
    for p in holders {
        let status = fs::read_to_string(format!("/proc/{}/status", p.pid))
            .unwrap_or_else(|e| panic!("read /proc/{}/status: {e}", p.pid));
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or("")
                .to_owned()
        };
        let caps = u64::from_str_radix(&field("CapEff:"), 16).unwrap_or(u64::MAX);
        let visible: Vec<&str> = HIDDEN
            .iter()
            .copied()
            .filter(|d| fs::symlink_metadata(format!("/proc/{}/root/{d}", p.pid)).is_ok())
            .collect();
        assert_eq!(
            (
                field("Seccomp:"),
                field("NoNewPrivs:"),
                caps & !(1 << CAP_NET_BIND_SERVICE),
                visible
            ),
            ("2".to_owned(), "1".to_owned(), 0, vec![]),
            "{context}: the tap's holder {p:?} is not confined (want Seccomp 2, NoNewPrivs 1, \
             no capability beyond CAP_NET_BIND_SERVICE, none of {HIDDEN:?} in its root)\n{status}"
        );
    }
}

/// True if `pid` has an fd open on /dev/net/tun.
fn holds_tun(pid: i32) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == "/dev/net/tun"))
}

#[test]
fn port_driver_slirp4netns_reaches_the_host_and_forwards_from_the_gateway() {
    outbound_and_forwarded("slirp4netns", &[], through_slirp4netns(), false);
}

#[test]
fn port_driver_builtin_reaches_the_host_and_forwards_from_loopback() {
    outbound_and_forwarded("builtin", &[], through_builtin(), false);
}

#[test]
fn sandbox_and_seccomp_confine_the_tap_holder_and_keep_both_directions() {
    outbound_and_forwarded(
        "slirp4netns",
        &["--slirp4netns-sandbox=true", "--slirp4netns-seccomp=true"],
        through_slirp4netns(),
        true,
    );
}
