//! The DNS forwarder at 10.0.2.3 and fd00::3 (issue 9, items 4, 5 and 7), as the unprivileged
//! test user: queries over UDP and TCP relayed to an upstream on the host's loopback, given by
//! `--dns-upstream` or, by default, by the host's /etc/resolv.conf (which the test replaces in a
//! private mount namespace); the sandbox's /etc/resolv.conf naming the forwarder; SERVFAIL in
//! bounded time from an upstream that never answers; malformed queries dropped without harm;
//! and `--disable-dns`, after which 10.0.2.3 refuses and nothing for it leaves the stack.
//! The only upstream is `resolver::FakeResolver`, started by each test on its own 127.0.0.x:
//! the machine's resolver is never named.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use rr_tests::addrs::{DNS_V4, DNS_V6};
use rr_tests::bait::BaitNet;
use rr_tests::child::{run, TIMEOUT};
use rr_tests::dns_wire::{RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_SERVFAIL};
use rr_tests::resolver::{Behaviour, FakeResolver, ANSWER_V4, ANSWER_V6, ZONE};
use rr_tests::sandbox::{command, in_new_namespaces, Harness};
use rr_tests::steps::{Step, Steps, StepsOutput};

/// A name the fake upstream answers.
fn name() -> String {
    format!("www.{ZONE}")
}

/// The bound on a SERVFAIL from an upstream that never answers: glibc's stub resolver waits
/// 5 s per try and tries twice (resolv.conf(5), `timeout:5`, `attempts:2`), so a SERVFAIL
/// later than 10 s reaches no one.
const SERVFAIL_BOUND: Duration = Duration::from_secs(10);

/// How long `dns-query` waits where no reply is the expected outcome.
const NO_REPLY_WAIT_S: &str = "5";

/// `[ADDR]:53` or `ADDR:53`.
fn dns53(ip: impl Into<IpAddr>) -> String {
    SocketAddr::new(ip.into(), 53).to_string()
}

/// Runs `steps` in a sandbox started with `flags`, as the test user.
fn run_steps(h: &Harness, flags: &[&str], steps: &Steps) -> StepsOutput {
    let argv = h.as_user_argv(&h.rootless_run_with(flags, &steps.sh(h)));
    StepsOutput::new(run(
        format!("rootless-run {} -- DNS steps", flags.join(" ")),
        &mut command(&argv),
        TIMEOUT,
    ))
}

/// The step answered with `rcode` and, for NOERROR, with `addr`.
fn assert_answer(out: &StepsOutput, name: &str, rcode: u8, addr: Option<IpAddr>) {
    let step = out.step(name);
    assert_eq!(
        step.exit,
        Some(0),
        "step {name}: the query failed\n{}",
        out.out
    );
    assert!(
        step.has(&format!("rcode {rcode}")),
        "step {name}: expected rcode {rcode}: {step:?}\n{}",
        out.out
    );
    if let Some(a) = addr {
        assert!(
            step.has(&format!("answer {a}")),
            "step {name}: expected the fake upstream's answer {a}: {step:?}\n{}",
            out.out
        );
    }
}

fn elapsed(step: &Step) -> Option<Duration> {
    step.lines
        .iter()
        .find_map(|l| l.strip_prefix("elapsed_ms "))
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}

fn query(server: &str, proto: &str, qname: &str, qtype: &str) -> String {
    format!("$P dns-query {server} {proto} {qname} {qtype}")
}

