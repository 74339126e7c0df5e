//! The pasta drop-in's port options beyond podman's: `-T`/`-U` (namespace loopback to host
//! loopback), `~` exclusions, `%IF/` interface binding, and `all` (refused, as pasta refuses
//! it). Same harness as dropin_pasta.rs: as root of the test user's user namespace, in the
//! host's network namespace, against an empty namespace bound to a file; inside
//! `scripts/sealed-netns` (ext0 192.0.2.1/24, lo). RR_TEST_PASTA=/usr/bin/pasta runs them
//! against the original.

use std::net::IpAddr;
use std::time::Duration;

use rr_tests::child::run;
use rr_tests::pasta::{install, podman_like, HELPER_GONE};
use rr_tests::ports::free_port;
use rr_tests::sandbox::Harness;
use rr_tests::servers::{TcpEcho, UdpEcho};

const TIMEOUT: Duration = Duration::from_secs(90);
/// Bytes sent through the `-T` forward: several copy buffers, both ways at once.
const TCP_BYTES: u64 = 1_000_000;

#[test]
fn tcp_and_udp_ns_forwards_reach_host_loopback_servers_except_excluded_ports() {
    let h = Harness::new();
    let pasta = install(&h);
    let tcp = TcpEcho::start();
    let udp = UdpEcho::start();
    let env = [
        ("LO", tcp.port().to_string()),
        ("ULO", udp.port().to_string()),
        ("BYTES", TCP_BYTES.to_string()),
    ];
    let script = "\
        $PASTA --config-net --quiet --netns $NS -T 8080:$LO,8081:$LO,~8081 -U 5353:$ULO\n\
        nsenter --net=$NS $PROBE tcp-echo 127.0.0.1:8080 $BYTES | sed 's/^/tcp /'\n\
        nsenter --net=$NS $PROBE connect 127.0.0.1:8081 2>&1 | sed 's/^/excluded /'\n\
        nsenter --net=$NS $PROBE udp-echo 127.0.0.1:5353 4 | sed 's/^/udp /'\n\
        umount $NS; rm $NS\n"
        .to_owned()
        + HELPER_GONE;
    let out = run(
        "pasta -T -U",
        &mut podman_like(&h, &pasta, &env, &script),
        TIMEOUT,
    );
    let s = &out.stdout;
    let line = |prefix: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no '{prefix}' line: {out:?}"))
            .to_owned()
    };
    let sent = line(&format!("tcp sent {TCP_BYTES} bytes sha256 "));
    let got = line(&format!("tcp received {TCP_BYTES} bytes sha256 "));
    assert_eq!(sent, got, "the bytes round-trip: {out:?}");
    let record = tcp.next_record(TIMEOUT);
    assert_eq!(record.bytes, TCP_BYTES, "{record:?}");
    assert_eq!(record.sha256, sent, "the host server saw the bytes sent");
    assert_eq!(record.peer.ip(), IpAddr::from([127, 0, 0, 1]), "{record:?}");
    assert_eq!(
        line("excluded "),
        "refused",
        "~8081 is not forwarded: {out:?}"
    );
    assert_eq!(line("udp "), "echoed 4 datagrams", "{out:?}");
    let echoed = udp.echoed();
    assert_eq!(echoed.len(), 4, "{echoed:?}");
    assert!(
        echoed.iter().all(|(peer, _)| peer.ip().is_loopback()),
        "{echoed:?}"
    );
    assert!(s.contains("helper gone"), "{out:?}");
}

#[test]
fn interface_bound_forwards_take_only_what_arrives_on_that_interface() {
    let h = Harness::new();
    let pasta = install(&h);
    let (lo, ext0, bad) = (free_port(), free_port(), free_port());
    let env = [
        ("HLO", lo.to_string()),
        ("HEXT", ext0.to_string()),
        ("HBAD", bad.to_string()),
    ];
    // A client on 127.0.0.1 arrives on lo: the %lo forward takes it to the namespace's echo
    // server, the %ext0 one does not take it.
    let script = "\
        $PASTA --config-net --quiet --netns $NS -t %nosuch0/$HBAD 2>$D/err && rc=0 || rc=$?\n\
        echo \"nosuch status $rc\"; sed 's/^/nosuch /' $D/err\n\
        $PASTA --config-net --quiet --netns $NS -t %lo/$HLO:8080 -t 127.0.0.1%ext0/$HEXT:8080\n\
        sleep 60 2>/dev/null | nsenter --net=$NS $PROBE serve-tcp-echo 0.0.0.0:8080 > $D/peers &\n\
        for i in $(seq 100); do grep -q listening $D/peers && break; sleep 0.1; done\n\
        $PROBE tcp-echo 127.0.0.1:$HLO 1000 2>&1 | sed 's/^/lo /'\n\
        $PROBE connect 127.0.0.1:$HEXT 2>&1 | sed 's/^/ext0 /'\n\
        kill $!; umount $NS; rm $NS\n"
        .to_owned()
        + HELPER_GONE;
    let out = run(
        "pasta %IF",
        &mut podman_like(&h, &pasta, &env, &script),
        TIMEOUT,
    );
    let s = &out.stdout;
    assert!(s.contains("nosuch status 1"), "{out:?}");
    assert!(
        s.contains("nosuch0"),
        "the error names the interface: {out:?}"
    );
    assert!(s.contains("lo received 1000 bytes"), "{out:?}");
    assert!(s.contains("ext0 refused"), "{out:?}");
    assert!(s.contains("helper gone"), "{out:?}");
}

#[test]
fn all_is_refused_as_pasta_refuses_it() {
    let h = Harness::new();
    let pasta = install(&h);
    let script = "\
        for opt in -t -U; do\n\
        $PASTA --config-net --quiet --netns $NS $opt all 2>$D/err && rc=0 || rc=$?\n\
        echo \"$opt status $rc\"; sed \"s/^/$opt /\" $D/err\n\
        done\n";
    let out = run(
        "pasta all",
        &mut podman_like(&h, &pasta, &[], script),
        TIMEOUT,
    );
    let s = &out.stdout;
    for opt in ["-t", "-U"] {
        assert!(s.contains(&format!("{opt} status 1")), "{out:?}");
        assert!(
            s.contains("'all' port forwarding is only allowed for passt"),
            "{out:?}"
        );
    }
    assert_eq!(
        s.lines()
            .filter(|l| l.contains("only allowed for passt"))
            .count(),
        2,
        "one line each: {out:?}"
    );
}
