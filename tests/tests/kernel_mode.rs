//! Kernel mode (`--net-mode=kernel`) end to end, as root, but only inside the outer network
//! namespace that `topology::Internet` builds for each test (never the machine's or the sealed
//! namespace's own links, tables or sysctls): TCP to a documentation address through the
//! kernel's masquerade, two sandboxes at once, `--disable-host-loopback`, cleanup of a
//! SIGKILLed run's rules and lease, and `--publish` (from the server namespace and from the
//! outer namespace's loopback; a port in use; ranges and a HOSTIP), ping and UDP to the gateway
//! and the server, `--outbound-addr` as the source the server sees, and `--detach`.

use rr_tests::child::{run, TIMEOUT};
use rr_tests::pattern::{sha256_hex, TCP_SEED};
use rr_tests::sandbox::{command, Harness};
use rr_tests::topology::{Internet, ECHO_PORT, OUTER_ADDR, SERVER_ADDR};

const KERNEL: &str = "--net-mode=kernel";

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
        &mut command(&net.outer_sh(&h, script)),
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
        &mut command(&net.outer_sh(&h, &script)),
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
        &mut command(&net.outer_sh(&h, script)),
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

/// Shell that sets $S to a pid in the server namespace: the namespace that holds the peer of
/// the outer namespace's `rr-out` (its nsid, as seen from the outer namespace, is the link's).
const FIND_SERVER: &str =
    "ID=$(ip -o -d link show rr-out | sed -n 's/.*link-netnsid \\([0-9]*\\).*/\\1/p'); \
    S=$(lsns -t net -n -o NETNSID,PID | awk -v id=$ID '$1 == id { print $2; exit }'); \
    [ -n \"$S\" ] || { echo no server namespace; exit 1; }";

#[test]
fn kernel_mode_publish_reaches_sandbox_with_client_address_and_leaves_no_rules() {
    let h = Harness::new();
    let net = Internet::build(&h);
    let serve = h
        .probe(&["serve", "tcp:[::]:80", "udp:0.0.0.0:53"])
        .join(" ");
    let tcp = |to: &str| h.probe(&["tcp-echo", to, "1000"]).join(" ");
    let udp = h.probe(&["udp-echo", "198.51.100.2:5353"]).join(" ");
    // The server's stdin ($D/in, held open by fd 3) ends it; its lines come through $D/out.
    let script = format!(
        "{FIND_SERVER}; ip link set lo up; ip addr add 2001:db8::2/64 dev rr-out nodad; \
         nsenter -t $S -n -- ip addr add 2001:db8::1/64 dev rr-srv nodad; mkfifo $D/in $D/out; exec 3<>$D/in 5<>$D/out; \
         $B --net-mode=kernel --publish 8080:80 --publish 5353:53/udp -- {serve} <$D/in >&5 3>&- & \
         P=$!; while read l <&5; do [ \"$l\" = ready ] && break; done; \
         echo rules-during=$(nft list ruleset | grep -c owner=); \
         nsenter -t $S -n -- {remote}; echo tcp=$?; \
         nsenter -t $S -n -- {udp}; echo udp=$?; \
         nsenter -t $S -n -- {remote6}; echo tcp6=$?; \
         {local}; echo local=$?; \
         exec 3>&-; wait $P; echo run=$?; echo end >&5; \
         while read l <&5; do [ \"$l\" = end ] && break; echo \"seen: $l\"; done; \
         echo rules-after=$(nft list ruleset | grep -c owner=)",
        remote = tcp("198.51.100.2:8080"),
        remote6 = tcp("[2001:db8::2]:8080"),
        local = tcp("127.0.0.1:8080"),
    );
    let out = run(
        "--publish in kernel mode",
        &mut command(&net.outer_sh(&h, &script)),
        TIMEOUT,
    );
    assert!(
        out.stdout.contains("tcp=0"),
        "TCP through the publish failed\n{out}"
    );
    assert!(
        out.stdout.contains("udp=0"),
        "UDP through the publish failed\n{out}"
    );
    assert!(
        out.stdout.contains("tcp6=0"),
        "TCP over IPv6 through the publish failed\n{out}"
    );
    assert!(
        out.stdout
            .contains("seen: tcp [fd00::100]:80 from [2001:db8::1]:"),
        "the sandbox did not see the IPv6 client's own address\n{out}"
    );
    assert!(
        out.stdout.contains("local=0"),
        "a loopback client failed\n{out}"
    );
    assert!(
        out.stdout
            .contains("seen: tcp 10.0.2.100:80 from 198.51.100.1:"),
        "the sandbox did not see the remote client's own address\n{out}"
    );
    assert!(
        out.stdout
            .contains("seen: udp 0.0.0.0:53 from 198.51.100.1:"),
        "UDP did not arrive from the remote client's address\n{out}"
    );
    assert!(
        out.stdout
            .contains("seen: tcp 10.0.2.100:80 from 10.0.2.2:"),
        "a loopback client should appear as the gateway\n{out}"
    );
    assert!(!out.stdout.contains("rules-during=0"), "{out}");
    assert!(
        out.stdout.contains("rules-after=0"),
        "the run left rules behind\n{out}"
    );
    assert!(out.stdout.contains("run=0"), "{out}");
}

