//! The pasta drop-in driven exactly as podman 5.4 drives pasta (argv and process contract from
//! research/podman5-pasta.md): as root of the test user's user namespace, in the host's
//! network namespace, against an empty namespace bound to a file; output read until the pipe
//! closes, as Go's CombinedOutput does. Set RR_TEST_PASTA=/usr/bin/pasta to prove them against
//! the original. Inside `scripts/sealed-netns` (ext0 192.0.2.1/24 + 2001:db8::1/64, default
//! routes via .254 / ::fe into a dead end).

use std::net::TcpListener;
use std::time::Duration;

use rr_tests::child::run;
use rr_tests::pasta::{install, podman_like, HELPER_GONE};
use rr_tests::sandbox::{argv, Harness};
use rr_tests::servers::TcpEcho;

const TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn podman_argv_copies_the_host_addressing_returns_once_ready_and_quits_with_the_file() {
    let h = Harness::new();
    let pasta = install(&h);
    let script = format!(
        "out=$($PASTA $PODMAN_ARGS --pid $D/pid --netns $NS --map-guest-addr 169.254.1.2 2>&1) && rc=0 || rc=$?\n\
         echo \"status $rc output [$out]\"\n\
         grep -qa -- \"[/]${{NS#/}}\" /proc/$(cat $D/pid)/cmdline && echo 'pid file names the helper'\n\
         nsenter --net=$NS ip -o addr show\n\
         nsenter --net=$NS ip -o link show\n\
         nsenter --net=$NS ip route show\n\
         nsenter --net=$NS ip -6 route show\n\
         echo cc=$(nsenter --net=$NS cat /proc/sys/net/ipv4/tcp_congestion_control)\n\
         umount $NS; rm $NS\n{HELPER_GONE}"
    );
    let out = run(
        "pasta as podman",
        &mut podman_like(&h, &pasta, &[], &script),
        TIMEOUT,
    );
    let s = &out.stdout;
    assert!(s.contains("status 0 output []"), "{out:?}");
    assert!(
        s.contains("pid file names the helper"),
        "podman 6's --pid FILE: {out:?}"
    );
    assert!(
        s.contains("ext0    inet 192.0.2.1/24"),
        "host address copied: {out:?}"
    );
    assert!(s.contains("ext0    inet6 2001:db8::1/64"), "{out:?}");
    assert!(s.contains("mtu 65520"), "{out:?}");
    assert!(
        s.contains("cc=reno"),
        "no pacing over the tap our stack serves: {out:?}"
    );
    assert!(s.contains("1: lo: <LOOPBACK,UP"), "lo up: {out:?}");
    assert!(s.contains("default via 192.0.2.254 dev ext0"), "{out:?}");
    assert!(s.contains("default via 2001:db8::fe dev ext0"), "{out:?}");
    assert!(
        s.contains("helper gone"),
        "the helper quits with its file: {out:?}"
    );
}

#[test]
fn map_gw_guest_addr_and_a_published_port_reach_the_host_and_keep_the_client() {
    let h = Harness::new();
    let pasta = install(&h);
    let echo = TcpEcho::start();
    let host = TcpListener::bind("192.0.2.1:0").expect("bind on the sealed host's address");
    let host_port = host.local_addr().expect("bound").port();
    let hp = rr_tests::ports::free_port();
    let env = [
        ("LO", echo.port().to_string()),
        ("HOST", host_port.to_string()),
        ("HP", hp.to_string()),
    ];
    // Once with podman's --no-map-gw (the gateway is the dead-end one), once with --map-gw.
    let script = "\
        $PASTA $PODMAN_ARGS --netns $NS --map-guest-addr 169.254.1.2 -t 127.0.0.1/$HP-$HP:8080-8080\n\
        nsenter --net=$NS $PROBE poke tcp:192.0.2.254:$LO tcp:169.254.1.2:$HOST | sed 's/^/nomap /'\n\
        sleep 30 | nsenter --net=$NS $PROBE serve-tcp-echo 0.0.0.0:8080 > $D/peers &\n\
        for i in $(seq 100); do grep -q listening $D/peers && break; sleep 0.1; done\n\
        $PROBE tcp-echo 127.0.0.1:$HP 1000 | sed 's/^/client /'\n\
        cat $D/peers\n\
        umount $NS; rm $NS; touch $NS; unshare --net=$NS true\n\
        PODMAN_ARGS=$(echo \"$PODMAN_ARGS\" | sed 's/ --no-map-gw//')\n\
        $PASTA $PODMAN_ARGS --netns $NS --map-guest-addr 169.254.1.2\n\
        nsenter --net=$NS $PROBE poke tcp:192.0.2.254:$LO | sed 's/^/map /'\n\
        umount $NS; rm $NS\n"
        .to_owned()
        + HELPER_GONE;
    let out = run(
        "pasta as podman",
        &mut podman_like(&h, &pasta, &env, &script),
        TIMEOUT,
    );
    let s = &out.stdout;
    let lo = echo.port();
    assert!(
        s.contains(&format!("nomap tcp 169.254.1.2:{host_port} connected")),
        "{out:?}"
    );
    assert!(
        !s.contains(&format!("nomap tcp 192.0.2.254:{lo} connected")),
        "{out:?}"
    );
    assert!(
        s.contains(&format!("map tcp 192.0.2.254:{lo} connected")),
        "{out:?}"
    );
    assert!(s.contains("client "), "{out:?}");
    assert!(
        s.contains("peer 169.254.1.2:"),
        "a loopback client shows as the host: {out:?}"
    );
    assert!(s.contains("helper gone"), "{out:?}");
    drop(host);
}

#[test]
fn an_unsupported_option_is_one_line_naming_it_and_exit_1() {
    let h = Harness::new();
    let pasta = install(&h);
    let mut cmd = h.as_user(&argv(&[&pasta, "--config-net", "-c", "/tmp/s", "1"]));
    let out = run("pasta -c", &mut cmd, TIMEOUT);
    assert_eq!(out.shell_status(), 1, "{out:?}");
    assert_eq!(
        out.stderr_lines(),
        ["pasta: -c/--conf-path: not supported by rr-pasta (see docs/pasta-compat.md)"]
    );
    let out = run(
        "pasta --version",
        &mut h.as_user(&argv(&[&pasta, "--version"])),
        TIMEOUT,
    );
    assert!(out.stdout.starts_with("pasta rr-pasta-"), "{out:?}");
}
