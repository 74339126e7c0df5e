//! The egress policy (issue 12), as the unprivileged test user, against servers at
//! documentation addresses in namespaces the test builds (`egress_net::EgressNet`) and a fake
//! DNS upstream on that namespace's loopback: allow and deny by CIDR, port, protocol and name;
//! wildcards; TTL expiry; a deny-all sandbox that reaches an allowed name; `--no-lan` against
//! each range; the audit log and exit summary; the runtime API; malformed rules.
//! Each test runs its checks as steps of one sandbox (`steps::Steps`): launches are costly.

use std::time::{Duration, Instant};

use rr_tests::api_client::{call, user_dir};
use rr_tests::child::{run, Running, TIMEOUT};
use rr_tests::egress_net::{EgressNet, LAN, NAMED_V4, PORT, PUBLIC_V4, PUBLIC_V6};
use rr_tests::resolver::ZONE;
use rr_tests::sandbox::{command, Harness};
use rr_tests::steps::{Steps, StepsOutput};

/// A denial must reach the program at once: far below any connect or resolver timeout.
const FAST: Duration = Duration::from_secs(2);

fn tcp(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{PORT}")
    } else {
        format!("{ip}:{PORT}")
    }
}

/// Runs `steps` in a sandbox started with `flags` inside `net`'s outer namespace.
fn run_steps(h: &Harness, net: &EgressNet, flags: &[&str], steps: &Steps) -> StepsOutput {
    let argv = net.in_outer(&h.as_user_argv(&h.rootless_run_with(flags, &steps.sh(h))));
    StepsOutput::new(run(
        format!("rootless-run {} -- egress steps", flags.join(" ")),
        &mut command(&argv),
        TIMEOUT,
    ))
}

/// A step that times its command: `ms N` after the command's own lines.
fn timed(cmd: &str) -> String {
    format!("s=$(date +%s%N); {cmd}; r=$?; echo ms $(( ($(date +%s%N) - s) / 1000000 )); exit_code=$r; (exit $r)")
}

fn millis(out: &StepsOutput, name: &str) -> Duration {
    let ms = out
        .step(name)
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("ms "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("step {name} has no timing\n{}", out.out));
    Duration::from_millis(ms)
}

fn assert_step(out: &StepsOutput, name: &str, exit: i32, line: &str) {
    let s = out.step(name);
    assert!(
        s.exit == Some(exit) && s.lines.iter().any(|l| l.contains(line)),
        "step {name}: expected exit {exit} and a line with {line:?}, got {s:?}\n{}",
        out.out
    );
}