#[test]
fn kernel_mode_publish_of_a_port_in_use_or_published_is_one_line_and_builds_nothing() {
    let h = Harness::new();
    let net = Internet::build(&h);
    let serve = h.probe(&["serve", "tcp:0.0.0.0:8080"]).join(" ");
    let script = format!(
        "mkfifo $D/in $D/out; exec 3<>$D/in 5<>$D/out; {serve} <$D/in >&5 3>&- & \
         while read l <&5; do [ \"$l\" = ready ] && break; done; \
         $B --net-mode=kernel --publish 8080:80 -- true; echo run=$?; \
         ip link show rrbr0 >/dev/null 2>&1 || echo bridge=absent; \
         nft list table inet rootless_run >/dev/null 2>&1 || echo table=absent; \
         mkfifo $D/up $D/hold; \
         $B --net-mode=kernel --publish 9090:80 -- sh -c 'echo > '$D/up'; read x < '$D/hold 3>&- 2>/dev/null & \
         H=$!; read x < $D/up; \
         $B --net-mode=kernel --publish 127.0.0.1:9090:81 -- true; echo second=$?; \
         echo > $D/hold; wait $H; echo first=$?; \
         exec 3>&-; wait"
    );
    let out = run(
        "--publish of a port in use",
        &mut command(&net.outer_sh(&h, &script)),
        TIMEOUT,
    );
    assert!(out.stdout.contains("run=1"), "{out}");
    assert_eq!(
        out.stderr_lines(),
        [
            "rootless-run: --publish 8080:80: 0.0.0.0:8080/tcp is already in use on the host",
            "rootless-run: --publish 127.0.0.1:9090:81: tcp port 9090 is already published by \
             another kernel-mode run"
        ],
        "{out}"
    );
    assert!(out.stdout.contains("second=1"), "{out}");
    assert!(out.stdout.contains("first=0"), "{out}");
    assert!(out.stdout.contains("bridge=absent"), "{out}");
    assert!(out.stdout.contains("table=absent"), "{out}");
}

#[test]
fn kernel_mode_ping_and_udp_reach_gateway_and_documentation_server() {
    let h = Harness::new();
    let net = Internet::build(&h);
    let serve_local = h.probe(&["serve", "udp:127.0.0.1:9"]).join(" ");
    let serve_remote = h.probe(&["serve", "udp:0.0.0.0:9"]).join(" ");
    let inside = format!(
        "ping -n -c1 -W5 10.0.2.2 && ping -n -c1 -W5 {SERVER_ADDR} && \
         {p} udp-echo 10.0.2.2:9 4 && {p} udp-echo {SERVER_ADDR}:9 3",
        p = h.probe(&[]).join(" ")
    );
    // Each server's stdin ($D/in, held by fd 3) ends it; their lines come through $D/out.
    let script = format!(
        "{FIND_SERVER}; mkfifo $D/in $D/out; exec 3<>$D/in 5<>$D/out; \
         {serve_local} <$D/in >&5 3>&- & nsenter -t $S -n -- {serve_remote} <$D/in >&5 3>&- & \
         r=0; while read l <&5; do [ \"$l\" = ready ] && r=$((r+1)); [ $r = 2 ] && break; done; \
         $B --net-mode=kernel -- sh -c '{inside}'; echo run=$?; \
         exec 3>&-; wait; echo end >&5; \
         while read l <&5; do [ \"$l\" = end ] && break; echo \"seen: $l\"; done"
    );
    let out = run(
        "ping and UDP in kernel mode",
        &mut command(&net.outer_sh(&h, &script)),
        TIMEOUT,
    );
    assert!(out.stdout.contains("run=0"), "{out}");
    assert_eq!(
        out.stdout
            .matches("1 packets transmitted, 1 received")
            .count(),
        2,
        "both pings must be answered\n{out}"
    );
    // Three to the server: the fourth datagram (8192 bytes, DF set) is larger than the
    // topology link's 1500-byte MTU, and a router answers it "fragmentation needed" (RFC 1191),
    // as the kernel does here; the userspace stack's host socket would fragment it instead.
    assert!(out.stdout.contains("echoed 4 datagrams"), "{out}");
    assert!(out.stdout.contains("echoed 3 datagrams"), "{out}");
    assert!(
        out.stdout
            .contains("seen: udp 127.0.0.1:9 from 10.0.2.100:"),
        "the gateway's UDP did not reach the host's loopback\n{out}"
    );
    assert!(
        out.stdout
            .contains(&format!("seen: udp 0.0.0.0:9 from {OUTER_ADDR}:")),
        "UDP to the server was not masqueraded\n{out}"
    );
}

