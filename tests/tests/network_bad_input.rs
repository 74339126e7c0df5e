//! Bad values for the network options (issue 9, item 8), as the unprivileged test user: a
//! malformed `--publish`, `--cidr`, `--cidr6` or `--mac`, a host port the test already holds, a
//! privileged port, overlapping forwards. Each must fail at start with exactly one line
//! `rootless-run: FLAG VALUE: reason` on stderr and a non-zero exit, run nothing, and leave
//! nothing behind: no process, no port still bound, no API socket file.
//! (API requests with wrong types are in api_socket.rs.)

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::time::Duration;

use rr_tests::api_client::user_dir;
use rr_tests::child::{run, Outcome, TIMEOUT};
use rr_tests::ports;
use rr_tests::procs;
use rr_tests::sandbox::{command, unique_token, Harness};

/// Exit code for a usage error (STYLE.md, CLI: exit codes).
const EXIT_USAGE: i32 = 2;
/// Exit code when rootless-run's own setup fails (STYLE.md, CLI: exit codes).
const EXIT_SETUP: i32 = 1;
/// Bound for a failed launch's processes to be gone.
const VANISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Where the kernel lets unprivileged users bind (per network namespace).
const UNPRIVILEGED_PORT_START: &str = "/proc/sys/net/ipv4/ip_unprivileged_port_start";

/// What a failed launch must look like.
#[derive(Clone, Copy)]
enum Expect {
    /// A usage error (exit 2): the value cannot be right on any machine.
    Usage,
    /// A usage or setup error (exit 2 or 1): the value is well-formed but cannot be had here.
    Either,
}

/// Runs `rootless-run FLAGS --api-socket DIR/api.sock -- rr-probe hold TOKEN` as the test
/// user, expecting it to fail; checks the one-line error naming `flag` and one of `values`,
/// that nothing ran, and that neither a process nor the API socket is left.
fn assert_rejected(
    h: &Harness,
    flags: &[&str],
    flag: &str,
    values: &[&str],
    expect: Expect,
) -> Outcome {
    let token = unique_token("badnet");
    let dir = user_dir(h.dir(), &token, h.user());
    let socket = dir.join("api.sock");
    let socket_str = socket.to_str().expect("temp paths are UTF-8");
    let mut all = flags.to_vec();
    all.extend(["--api-socket", socket_str]);
    let argv = h.as_user_argv(&h.rootless_run_with(&all, &h.probe(&["hold", &token])));
    let out = run(
        format!("rootless-run {}", flags.join(" ")),
        &mut command(&argv),
        TIMEOUT,
    );

    let code = out.status.code();
    let code_ok = match expect {
        Expect::Usage => code == Some(EXIT_USAGE),
        Expect::Either => matches!(code, Some(EXIT_USAGE | EXIT_SETUP)),
    };
    assert!(
        code_ok,
        "{flags:?}: wrong exit status (want a usage{} error)\n{out}",
        if matches!(expect, Expect::Either) {
            " or setup"
        } else {
            ""
        }
    );
    let lines = out.stderr_lines();
    assert_eq!(
        lines.len(),
        1,
        "{flags:?}: the error must be exactly one line\n{out}"
    );
    let line = lines[0];
    let prefix = format!("rootless-run: {flag}");
    assert!(
        line.starts_with(&prefix) && values.iter().any(|v| line.contains(v)),
        "{flags:?}: the error must read `rootless-run: {flag} VALUE: reason` and name one of \
         {values:?}\n{out}"
    );
    assert!(
        !out.stderr.contains("panicked"),
        "{flags:?}: rootless-run panicked\n{out}"
    );
    assert!(
        !out.stdout.contains("ready"),
        "{flags:?}: the command ran anyway\n{out}"
    );
    if let Err(left) = procs::wait_gone(h.user().uid, &token, VANISH_TIMEOUT) {
        procs::kill_all(&left);
        panic!("{flags:?}: a failed launch left processes behind: {left:#?}");
    }
    assert!(
        !Path::new(&socket).exists(),
        "{flags:?}: a failed launch left the API socket {} behind",
        socket.display()
    );
    out
}

#[test]
fn malformed_publish_values_are_usage_errors() {
    let h = Harness::new();
    for bad in [
        "",
        "8080",
        "abc:80",
        "8080:",
        ":80",
        "8080:80/sctp",
        "8080:80/",
        "70000:80",
        "0:80",
        "8080:0",
        "8080:65536",
        "8080-8081:80",
        "8081-8080:80-79",
        "8080-8082:80-81",
        "1.2.3.4.5:8080:80",
        "999.0.0.1:8080:80",
        "[::1:8080:80",
        "localhost:8080:80",
    ] {
        assert_rejected(&h, &["--publish", bad], "--publish", &[bad], Expect::Usage);
    }
}

