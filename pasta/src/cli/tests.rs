//! Tests of `cli`: podman's and rootlesskit's argv, getopt spellings, refusals.

use super::*;

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// The options of `--config-net --netns /x` and `extra` (for other modules' tests too).
pub(crate) fn options(extra: &[&str]) -> Options {
    let mut words = vec!["--config-net", "--netns", "/x"];
    words.extend_from_slice(extra);
    run(&words)
}

fn run(words: &[&str]) -> Options {
    match parse(&args(words)) {
        Ok(Action::Run(o)) => *o,
        other => panic!("{other:?}"),
    }
}

#[test]
fn podmans_argv_parses_into_pastas_meaning() {
    let o = run(&[
        "--config-net",
        "-t",
        "127.0.0.1/18080-18080:8080-8080",
        "-u",
        "18081-18081:8080-8080",
        "-t",
        "::1/18082-18082:8082-8082",
        "--dns-forward",
        "169.254.1.1",
        "-T",
        "none",
        "-U",
        "none",
        "--no-map-gw",
        "--quiet",
        "--netns",
        "/run/user/1000/netns/netns-x",
        "--map-guest-addr",
        "169.254.1.2",
    ]);
    assert!(o.config_net && o.quiet && !o.map_gw && o.netns_quit);
    assert_eq!(o.tcp.len(), 2);
    assert_eq!((o.tcp[1].host, o.tcp[1].guest), (18082, 8082));
    assert_eq!((o.udp[0].addr, o.udp[0].host), (None, 18081));
    assert_eq!(o.dns_forward, ["169.254.1.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(o.map_guest_addr, ["169.254.1.2".parse::<IpAddr>().unwrap()]);
    assert_eq!(
        o.netns,
        Some(NetnsArg::Path("/run/user/1000/netns/netns-x".into()))
    );
    assert_eq!(o.mtu, DEFAULT_MTU);
}

#[test]
fn every_spelling_gives_the_same_value_and_the_last_wins() {
    let base = ["--config-net", "--netns", "/x"];
    for form in [
        &["-m", "1500"][..],
        &["-m1500"],
        &["--mtu=1500"],
        &["--mtu", "1500"],
        &["--mtu", "9000", "-m", "1500"],
    ] {
        let mut w = base.to_vec();
        w.extend_from_slice(form);
        assert_eq!(run(&w).mtu, 1500, "{form:?}");
    }
    let o = run(&[
        "-4fq",
        "--config-net",
        "--netns=/x",
        "--map-gw",
        "--no-map-gw",
    ]);
    assert!(o.foreground && o.quiet && !o.map_gw);
    assert_eq!(o.family, Family::V4Only);
    let o = run(&[
        "--config-net",
        "-a",
        "10.0.2.100",
        "-n",
        "255.255.255.0",
        "-g",
        "10.0.2.2",
        "-a",
        "10.0.3.100",
        "17",
    ]);
    assert_eq!(o.addresses, ["10.0.3.100".parse::<IpAddr>().unwrap()]);
    assert_eq!(o.netmask, Some(24));
    assert_eq!(o.netns, Some(NetnsArg::Pid(17)));
}

#[test]
fn help_and_version_win_where_they_stand() {
    assert_eq!(parse(&args(&["--version"])), Ok(Action::Version));
    assert_eq!(parse(&args(&["-h", "--bogus"])), Ok(Action::Help));
    assert!(parse(&args(&["--bogus", "-h"])).is_err());
}

#[test]
fn refusals_name_the_option_and_say_why() {
    let err = |w: &[&str]| parse(&args(w)).unwrap_err().to_string();
    assert_eq!(
        err(&["--map-guest"]),
        "option '--map-guest-addr' requires an argument"
    );
    assert_eq!(err(&["--bogus"]), "unrecognized option '--bogus'");
    assert_eq!(
        err(&["-c", "/tmp/s", "--config-net", "1"]),
        "-c/--conf-path: not supported by rr-pasta (see docs/pasta-compat.md)"
    );
    assert_eq!(
        err(&["-t", "auto"]),
        "-t/--tcp-ports auto: forwarding the ports bound in the namespace ('auto') is not \
         supported; list them"
    );
    assert_eq!(
        err(&["-T", "127.0.0.1/80"]),
        "-T/--tcp-ns 127.0.0.1/80: an address or interface is only allowed with -t and -u"
    );
    assert!(err(&["-u", "all"]).starts_with("-u/--udp-ports all: 'all' port forwarding is only"));
    assert_eq!(err(&["-m", "70000"]), "-m/--mtu 70000: must be 68 to 65520");
    assert_eq!(
        err(&["-n", "255.0.255.0"]).split(':').next(),
        Some("-n/--netmask 255.0.255.0")
    );
    assert_eq!(
        err(&["--config-net"]),
        "no target namespace: give a PID or --netns PATH"
    );
    assert!(err(&["--config-net", "sh"]).starts_with("running COMMAND"));
    assert!(err(&["--config-net", "--netns", "/a", "12"]).starts_with("give one target"));
    assert!(err(&["--netns", "/a"]).starts_with("--config-net is required"));
    assert_eq!(
        err(&["--ns-mac-addr", "zz"]).split(':').next(),
        Some("--ns-mac-addr zz")
    );
}

#[test]
fn namespace_forwards_collect_per_protocol() {
    let o = run(&[
        "--config-net",
        "-T",
        "8080:18080",
        "-U",
        "53,54",
        "-T",
        "none",
        "1",
    ]);
    assert_eq!(o.tcp_ns.len(), 1);
    assert_eq!((o.tcp_ns[0].host, o.tcp_ns[0].guest), (8080, 18080));
    let udp: Vec<u16> = o.udp_ns.iter().map(|m| m.host).collect();
    assert_eq!(udp, [53, 54]);
    assert!(o.tcp.is_empty() && o.udp.is_empty());
}

#[test]
fn options_stop_at_the_first_operand_as_pastas_plus_optstring() {
    // "-f" after the PID is an operand, and a second one is refused as a command.
    let e = parse(&args(&["--config-net", "12", "-f"])).unwrap_err();
    assert_eq!(e, CliError::Command);
}

#[test]
fn netns_names_resolve_under_run_netns() {
    let o = run(&["--config-net", "--netns", "blue"]);
    assert_eq!(o.netns, Some(NetnsArg::Path("/run/netns/blue".into())));
    let o = run(&["--config-net", "--ns-mac-addr", "02:00:00:00:00:01", "1"]);
    assert_eq!(o.ns_mac, Some([2, 0, 0, 0, 0, 1]));
}