#[test]
fn udp_and_tcp_queries_to_both_forwarder_addresses_reach_a_loopback_upstream() {
    let h = Harness::new();
    let upstream = FakeResolver::start(Ipv4Addr::new(127, 0, 0, 77).into(), 0, Behaviour::Answer);
    let up = upstream.addr().to_string();
    let (d4, d6, n) = (dns53(DNS_V4), dns53(DNS_V6), name());
    let steps = Steps::new()
        .step("udp4", &query(&d4, "udp", &n, "a"))
        .step("tcp4", &query(&d4, "tcp", &n, "aaaa"))
        .step("udp6", &query(&d6, "udp", &n, "aaaa"))
        .step("tcp6", &query(&d6, "tcp", &n, "a"))
        .step("nxdomain", &query(&d4, "udp", "nosuch.example", "a"));
    let out = run_steps(&h, &["--dns-upstream", &up], &steps);
    assert_eq!(out.out.shell_status(), 0, "{}", out.out);
    let (v4, v6) = (Some(IpAddr::V4(ANSWER_V4)), Some(IpAddr::V6(ANSWER_V6)));
    assert_answer(&out, "udp4", RCODE_NOERROR, v4);
    assert_answer(&out, "tcp4", RCODE_NOERROR, v6);
    assert_answer(&out, "udp6", RCODE_NOERROR, v6);
    assert_answer(&out, "tcp6", RCODE_NOERROR, v4);
    // The upstream's rcode passes through, not just its answers.
    assert_answer(&out, "nxdomain", RCODE_NXDOMAIN, None);

    let seen = upstream.seen();
    let asked = seen
        .iter()
        .filter(|s| s.name.as_deref() == Some(n.as_str()))
        .count();
    assert!(
        asked >= 4,
        "the upstream {up} saw {asked} queries for {n}, expected 4: {seen:?}"
    );
}

/// The default: the upstreams are the host's resolv.conf nameservers, a loopback one (as with
/// systemd-resolved's 127.0.0.53) included, and the sandbox gets a resolv.conf naming the
/// forwarder, so plain `getent hosts` works. `--keep-resolv-conf` leaves the host's file.
#[test]
fn default_upstream_is_the_hosts_loopback_nameserver_and_resolv_conf_names_the_forwarder() {
    let h = Harness::new();
    let upstream_ip = Ipv4Addr::new(127, 0, 0, 78);
    let upstream = FakeResolver::start(upstream_ip.into(), 53, Behaviour::Answer);
    let resolv = h.dir().join("resolv.conf");
    let host_conf = format!("nameserver {upstream_ip}\n");
    fs::write(&resolv, &host_conf).expect("write the test's resolv.conf");
    let setup = format!("mount --bind {} /etc/resolv.conf", resolv.display());
    let n = name();
    let steps = Steps::new()
        .step("conf", "cat /etc/resolv.conf")
        .step("getent", &format!("getent hosts {n}"))
        .step("tcp", &query(&dns53(DNS_V4), "tcp", &n, "a"));
    for keep in [false, true] {
        let flags: &[&str] = if keep { &["--keep-resolv-conf"] } else { &[] };
        let argv = in_new_namespaces(
            &["--mount", "--propagation", "private"],
            &setup,
            &h.as_user_argv(&h.rootless_run_with(flags, &steps.sh(&h))),
        );
        let out = StepsOutput::new(run(
            format!("rootless-run {flags:?} -- getent (host resolv.conf: {upstream_ip})"),
            &mut command(&argv),
            TIMEOUT,
        ));
        assert_eq!(out.out.shell_status(), 0, "{}", out.out);
        let conf = out.step("conf");
        let nameservers: Vec<&str> = conf
            .lines
            .iter()
            .filter_map(|l| l.strip_prefix("nameserver "))
            .map(str::trim)
            .collect();
        if keep {
            assert_eq!(
                nameservers,
                [upstream_ip.to_string()],
                "--keep-resolv-conf: the sandbox must see the host's resolv.conf\n{}",
                out.out
            );
            continue;
        }
        assert_eq!(
            nameservers,
            [DNS_V4.to_string(), DNS_V6.to_string()],
            "the sandbox's resolv.conf must name the forwarder (10.0.2.3, then fd00::3), \
             not the host's loopback\n{}",
            out.out
        );
        let getent = out.step("getent");
        let first = getent
            .lines
            .first()
            .and_then(|l| l.split_whitespace().next());
        let answers = [ANSWER_V4.to_string(), ANSWER_V6.to_string()];
        assert!(
            getent.exit == Some(0)
                && first.is_some_and(|a| answers.iter().any(|x| x == a))
                && getent.lines[0].ends_with(&n),
            "getent hosts {n} must resolve through 10.0.2.3 to the fake upstream's answer\n{}",
            out.out
        );
        assert_answer(&out, "tcp", RCODE_NOERROR, Some(IpAddr::V4(ANSWER_V4)));
    }
    let seen = upstream.seen();
    assert!(
        seen.iter().any(|s| s.name.as_deref() == Some(n.as_str())),
        "the host's loopback nameserver {upstream_ip} never saw a query: {seen:?}"
    );
}

