//! Tests of the network options: each flag's validation into `config::NetConfig`, through
//! the whole command line (`cli::tests::run`), and the errors that name flag and value.
//! Run by `cargo test`; `net_mode`'s own tests stay beside it in `net.rs`.

use std::net::{Ipv4Addr, Ipv6Addr};

use netstack::forward::{ForwardSpec, Transport};

use super::*;
use crate::cli::tests::run;

fn net(args: &[&str]) -> Result<NetConfig, String> {
    let mut args = args.to_vec();
    args.push("true");
    run(&args).map(|c| c.net)
}

#[test]
fn defaults_are_slirp4netns_with_the_forwarder_named_in_resolv_conf() {
    let n = net(&[]).expect("valid");
    assert_eq!(n, NetConfig::default());
    assert_eq!(n.addr.sandbox_v4(), Ipv4Addr::new(10, 0, 2, 100));
    assert_eq!(n.resolv_conf, ResolvConf::Generated);
    assert!(n.host_loopback && n.dns && n.ipv6);
}

#[test]
fn cidr_and_cidr6_move_the_network_or_name_the_problem() {
    let n = net(&["--cidr", "10.0.3.0/24", "--cidr6=fd00:1::/64"]).expect("valid");
    assert_eq!(n.addr.gateway_v4(), Ipv4Addr::new(10, 0, 3, 2));
    assert_eq!(
        n.addr.dns_v6(),
        "fd00:1::3".parse::<Ipv6Addr>().expect("ip")
    );
    assert_eq!(
        net(&["--cidr", "10.0.2.100/24"]).expect_err("host bits"),
        "--cidr 10.0.2.100/24: CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24"
    );
    assert_eq!(
        net(&["--cidr", "10.0.0.0/26"]).expect_err("too long"),
        "--cidr 10.0.0.0/26: prefix length needs to be 1-25 (the sandbox is network + 100)"
    );
    assert_eq!(
        net(&["--cidr6", "fd00::/48"]).expect_err("not /64"),
        "--cidr6 fd00::/48: prefix length must be 64"
    );
}

#[test]
fn publish_expands_with_the_chosen_addressing() {
    let n = net(&["--cidr=10.9.0.0/16", "--publish", "127.0.0.1:8080:80"]).expect("valid");
    assert_eq!(n.publish.len(), 1);
    assert_eq!(n.publish[0].value, "127.0.0.1:8080:80");
    assert_eq!(
        n.publish[0].specs,
        [ForwardSpec {
            proto: Transport::Tcp,
            host: "127.0.0.1:8080".parse().expect("addr"),
            guest: "10.9.0.100:80".parse().expect("addr"),
        }]
    );
    let n = net(&["--disable-ipv6", "--publish", "8080:80"]).expect("valid");
    assert_eq!(n.publish[0].specs.len(), 1, "no [::] forward without IPv6");
}

#[test]
fn publish_errors_name_flag_and_value() {
    assert_eq!(
        net(&["--publish", "70000:80"]).expect_err("range"),
        "--publish 70000:80: port 70000 is out of range (1-65535)"
    );
    assert_eq!(
        net(&["--disable-ipv6", "--publish", "[::1]:8080:80"]).expect_err("no v6"),
        "--publish [::1]:8080:80: IPv6 is off in the sandbox (--disable-ipv6, or --mtu below 1280)"
    );
    assert_eq!(
        net(&["--mtu=1200", "--publish", "[::1]:8080:80"]).expect_err("small mtu"),
        "--publish [::1]:8080:80: IPv6 is off in the sandbox (--disable-ipv6, or --mtu below 1280)"
    );
    assert_eq!(
        net(&["--publish", "8080:80", "--publish", "[::1]:8080:80"]).expect_err("overlap"),
        "--publish [::1]:8080:80: tcp port 8080 on ::1 is already published by --publish 8080:80"
    );
}

#[test]
fn outbound_takes_an_address_of_its_family_or_an_interface_name() {
    let n = net(&["--outbound-addr", "192.0.2.1", "--outbound-addr6=eth0"]).expect("valid");
    assert_eq!(
        n.outbound_v4,
        Some(Outbound::Addr(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))))
    );
    assert_eq!(n.outbound_v6, Some(Outbound::Interface("eth0".into())));
    assert_eq!(
        net(&["--outbound-addr", "::1"]).expect_err("family"),
        "--outbound-addr ::1: not an IPv4 address (use --outbound-addr6)"
    );
    assert_eq!(
        net(&["--outbound-addr6", "10.0.0.1"]).expect_err("family"),
        "--outbound-addr6 10.0.0.1: not an IPv6 address (use --outbound-addr)"
    );
    assert_eq!(
        net(&["--outbound-addr", "a/b"]).expect_err("bad name"),
        "--outbound-addr a/b: neither an IPv4 address nor an interface name"
    );
    assert!(net(&["--outbound-addr", "averylonginterfacename"]).is_err());
    assert_eq!(
        net(&["--outbound-addr", "0.0.0.0"]).expect_err("unspecified"),
        "--outbound-addr 0.0.0.0: not a unicast IPv4 address"
    );
}

