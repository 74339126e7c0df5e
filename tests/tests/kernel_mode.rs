//! Kernel mode (`--net-mode=kernel`) end to end, as root, but only inside the outer network
//! namespace that `topology::Internet` builds for each test (never the machine's or the sealed
//! namespace's own links, tables or sysctls): TCP to a documentation address through the
//! kernel's masquerade, two sandboxes at once, `--disable-host-loopback`, and cleanup of a
//! SIGKILLed run's rules and lease.

use rr_tests::child::{run, TIMEOUT};
use rr_tests::pattern::{sha256_hex, TCP_SEED};
use rr_tests::sandbox::{command, Harness};
use rr_tests::topology::{Internet, ECHO_PORT, OUTER_ADDR, SERVER_ADDR};

const KERNEL: &str = "--net-mode=kernel";

/// argv of `sh -c SCRIPT` in the outer namespace, with $B the launcher and $D a scratch dir.
fn outer_sh(net: &Internet, h: &Harness, script: &str) -> Vec<String> {
    let full = format!("B={}; D={}; {script}", h.launcher(), h.dir().display());
    net.in_outer(&["/bin/sh".to_owned(), "-c".to_owned(), full])
}

#[test]
fn kernel_mode_tcp_reaches_documentation_address_masqueraded() {
    const BYTES: u64 = 1 << 20;
    let h = Harness::new();
    let mut net = Internet::build(&h);
    let target = format!("{SERVER_ADDR}:{ECHO_PORT}");
    let probe = h.probe(&["tcp-echo", &target, &BYTES.to_string()]);
    let argv = net.in_outer(&h.rootless_run_with(&[KERNEL], &probe));
    let out = run(
        "rootless-run --net-mode=kernel -- rr-probe tcp-echo",
        &mut command(&argv),
        TIMEOUT,
    );
    assert_eq!(
        out.shell_status(),
        0,
        "TCP echo through kernel mode failed\n{out}"
    );
    let expected = sha256_hex(TCP_SEED, BYTES);
    assert!(
        out.stdout
            .contains(&format!("received {BYTES} bytes sha256 {expected}")),
        "the echo differs\n{out}"
    );
    let peer = net.next_peer(TIMEOUT);
    assert_eq!(
        peer.ip(),
        OUTER_ADDR,
        "not masqueraded: the server saw {peer}"
    );
}

#[test]
fn kernel_mode_two_sandboxes_at_once_get_distinct_addresses_and_leave_nothing() {
    let h = Harness::new();
    let net = Internet::build(&h);
    // The first sandbox holds its lease until the second has printed its address.
    let script = "mkfifo $D/f; \
        $B --net-mode=kernel -- sh -c 'ip -o -4 addr show eth0; read x < '$D/f & \
        $B --net-mode=kernel -- sh -c 'ip -o -4 addr show eth0; ping -c1 -W5 10.0.2.2 >/dev/null && echo pinged'; \
        echo > $D/f; wait; \
        echo rules=$(nft list ruleset | grep -c owner=)";
    let out = run(
        "two kernel-mode sandboxes",
        &mut command(&outer_sh(&net, &h, script)),
        TIMEOUT,
    );
    assert_eq!(out.shell_status(), 0, "{out}");
    assert!(out.stdout.contains("inet 10.0.2.100/24"), "{out}");
    assert!(out.stdout.contains("inet 10.0.2.101/24"), "{out}");
    assert!(
        out.stdout.contains("pinged"),
        "the gateway did not answer\n{out}"
    );
    assert!(
        out.stdout.contains("rules=0"),
        "rules left after both exited\n{out}"
    );
}

#[test]
fn kernel_mode_gateway_is_host_loopback_unless_disabled() {
    let h = Harness::new();
    let net = Internet::build(&h);
    // A server on the outer namespace's 127.0.0.1:2222; the sandbox tries it through 10.0.2.2.
    let serve = h.probe(&["serve-tcp-echo", "127.0.0.1:2222"]).join(" ");
    let probe = h.probe(&["connect", "10.0.2.2:2222"]).join(" ");
    let script = format!(
        "ip link set lo up; mkfifo $D/s $D/o; exec 5<>$D/o; {serve} <$D/s >&5 & \
         exec 4>$D/s; read l <&5; \
         $B --net-mode=kernel -- {probe}; echo open=$?; \
         $B --net-mode=kernel --disable-host-loopback -- {probe}; echo closed=$?; \
         exec 4>&-; wait"
    );
    let out = run(
        "--disable-host-loopback",
        &mut command(&outer_sh(&net, &h, &script)),
        TIMEOUT,
    );
    assert!(
        out.stdout.contains("open=0"),
        "the gateway did not reach the host's loopback\n{out}"
    );
    assert!(
        out.stdout.contains("closed=3"),
        "--disable-host-loopback did not refuse\n{out}"
    );
}

#[test]
fn kernel_mode_sigkilled_run_rules_removed_by_cleanup_and_lease_freed() {
    let h = Harness::new();
    let net = Internet::build(&h);
    let script = "mkfifo $D/up; \
        $B --net-mode=kernel -- sh -c 'echo > '$D/up'; exec sleep 600' & P=$!; \
        read x < $D/up; kill -9 $P; wait $P; \
        echo before=$(nft list ruleset | grep -c owner=); \
        $B --cleanup; echo cleanup=$?; \
        echo after=$(nft list ruleset | grep -c owner=); \
        L=$(ls -d /run/rootless-run/leases/net-$(stat -L -c %i /proc/self/ns/net))/10.0.2.100; \
        flock -w 20 $L true && echo lease=free";
    let out = run(
        "SIGKILL then --cleanup",
        &mut command(&outer_sh(&net, &h, script)),
        TIMEOUT,
    );
    assert!(out.stdout.contains("cleanup=0"), "{out}");
    assert!(
        !out.stdout.contains("before=0"),
        "the killed run left no rules to clean?\n{out}"
    );
    assert!(
        out.stdout.contains("after=0"),
        "--cleanup left rules\n{out}"
    );
    assert!(
        out.stdout.contains("lease=free"),
        "the lease stayed taken\n{out}"
    );
}

#[test]
fn kernel_mode_refuses_publish_with_one_line() {
    let h = Harness::new();
    let net = Internet::build(&h);
    let argv =
        net.in_outer(&h.rootless_run_with(&[KERNEL, "--publish", "8080:80"], &["true".to_owned()]));
    let out = run("--publish in kernel mode", &mut command(&argv), TIMEOUT);
    assert_eq!(out.shell_status(), 2, "{out}");
    assert_eq!(
        out.stderr_lines(),
        ["rootless-run: --publish: not supported with --net-mode=kernel yet; use --net-mode=userspace"],
        "{out}"
    );
}