/// A query to a silent upstream over `proto` gets SERVFAIL within `SERVFAIL_BOUND`, and the
/// upstream did see it (the SERVFAIL is its silence, not a query never sent).
fn assert_servfail_from_a_silent_upstream(proto: &str, upstream_ip: Ipv4Addr) {
    let h = Harness::new();
    let upstream = FakeResolver::start(upstream_ip.into(), 0, Behaviour::Silent);
    let up = upstream.addr().to_string();
    let n = name();
    // The probe waits a little past the bound, so a late SERVFAIL is told from none at all.
    let wait = (SERVFAIL_BOUND * 2).as_secs().to_string();
    let steps = Steps::new().step(
        proto,
        &format!("$P dns-query {} {proto} {n} a {wait}", dns53(DNS_V4)),
    );
    let out = run_steps(&h, &["--dns-upstream", &up], &steps);
    assert_answer(&out, proto, RCODE_SERVFAIL, None);
    let took = elapsed(out.step(proto));
    assert!(
        took.is_some_and(|t| t <= SERVFAIL_BOUND),
        "{proto}: SERVFAIL must come within {SERVFAIL_BOUND:?}, took {took:?}\n{}",
        out.out
    );
    let seen = upstream.seen();
    assert!(
        seen.iter().any(|s| s.name.as_deref() == Some(n.as_str())),
        "the silent upstream {up} never saw the query: {seen:?}"
    );
}

#[test]
fn a_silent_upstream_gives_servfail_over_udp_within_the_bound() {
    assert_servfail_from_a_silent_upstream("udp", Ipv4Addr::new(127, 0, 0, 79));
}

/// Issue 9 item 4 asks the forwarder to answer over TCP too, and a dead upstream never to
/// hang the sandbox.
#[test]
fn a_silent_upstream_gives_servfail_over_tcp_within_the_bound() {
    assert_servfail_from_a_silent_upstream("tcp", Ipv4Addr::new(127, 0, 0, 82));
}

/// Sends the probe's malformed queries over `proto` to both forwarder addresses, then good
/// queries over UDP and TCP: the good ones are answered, and the upstream never saw a
/// malformed one (issue 9 item 4: "malformed queries are dropped and counted").
fn assert_malformed_dropped(proto: &str, upstream_ip: Ipv4Addr) {
    let h = Harness::new();
    let upstream = FakeResolver::start(upstream_ip.into(), 0, Behaviour::Answer);
    let up = upstream.addr().to_string();
    let (d4, d6, n) = (dns53(DNS_V4), dns53(DNS_V6), name());
    let steps = Steps::new()
        .step("garbage4", &format!("$P dns-garbage {d4} {proto}"))
        .step("garbage6", &format!("$P dns-garbage {d6} {proto}"))
        .step("udp", &query(&d4, "udp", &n, "a"))
        .step("tcp", &query(&d4, "tcp", &n, "a"))
        .step("udp6", &query(&d6, "udp", &n, "aaaa"));
    let out = run_steps(&h, &["--dns-upstream", &up], &steps);
    let sent = if proto == "udp" {
        "sent 5 udp"
    } else {
        "sent 6 tcp"
    };
    for g in ["garbage4", "garbage6"] {
        let step = out.step(g);
        assert!(
            step.exit == Some(0) && step.has(sent),
            "{g}: the probe could not send its malformed queries: {step:?}\n{}",
            out.out
        );
    }
    assert_answer(&out, "udp", RCODE_NOERROR, Some(IpAddr::V4(ANSWER_V4)));
    assert_answer(&out, "tcp", RCODE_NOERROR, Some(IpAddr::V4(ANSWER_V4)));
    assert_answer(&out, "udp6", RCODE_NOERROR, Some(IpAddr::V6(ANSWER_V6)));
    let malformed: Vec<_> = upstream
        .seen()
        .into_iter()
        .filter(|s| s.name.is_none())
        .collect();
    assert!(
        malformed.is_empty(),
        "{proto}: the forwarder relayed {} malformed queries upstream: {malformed:?}",
        malformed.len()
    );
    assert!(!out.out.stderr.contains("panicked"), "{}", out.out);
}