#[test]
fn cidr_port_and_protocol_rules_decide_in_order_and_denials_are_fast_and_logged() {
    let h = Harness::new();
    let net = EgressNet::build(&h);
    let logs = user_dir(h.dir(), "logs", h.user());
    let log = logs.join("flows.jsonl");
    let log_arg = log.to_str().expect("utf-8 path").to_owned();
    let named = tcp(NAMED_V4);
    let steps = Steps::new()
        .step("tcp_allowed", &format!("$P connect {}", tcp(PUBLIC_V4)))
        .step(
            "tcp_denied_first_match",
            &timed(&format!("$P connect {named}")),
        )
        .step(
            "tcp_default_v6",
            &timed(&format!("$P connect {}", tcp(PUBLIC_V6))),
        )
        .step("udp_allowed", &format!("$P udp-echo {} 1", tcp(PUBLIC_V4)))
        .step("udp_denied", &timed(&format!("$P udp-echo {named} 1 2>&1")));
    let flags = [
        "--egress",
        "deny",
        "--deny",
        &format!("tcp:{named}"),
        "--allow",
        "tcp:198.51.100.0/24:7",
        "--deny",
        &format!("udp:{NAMED_V4}"),
        "--allow",
        "udp:198.51.100.0/24:7",
        "--log-egress",
        &log_arg,
    ];
    let out = run_steps(&h, &net, &flags, &steps);
    assert_step(&out, "tcp_allowed", 0, "connected");
    assert_step(&out, "tcp_denied_first_match", 3, "refused");
    assert!(millis(&out, "tcp_denied_first_match") < FAST, "{}", out.out);
    assert_step(&out, "tcp_default_v6", 3, "refused");
    assert_step(&out, "udp_allowed", 0, "echoed 1 datagrams");
    assert_step(&out, "udp_denied", 1, "No route to host");
    assert!(
        millis(&out, "udp_denied") < FAST,
        "ICMP prohibited, not a timeout\n{}",
        out.out
    );
    let summary = out
        .out
        .stderr_lines()
        .into_iter()
        .find(|l| l.contains("egress:"));
    assert_eq!(
        summary,
        Some("rootless-run: egress: 2 flows allowed, 3 denied, 0 DNS queries refused, 0 flows closed by rule changes"),
        "{}",
        out.out
    );
    let text = std::fs::read_to_string(&log).expect("the egress log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(lines.len(), 5, "{text}");
    let denied = lines
        .iter()
        .find(|l| l["dst"] == NAMED_V4 && l["proto"] == "tcp")
        .unwrap_or_else(|| panic!("no line for the denied flow\n{text}"));
    assert_eq!(denied["port"], PORT);
    assert_eq!(denied["verdict"], "deny");
    assert_eq!(denied["rule"], format!("deny tcp:{NAMED_V4}/32:{PORT}"));
    assert!(
        denied["time"].as_f64().is_some_and(|t| t > 1.7e9),
        "{denied}"
    );
    let v6 = lines
        .iter()
        .find(|l| l["dst"] == PUBLIC_V6)
        .expect("the IPv6 line");
    assert_eq!(v6["rule"], "default deny");
    let allowed = lines.iter().filter(|l| l["verdict"] == "allow").count();
    assert_eq!(allowed, 2, "{text}");
}

#[test]
fn a_deny_all_sandbox_reaches_an_allowed_name_and_nothing_else() {
    let h = Harness::new();
    let net = EgressNet::build(&h);
    let upstream = net.upstream().to_string();
    let named = tcp(NAMED_V4);
    let allowed = format!("www.{ZONE}");
    let other = format!("other.{ZONE}");
    let steps = Steps::new()
        .step("connect_before_dns", &format!("$P connect {named}"))
        .step(
            "query_denied_udp",
            &timed(&format!("$P dns-query 10.0.2.3:53 udp {other}")),
        )
        .step(
            "query_denied_tcp",
            &format!("$P dns-query 10.0.2.3:53 tcp {other}"),
        )
        .step(
            "query_allowed",
            &format!("$P dns-query 10.0.2.3:53 udp {allowed}"),
        )
        .step("connect_after_dns", &format!("$P connect {named}"))
        .step("udp_not_covered", &format!("$P udp-echo {named} 1 2>&1"))
        .step("public_denied", &format!("$P connect {}", tcp(PUBLIC_V4)));
    let flags = [
        "--egress",
        "deny",
        "--allow",
        &format!("tcp:{allowed}:{PORT}"),
        "--dns-upstream",
        &upstream,
    ];
    let out = run_steps(&h, &net, &flags, &steps);
    assert_step(&out, "connect_before_dns", 3, "refused");
    assert_step(&out, "query_denied_udp", 0, "rcode 5");
    assert!(millis(&out, "query_denied_udp") < FAST, "{}", out.out);
    assert_step(&out, "query_denied_tcp", 0, "rcode 5");
    assert_step(&out, "query_allowed", 0, &format!("answer {NAMED_V4}"));
    assert_step(&out, "connect_after_dns", 0, "connected");
    assert_step(&out, "udp_not_covered", 1, "No route to host");
    assert_step(&out, "public_denied", 3, "refused");
    let seen: Vec<Option<String>> = net.resolver().seen().into_iter().map(|s| s.name).collect();
    assert!(seen.contains(&Some(allowed.clone())), "{seen:?}");
    assert!(
        !seen
            .iter()
            .flatten()
            .any(|n| n.eq_ignore_ascii_case(&other)),
        "a refused name reached the upstream: {seen:?}"
    );
}

#[test]
fn wildcards_cover_names_below_not_the_domain_and_expiry_shuts_the_door() {
    let h = Harness::new();
    let net = EgressNet::build(&h);
    let upstream = net.upstream().to_string();
    let named = tcp(NAMED_V4);
    // After the answer's 1 s (floor = ceiling = 1 s) new connections are refused; the loop
    // ends at the first refusal and is bounded at 100 tries of 0.1 s.
    let expire = format!(
        "i=0; while [ $i -lt 100 ]; do $P connect {named} >/dev/null || break; i=$((i+1)); sleep 0.1; done; echo tries $i"
    );
    let steps = Steps::new()
        .step(
            "apex_refused",
            &format!("$P dns-query 10.0.2.3:53 udp {ZONE}"),
        )
        .step(
            "below_allowed",
            &format!("$P dns-query 10.0.2.3:53 udp a.b.{ZONE}"),
        )
        .step("connect_open", &format!("$P connect {named}"))
        .step("wait_expiry", &timed(&expire))
        .step("connect_expired", &format!("$P connect {named}"));
    let wildcard = format!("*.{ZONE}");
    let flags = [
        "--egress",
        "deny",
        "--allow",
        &wildcard,
        "--egress-ttl-min",
        "1",
        "--egress-ttl-max",
        "1",
        "--dns-upstream",
        &upstream,
    ];
    let out = run_steps(&h, &net, &flags, &steps);
    assert_step(&out, "apex_refused", 0, "rcode 5");
    assert_step(&out, "below_allowed", 0, &format!("answer {NAMED_V4}"));
    assert_step(&out, "connect_open", 0, "connected");
    let waited = millis(&out, "wait_expiry");
    assert!(
        waited >= Duration::from_millis(500)
            && out
                .step("wait_expiry")
                .lines
                .iter()
                .all(|l| l != "tries 100"),
        "the door closed after {waited:?}\n{}",
        out.out
    );
    assert_step(&out, "connect_expired", 3, "refused");
}

#[test]
fn no_lan_denies_each_private_range_and_leaves_the_internet() {
    let h = Harness::new();
    let net = EgressNet::build(&h);
    let mut targets: Vec<String> = LAN.iter().map(|(_, a)| format!("tcp:{}", tcp(a))).collect();
    targets.push(format!("tcp:{}", tcp(PUBLIC_V4)));
    targets.push(format!("tcp:{}", tcp(PUBLIC_V6)));
    let poke = format!("$P poke {}", targets.join(" "));
    let steps = Steps::new().step("poke", &poke);
    // Without the preset every server answers: what is refused below is the policy's doing.
    let open = run_steps(&h, &net, &[], &steps);
    for (label, a) in LAN {
        assert_step(&open, "poke", 0, &format!("tcp {} connected", tcp(a)));
        let _ = label;
    }
    let out = run_steps(&h, &net, &["--no-lan"], &steps);
    for (label, a) in LAN {
        let s = out.step("poke");
        assert!(
            s.has(&format!("tcp {} refused", tcp(a))),
            "{label} {a} not refused: {s:?}\n{}",
            out.out
        );
    }
    assert_step(
        &out,
        "poke",
        0,
        &format!("tcp {} connected", tcp(PUBLIC_V4)),
    );
    assert_step(
        &out,
        "poke",
        0,
        &format!("tcp {} connected", tcp(PUBLIC_V6)),
    );
}

#[test]
fn the_api_lists_adds_and_removes_rules_and_a_removal_resets_open_flows() {
    let h = Harness::new();
    let mut net = EgressNet::build(&h);
    let dir = user_dir(h.dir(), "api", h.user());
    let sock = dir.join("api.sock");
    let public = tcp(PUBLIC_V4);
    let steps = Steps::new()
        .step("ready", "echo ready")
        .step("held", &format!("$P expect-reset {public}"))
        .step("after_removal", &format!("$P connect {public}"));
    let flags = [
        "--egress",
        "deny",
        "--allow",
        &format!("tcp:{PUBLIC_V4}:{PORT}"),
        "--api-socket",
        sock.to_str().expect("utf-8 path"),
    ];
    let argv = net.in_outer(&h.as_user_argv(&h.rootless_run_with(&flags, &steps.sh(&h))));
    let mut sandbox = Running::spawn("rootless-run with an API socket", &mut command(&argv));
    sandbox.expect_line("ready", TIMEOUT, |l| l == "ready");
    net.next_tcp_caller(TIMEOUT);
    // The server's accept comes before the sandbox's connect() returns (the stack answers the
    // SYN once the host connection is up): wait for the probe's word, so the flow the rule
    // change must reset is established on both sides.
    sandbox.expect_line("the probe's `connected`", TIMEOUT, |l| l == "connected");

    let list = call(&sock, r#"{"execute":"list_egress"}"#);
    assert_eq!(
        list,
        r#"{"return":{"egress":"deny","rules":[{"id":1,"action":"allow","rule":"tcp:198.51.100.1/32:7"}],"allowed":1,"denied":0,"queries_refused":0,"closed":0}}"#
    );
    let bad = call(
        &sock,
        r#"{"execute":"add_egress_rule","arguments":{"action":"allow","rule":"10.0.0.1/8"}}"#,
    );
    assert_eq!(
        bad,
        r#"{"error":{"desc":"bad request: add_egress_rule: bad arguments.rule: host bits are set past the prefix length (give the network address)"}}"#
    );
    let added = call(
        &sock,
        r#"{"execute":"add_egress_rule","arguments":{"action":"deny","rule":"udp:198.51.100.0/24","index":0}}"#,
    );
    assert_eq!(
        added, r#"{"return":{"id":2,"closed":0}}"#,
        "a UDP rule closes no TCP flow"
    );
    let unknown = call(
        &sock,
        r#"{"execute":"remove_egress_rule","arguments":{"id":9}}"#,
    );
    assert_eq!(
        unknown,
        r#"{"error":{"desc":"bad request: remove_egress_rule: bad arguments.id"}}"#
    );
    let started = Instant::now();
    let removed = call(
        &sock,
        r#"{"execute":"remove_egress_rule","arguments":{"id":1}}"#,
    );
    assert_eq!(removed, r#"{"return":{"closed":1}}"#);
    let out = StepsOutput::new(sandbox.wait(TIMEOUT));
    assert_step(&out, "held", 0, "reset after");
    assert!(started.elapsed() < TIMEOUT);
    assert_step(&out, "after_removal", 3, "refused");
}

#[test]
fn malformed_rules_and_kernel_mode_are_one_line_usage_errors() {
    let h = Harness::new();
    for (flags, want) in [
        (vec!["--allow", "example.com:http"], "rootless-run: --allow example.com:http: port must be a number from 1 to 65535"),
        (vec!["--deny", "10.0.0.1/8"], "rootless-run: --deny 10.0.0.1/8: host bits are set past the prefix length (give the network address)"),
        (vec!["--allow", "[2001:db8::1"], "rootless-run: --allow [2001:db8::1: an IPv6 address in brackets must be followed by nothing or :PORT"),
        (vec!["--allow", "icmp:x.org:80"], "rootless-run: --allow icmp:x.org:80: icmp rules take no port"),
        (vec!["--allow", "a.*.org"], "rootless-run: --allow a.*.org: a wildcard is only allowed as a leading '*.' (e.g. *.example.com)"),
        (vec!["--deny", "x.org:9-1"], "rootless-run: --deny x.org:9-1: port range ends before it starts"),
        (vec!["--allow", "10.0.0.0/40"], "rootless-run: --allow 10.0.0.0/40: prefix length must be 0-32 (IPv4) or 0-128 (IPv6)"),
        (vec!["--allow", "bad..name"], "rootless-run: --allow bad..name: not an IP address, CIDR, host name or *.domain"),
        (vec!["--allow", ""], "rootless-run: --allow : empty rule"),
    ] {
        let argv = h.as_user_argv(&h.rootless_run_with(&flags, &["/bin/true".to_owned()]));
        let out = run(format!("{flags:?}"), &mut command(&argv), TIMEOUT);
        assert_eq!(out.shell_status(), 2, "{out}");
        assert_eq!(out.stderr_lines(), [want], "{out}");
    }
    // As real root, kernel mode cannot carry a policy; it fails before creating anything.
    let argv = h.rootless_run_with(
        &["--net-mode=kernel", "--no-lan"],
        &["/bin/true".to_owned()],
    );
    let out = run("kernel mode with --no-lan", &mut command(&argv), TIMEOUT);
    assert_eq!(out.shell_status(), 2, "{out}");
    assert_eq!(
        out.stderr_lines(),
        [
            "rootless-run: --no-lan: not with --net-mode=kernel: the egress policy is enforced by \
          the userspace stack, which sees every flow and DNS answer, and in kernel mode the \
          kernel routes; use --net-mode=userspace"
        ]
    );
    // --print-policy shows the presets as rules and exits 0.
    let argv = h.as_user_argv(&[
        h.launcher().to_owned(),
        "--no-lan".into(),
        "--print-policy".into(),
    ]);
    let out = run("--print-policy", &mut command(&argv), TIMEOUT);
    assert_eq!(out.shell_status(), 0, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"allow 10.0.2.2/32"), "{out}");
    for want in [
        "deny 169.254.169.254/32",
        "deny fd00:ec2::254/128",
        "deny 100.64.0.0/10",
        "deny fc00::/7",
    ] {
        assert!(lines.contains(&want), "{want} missing\n{out}");
    }
    assert_eq!(lines.last(), Some(&"egress allow"));
}