#[test]
fn malformed_cidr_cidr6_and_mac_values_are_usage_errors() {
    let h = Harness::new();
    let cases: [(&str, &[&str]); 3] = [
        (
            "--cidr",
            &[
                "10.0.2.0",
                "10.0.2.100/24",
                "10.0.2.0/33",
                "10.0.2.0/26",
                "10.0.2.0/0",
                "300.0.0.0/24",
                "10.0.2.0/x",
                "fd00::/64",
                "127.0.0.0/8",
            ],
        ),
        (
            "--cidr6",
            &[
                "fd00::/48",
                "fd00::1/64",
                "fd00::/129",
                "fd00::",
                "10.0.2.0/24",
                "xyz",
                "ff02::/64",
            ],
        ),
        (
            "--mac",
            &[
                "02:00:00:00:00",
                "zz:00:00:00:00:00",
                "02:00:00:00:00:00:00",
                "0200.0000.0001",
            ],
        ),
    ];
    for (flag, values) in cases {
        for bad in values {
            assert_rejected(&h, &[flag, bad], flag, &[bad], Expect::Usage);
        }
    }
    // A multicast or all-zero MAC cannot be an interface's address (the kernel refuses it).
    for bad in ["01:00:5e:00:00:01", "00:00:00:00:00:00"] {
        assert_rejected(&h, &["--mac", bad], "--mac", &[bad], Expect::Either);
    }
}

#[test]
fn a_host_port_already_bound_fails_at_start_and_frees_the_others() {
    let h = Harness::new();
    let free = ports::free_port();
    let held = ports::free_port();
    let good = format!("{free}:80");
    let v4_any = TcpListener::bind((Ipv4Addr::UNSPECIFIED, held)).expect("hold a TCP port");
    let bad = format!("{held}:81");
    assert_rejected(
        &h,
        &["--publish", &good, "--publish", &bad],
        "--publish",
        &[&bad],
        Expect::Either,
    );
    assert!(
        ports::is_free(free),
        "--publish {good}: port {free} stayed bound after the launch failed on {bad}"
    );
    drop(v4_any);

    let held = ports::free_port();
    let _udp = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, held)).expect("hold a UDP port");
    let bad = format!("{held}:53/udp");
    assert_rejected(
        &h,
        &["--publish", &bad],
        "--publish",
        &[&bad],
        Expect::Either,
    );

    let held = ports::free_port();
    let _lo4 = TcpListener::bind((Ipv4Addr::LOCALHOST, held)).expect("hold 127.0.0.1");
    let bad = format!("127.0.0.1:{held}:80");
    assert_rejected(
        &h,
        &["--publish", &bad],
        "--publish",
        &[&bad],
        Expect::Either,
    );

    let held = ports::free_port();
    let _lo6 = TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, held))).expect("hold ::1");
    let bad = format!("[::1]:{held}:80");
    assert_rejected(
        &h,
        &["--publish", &bad],
        "--publish",
        &[&bad],
        Expect::Either,
    );
}

#[test]
fn a_privileged_host_port_fails_at_start_for_the_unprivileged_user() {
    let h = Harness::new();
    let start = std::fs::read_to_string(UNPRIVILEGED_PORT_START).expect("read the sysctl");
    assert_eq!(
        start.trim(),
        "1024",
        "precondition: ports below 1024 are privileged in the sealed namespace"
    );
    for bad in ["80:80", "127.0.0.1:1023:80", "[::1]:443:443/tcp"] {
        assert_rejected(&h, &["--publish", bad], "--publish", &[bad], Expect::Either);
    }
}

#[test]
fn overlapping_publishes_fail_and_distinct_protocols_do_not() {
    let h = Harness::new();
    let base = ports::free_block(3);
    let range = format!("{base}-{}:80-82", base + 2);
    let inside = format!("{}:90", base + 1);
    let same = format!("{base}:91");
    let lo_same = format!("127.0.0.1:{base}:92");
    for pair in [
        [&range, &inside],
        [&inside, &range],
        [&same, &range],
        [&same, &lo_same],
    ] {
        assert_rejected(
            &h,
            &["--publish", pair[0], "--publish", pair[1]],
            "--publish",
            &[pair[0], pair[1]],
            Expect::Either,
        );
        for p in base..base + 3 {
            assert!(
                ports::is_free(p),
                "{pair:?}: port {p} stayed bound after the failure"
            );
        }
    }
    // The same port for TCP and for UDP is no overlap.
    let tcp = format!("{base}:80");
    let udp = format!("{base}:80/udp");
    let argv = h.as_user_argv(&h.rootless_run_with(
        &["--publish", &tcp, "--publish", &udp],
        &["true".to_owned()],
    ));
    let out = run(
        "rootless-run --publish TCP and UDP on one port",
        &mut command(&argv),
        TIMEOUT,
    );
    assert_eq!(
        out.shell_status(),
        0,
        "--publish {tcp} --publish {udp} must be accepted\n{out}"
    );
}
