//! bubblewrap paired with the slirp4netns under test (issue 11, item 6), as its users do it:
//! `bwrap --unshare-user --unshare-net --info-fd 3 ...`, then `BIN --configure --mtu=65520
//! [--disable-host-loopback] PID tap0` with PID from the info JSON's `child-pid`, then the
//! command inside runs once BIN's ready byte has arrived. All as the unprivileged test user in
//! the sealed netns. BIN (`dropin`) is our rr-slirp4netns, or `RR_TEST_SLIRP4NETNS`.
//! The nested user namespace bwrap builds by default (slirp4netns#311) is the one place where
//! the original is known to fail: there the test checks the original's exact error instead.

use rr_tests::addrs::SANDBOX_V4;
use rr_tests::bwrap::{Bwrap, Userns};
use rr_tests::child::{Outcome, TIMEOUT};
use rr_tests::dropin::{Attached, Slirp4netns};
use rr_tests::pattern::{sha256_hex, TCP_SEED};
use rr_tests::procs;
use rr_tests::sandbox::Harness;
use rr_tests::servers::{TcpEcho, GATEWAY};
use rr_tests::topology::{Internet, ECHO_PORT, OUTER_ADDR, SERVER_ADDR};

/// Bytes the sandbox echoes.
const BYTES: u64 = 1_000_000;
/// The MTU bubblewrap users pass, as rootlesskit and podman do.
const MTU: &str = "--mtu=65520";
/// What slirp4netns 1.2/1.3 prints when it cannot enter bwrap's nested user namespace's
/// network namespace (slirp4netns#311; checked here with Debian 12's 1.2.0).
const NESTED_EPERM: &str = "setns(CLONE_NEWNET): Operation not permitted";

/// The command inside: show tap0, then echo BYTES through `target`.
fn inside(h: &Harness, target: &str) -> Vec<String> {
    let bytes = BYTES.to_string();
    let mut v = vec![
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        r#"ip -o -4 addr show dev tap0 && ip -o link show dev tap0 && exec "$@""#.to_owned(),
        "sh".to_owned(),
    ];
    v.extend(h.probe(&["tcp-echo", target, &bytes]));
    v
}

/// The sandbox's tap0 is configured as `--configure --mtu=65520` asks, and the echo through
/// `target` came back whole.
fn assert_configured_and_echoed(out: &Outcome, target: &str, context: &str) {
    let expected = sha256_hex(TCP_SEED, BYTES);
    for want in [
        format!("inet {SANDBOX_V4}/24"),
        "mtu 65520".to_owned(),
        format!("received {BYTES} bytes sha256 {expected}"),
    ] {
        assert!(
            out.status.success() && out.stdout.contains(&want),
            "{context}: want {want:?} from inside bwrap (echo through {target})\n{out}"
        );
    }
}

/// Starts BIN for `sandbox` and waits for its ready byte; panics with its output if it fails.
fn attach(
    h: &Harness,
    bin: &Slirp4netns,
    sandbox: &Bwrap,
    extra: &[&str],
    outer: Option<&Internet>,
) -> Attached {
    let pid = sandbox.child_pid().to_string();
    let mut args = vec!["--configure", MTU];
    args.extend(extra);
    args.extend([pid.as_str(), "tap0"]);
    let s4n = Attached::start(h, bin, &args, outer, "slirp4netns");
    if let Err(e) = s4n.ready(TIMEOUT) {
        let out = s4n.stop(TIMEOUT);
        panic!(
            "{} {args:?} never said ready: {e}\n{out}",
            bin.source().display()
        );
    }
    s4n
}

/// BIN exits 0 when its exit fd closes, and leaves nothing running.
fn assert_clean_stop(h: &Harness, bin: &Slirp4netns, s4n: Attached, context: &str) {
    let out = s4n.stop(TIMEOUT);
    assert_eq!(
        out.shell_status(),
        0,
        "{context}: slirp4netns must exit 0 when its --exit-fd closes\n{out}"
    );
    if let Err(left) = procs::wait_gone(h.user().uid, bin.path(), TIMEOUT) {
        procs::kill_all(&left);
        panic!(
            "{context}: {} still runs after it exited: {left:?}",
            bin.path()
        );
    }
}