#[test]
fn kernel_mode_publish_range_and_host_address_and_outbound_addr() {
    let h = Harness::new();
    let mut net = Internet::build(&h);
    let serve = h
        .probe(&["serve", "tcp:0.0.0.0:81", "tcp:0.0.0.0:82"])
        .join(" ");
    let connect = |to: &str| h.probe(&["connect", to]).join(" ");
    let echo = h
        .probe(&["tcp-echo", &format!("{SERVER_ADDR}:{ECHO_PORT}"), "1000"])
        .join(" ");
    // A second address of the outer namespace: the one --outbound-addr names.
    let script = format!(
        "{FIND_SERVER}; ip link set lo up; ip addr add 198.51.100.3/24 dev rr-out; \
         mkfifo $D/in $D/out; exec 3<>$D/in 5<>$D/out; \
         $B --net-mode=kernel --publish 8081-8082:81-82 --publish 127.0.0.1:9081:81 -- {serve} <$D/in >&5 3>&- & \
         P=$!; while read l <&5; do [ \"$l\" = ready ] && break; done; \
         nsenter -t $S -n -- {r81}; echo range81=$?; \
         nsenter -t $S -n -- {r82}; echo range82=$?; \
         {l9081}; echo hostip-local=$?; \
         nsenter -t $S -n -- {r9081}; echo hostip-remote=$?; \
         exec 3>&-; wait $P; echo run=$?; \
         $B --net-mode=kernel --outbound-addr 198.51.100.3 -- {echo}; echo outbound=$?",
        r81 = connect("198.51.100.2:8081"),
        r82 = connect("198.51.100.2:8082"),
        l9081 = connect("127.0.0.1:9081"),
        r9081 = connect("198.51.100.2:9081"),
    );
    let out = run(
        "--publish range, HOSTIP and --outbound-addr in kernel mode",
        &mut command(&net.outer_sh(&h, &script)),
        TIMEOUT,
    );
    for want in [
        "range81=0",
        "range82=0",
        "hostip-local=0",
        "run=0",
        "outbound=0",
    ] {
        assert!(out.stdout.contains(want), "expected {want}\n{out}");
    }
    assert!(
        out.stdout.contains("hostip-remote=3"),
        "a forward bound to 127.0.0.1 must not answer on another address\n{out}"
    );
    let peer = net.next_peer(TIMEOUT);
    assert_eq!(
        peer.ip().to_string(),
        "198.51.100.3",
        "--outbound-addr was not the source the server saw"
    );
}

#[test]
fn kernel_mode_detach_returns_at_once_and_the_run_cleans_up_when_the_command_ends() {
    let h = Harness::new();
    let net = Internet::build(&h);
    let script = "mkfifo $D/go $D/done; \
        $B --net-mode=kernel --detach -- sh -c 'read x < '$D/go'; \
            ping -n -c1 -W5 10.0.2.2 >/dev/null && echo pinged > '$D/done; \
        echo detach=$?; echo rules-during=$(nft list ruleset | grep -c owner=); \
        echo > $D/go; cat $D/done; \
        L=/run/rootless-run/leases/net-$(stat -L -c %i /proc/self/ns/net)/10.0.2.100; \
        flock -w 20 $L true && echo lease=free; \
        echo rules-after=$(nft list ruleset | grep -c owner=)";
    let out = run(
        "--detach in kernel mode",
        &mut command(&net.outer_sh(&h, script)),
        TIMEOUT,
    );
    assert!(out.stdout.contains("detach=0"), "{out}");
    assert!(!out.stdout.contains("rules-during=0"), "{out}");
    assert!(
        out.stdout.contains("pinged"),
        "the detached sandbox had no network\n{out}"
    );
    assert!(out.stdout.contains("lease=free"), "{out}");
    assert!(
        out.stdout.contains("rules-after=0"),
        "the detached run left rules\n{out}"
    );
}