#[test]
fn malformed_udp_queries_are_dropped_and_later_queries_still_answered() {
    assert_malformed_dropped("udp", Ipv4Addr::new(127, 0, 0, 80));
}

#[test]
fn malformed_tcp_queries_are_dropped_and_later_queries_still_answered() {
    assert_malformed_dropped("tcp", Ipv4Addr::new(127, 0, 0, 83));
}

/// `--disable-dns`: the forwarder's addresses refuse, and nothing addressed to them is sent to
/// the real network (slirp4netns 1.2 sends TCP for 10.0.2.3 to a real host of that address).
/// The launcher runs in a namespace whose every route ends at a sniffer.
#[test]
fn disable_dns_refuses_the_forwarder_addresses_and_forwards_nothing() {
    let h = Harness::new();
    let watch = ["10.0.2.0/24", "fd00::/64"];
    let probes = [IpAddr::V4(DNS_V4), IpAddr::V6(DNS_V6)];
    let mut net = BaitNet::build(&h, &watch, &probes);
    let (d4, d6, n) = (dns53(DNS_V4), dns53(DNS_V6), name());
    let steps = Steps::new()
        .step("tcp4", &format!("$P connect {d4}"))
        .step("tcp6", &format!("$P connect {d6}"))
        .step(
            "udp4",
            &format!("$P dns-query {d4} udp {n} a {NO_REPLY_WAIT_S}"),
        )
        .step(
            "udp6",
            &format!("$P dns-query {d6} udp {n} a {NO_REPLY_WAIT_S}"),
        )
        .step("barrier", &format!("$P connect {}", BaitNet::barrier(0)));
    let argv =
        net.in_outer(&h.as_user_argv(&h.rootless_run_with(&["--disable-dns"], &steps.sh(&h))));
    let out = StepsOutput::new(run(
        "rootless-run --disable-dns -- DNS steps",
        &mut command(&argv),
        TIMEOUT,
    ));
    assert_eq!(
        out.step("barrier").exit,
        Some(0),
        "the barrier connection failed, so the leak check would prove nothing\n{}",
        out.out
    );
    let seen = net.seen_before_barrier(0, TIMEOUT);
    assert!(
        seen.is_empty(),
        "--disable-dns: traffic for the forwarder's addresses left the stack: {seen:#?}\n{}",
        out.out
    );
    for proto in ["tcp4", "tcp6"] {
        let step = out.step(proto);
        assert_eq!(
            (step.exit, step.lines.as_slice()),
            (Some(3), &["refused".to_owned()][..]),
            "--disable-dns: TCP to the forwarder must be refused (RST)\n{}",
            out.out
        );
    }
    for proto in ["udp4", "udp6"] {
        let step = out.step(proto);
        assert!(
            matches!(step.exit, Some(3 | 4)) && !step.lines.iter().any(|l| l.starts_with("rcode")),
            "--disable-dns: a UDP query must get no answer\n{}",
            out.out
        );
    }
}