/// Echo through 10.0.2.2 to this namespace's 127.0.0.1 from a bwrap sandbox in `userns`.
fn echo_through_gateway(userns: Userns) {
    let h = Harness::new();
    let bin = Slirp4netns::install(&h);
    let server = TcpEcho::start();
    let target = format!("{GATEWAY}:{}", server.port());
    let sandbox = Bwrap::start(&h, userns, &inside(&h, &target), None, TIMEOUT);
    let context = format!("bwrap ({userns:?}) + {}", bin.source().display());
    let s4n = attach(&h, &bin, &sandbox, &[], None);

    let out = sandbox.go(TIMEOUT);
    assert_configured_and_echoed(&out, &target, &context);
    let rec = server.next_record(TIMEOUT);
    assert_eq!(
        (
            rec.bytes,
            rec.sha256.as_str(),
            rec.error.as_deref(),
            rec.peer.ip().is_loopback()
        ),
        (BYTES, sha256_hex(TCP_SEED, BYTES).as_str(), None, true),
        "{context}: the host's 127.0.0.1 must get the bytes from its loopback: {rec:?}\n{}",
        s4n.output_so_far()
    );
    assert_clean_stop(&h, &bin, s4n, &context);
}

#[test]
fn info_fd_pid_with_configure_reaches_the_host_through_the_gateway() {
    echo_through_gateway(Userns::Single);
}

/// bwrap's default for a non-root caller puts the sandbox in a user namespace nested in the
/// one that owns its network namespace. Entering it is issue 11's item 3; the original
/// slirp4netns fails here (slirp4netns#311), and against it this test checks that failure.
#[test]
fn nested_user_namespace_of_bwrap_default_is_entered() {
    let h = Harness::new();
    let bin = Slirp4netns::install(&h);
    if !bin.is_libslirp_original() {
        echo_through_gateway(Userns::Nested);
        return;
    }
    let server = TcpEcho::start();
    let target = format!("{GATEWAY}:{}", server.port());
    let sandbox = Bwrap::start(&h, Userns::Nested, &inside(&h, &target), None, TIMEOUT);
    let pid = sandbox.child_pid().to_string();
    let s4n = Attached::start(
        &h,
        &bin,
        &["--configure", MTU, &pid, "tap0"],
        None,
        "slirp4netns",
    );
    let ready = s4n.ready(TIMEOUT);
    let out = s4n.stop(TIMEOUT);
    assert!(
        ready.is_err() && out.shell_status() == 1 && out.stderr.contains(NESTED_EPERM),
        "the original slirp4netns is known to fail in bwrap's nested user namespace with \
         {NESTED_EPERM:?} and exit 1 (slirp4netns#311); it did otherwise (ready: {ready:?})\n{out}"
    );
    let inside = sandbox.go(TIMEOUT);
    assert!(
        !inside.status.success() && !inside.stdout.contains("tap0"),
        "with slirp4netns failed, the sandbox must have no tap0\n{inside}"
    );
}

/// With --disable-host-loopback, the sandbox reaches a server in a namespace the test built
/// (a documentation address behind a veth), from the outer namespace's address.
#[test]
fn disable_host_loopback_reaches_a_server_in_a_namespace_the_test_built() {
    let h = Harness::new();
    let bin = Slirp4netns::install(&h);
    let mut net = Internet::build(&h);
    let target = format!("{SERVER_ADDR}:{ECHO_PORT}");
    let sandbox = Bwrap::start(
        &h,
        Userns::Single,
        &inside(&h, &target),
        Some(&net),
        TIMEOUT,
    );
    let context = format!("bwrap + {} --disable-host-loopback", bin.source().display());
    let s4n = attach(&h, &bin, &sandbox, &["--disable-host-loopback"], Some(&net));

    let out = sandbox.go(TIMEOUT);
    assert_configured_and_echoed(&out, &target, &context);
    let peer = net.next_peer(TIMEOUT);
    assert_eq!(
        peer.ip(),
        OUTER_ADDR,
        "{context}: the server must see the outer namespace's address\n{}",
        s4n.output_so_far()
    );
    assert_clean_stop(&h, &bin, s4n, &context);
}