#[test]
fn mac_must_be_six_octets_unicast() {
    let n = net(&["--mac", "52:54:00:AB:cd:01"]).expect("valid");
    assert_eq!(n.mac, Some([0x52, 0x54, 0x00, 0xab, 0xcd, 0x01]));
    let n = net(&["--macaddress=02:00:00:00:00:01"]).expect("slirp4netns's name");
    assert_eq!(n.mac, Some([2, 0, 0, 0, 0, 1]));
    assert_eq!(
        net(&["--mac", "01:00:5e:00:00:01"]).expect_err("multicast"),
        "--mac 01:00:5e:00:00:01: not a unicast address (the first octet must be even)"
    );
    for bad in [
        "52:54:00:12:34",
        "52:54:00:12:34:56:78",
        "52-54-00-12-34-56",
        "5:54:00:12:34:56",
        "zz:54:00:12:34:56",
    ] {
        assert_eq!(
            net(&["--mac", bad]).expect_err(bad),
            format!("--mac {bad}: expected six octets like 52:54:00:12:34:56")
        );
    }
    assert!(net(&["--mac", "00:00:00:00:00:00"]).is_err());
}

#[test]
fn dns_upstreams_parse_with_default_port_and_conflict_with_disable_dns() {
    let n = net(&[
        "--dns-upstream",
        "127.0.0.53",
        "--dns-upstream=[::1]:5353",
        "--dns-upstream",
        "192.0.2.1:54",
        "--dns-upstream",
        "::1",
    ])
    .expect("valid");
    let want: Vec<SocketAddr> = ["127.0.0.53:53", "[::1]:5353", "192.0.2.1:54", "[::1]:53"]
        .iter()
        .map(|s| s.parse().expect("addr"))
        .collect();
    assert_eq!(n.dns_upstreams, Some(want));
    assert_eq!(
        net(&["--dns-upstream", "resolver"]).expect_err("name"),
        "--dns-upstream resolver: expected ADDR[:PORT], with IPv6 as [ADDR]:PORT"
    );
    assert_eq!(
        net(&["--dns-upstream", "127.0.0.1:0"]).expect_err("port 0"),
        "--dns-upstream 127.0.0.1:0: port 0 is out of range (1-65535)"
    );
    assert_eq!(
        net(&["--disable-dns", "--dns-upstream", "127.0.0.1"]).expect_err("conflict"),
        "--dns-upstream: cannot be combined with --disable-dns (there is no forwarder to relay)"
    );
}

#[test]
fn disable_dns_and_keep_resolv_conf_keep_the_hosts_file() {
    let n = net(&["--disable-dns"]).expect("valid");
    assert!(!n.dns);
    assert_eq!(n.resolv_conf, ResolvConf::Host);
    let n = net(&["--keep-resolv-conf"]).expect("valid");
    assert!(n.dns);
    assert_eq!(n.resolv_conf, ResolvConf::Host);
    let n = net(&["--disable-host-loopback"]).expect("valid");
    assert!(!n.host_loopback);
}

#[test]
fn api_socket_path_must_fit_sun_path() {
    let ok = format!("/{}", "a".repeat(106));
    assert_eq!(
        net(&["--api-socket", &ok])
            .expect("107 bytes fit")
            .api_socket,
        Some(PathBuf::from(&ok))
    );
    let long = format!("/{}", "a".repeat(107));
    assert_eq!(
        net(&["--api-socket", &long]).expect_err("108 bytes"),
        format!("--api-socket {long}: must be 1 to 107 bytes (a UNIX socket path)")
    );
    assert!(net(&["--api-socket="]).is_err());
}

#[test]
fn mtu_range_and_ipv6_minimum() {
    assert_eq!(
        net(&["--mtu=67"]).expect_err("small"),
        "--mtu=67: must be between 68 and 65521"
    );
    assert!(!net(&["--mtu=1279"]).expect("valid").ipv6);
    assert!(net(&["--mtu=1280"]).expect("valid").ipv6);
    assert_eq!(
        net(&["--busy-poll=5"]).expect("valid").busy_poll,
        Duration::from_micros(5)
    );
}

#[test]
fn every_network_flag_is_refused_with_join() {
    let flags = all_flags();
    assert_eq!(flags.len(), 15, "{flags:?}");
    for flag in &flags {
        let args: Vec<&str> = match flag.as_str() {
            "--disable-ipv6"
            | "--disable-host-loopback"
            | "--disable-dns"
            | "--keep-resolv-conf" => vec![flag.as_str()],
            "--mtu" => vec!["--mtu", "1500"],
            "--busy-poll" => vec!["--busy-poll", "0"],
            "--net-mode" => vec!["--net-mode", "userspace"],
            "--cidr" => vec!["--cidr", "10.0.2.0/24"],
            "--cidr6" => vec!["--cidr6", "fd00::/64"],
            "--mac" => vec!["--mac", "02:00:00:00:00:01"],
            "--publish" => vec!["--publish", "8080:80"],
            "--dns-upstream" => vec!["--dns-upstream", "127.0.0.1"],
            "--api-socket" => vec!["--api-socket", "/tmp/x.sock"],
            _ => vec![flag.as_str(), "127.0.0.1"],
        };
        let mut with_join = vec!["--join=123"];
        with_join.extend(&args);
        assert_eq!(
            net(&with_join).expect_err(flag),
            format!(
                "{flag}: cannot be combined with --join (the joined sandbox's network is \
                 not ours to change)"
            ),
        );
        let mut with_join_ns = vec!["--join-ns", "net=/proc/1/ns/net"];
        with_join_ns.extend(&args);
        assert!(net(&with_join_ns).is_err(), "{flag} with --join-ns");
    }
    // Defaults alone do not count as given; the joined sandbox keeps its resolv.conf.
    assert_eq!(
        net(&["--join=123"]).expect("valid").resolv_conf,
        ResolvConf::Host
    );
}
