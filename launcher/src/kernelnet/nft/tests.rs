//! The table's rules as JSON, compared with what `nft -j` reads; owner tags; stale-rule lookup.

use super::*;

fn rules() -> SandboxRules {
    SandboxRules {
        bridge: "rrbr0".into(),
        sandbox: vec!["10.0.2.101".parse().expect("literal")],
        gateway: vec!["10.0.2.2".parse().expect("literal")],
        dns: vec!["10.0.2.3".parse().expect("literal")],
        host_loopback: true,
        serve_dns: true,
        outbound: vec![],
        publish: vec![],
    }
}

const OWNER: Owner = Owner {
    pid: 77,
    start: 1234,
};

fn json(objs: Vec<NfListObject<'static>>) -> serde_json::Value {
    let mut b = Batch::new();
    for o in objs {
        b.add(o);
    }
    serde_json::to_value(b.to_nftables()).expect("serializable")
}

#[test]
fn owner_tag_round_trips_and_rejects_others() {
    assert_eq!(OWNER.tag(), "rootless-run owner=77/1234");
    assert_eq!(Owner::parse(&OWNER.tag()), Some(OWNER));
    assert_eq!(Owner::parse("rootless-run guard"), None);
    assert_eq!(Owner::parse("someone else"), None);
}

#[test]
fn our_own_process_is_an_alive_owner_and_a_changed_start_is_not() {
    let me = Owner::of(std::process::id() as i32).expect("own stat");
    assert!(me.alive());
    assert!(!Owner {
        start: me.start + 1,
        ..me
    }
    .alive());
}

fn tagged(chain: &str, expr: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"add": {"rule": {"family": "inet", "table": "rootless_run", "chain": chain, "expr": expr, "comment": "rootless-run owner=77/1234"}}})
}

fn iif() -> serde_json::Value {
    serde_json::json!({"match": {"left": {"meta": {"key": "iifname"}}, "right": "rrbr0", "op": "=="}})
}

fn saddr() -> serde_json::Value {
    serde_json::json!({"match": {"left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.0.2.101", "op": "=="}})
}

#[test]
fn sandbox_rules_are_loopback_dnat_and_masquerade() {
    let got = json(sandbox_objects(&rules(), &OWNER));
    let expected = serde_json::json!({"nftables": [
        tagged("prerouting", serde_json::json!([iif(), saddr(),
            {"match": {"left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.0.2.2", "op": "=="}},
            {"dnat": {"addr": "127.0.0.1", "family": "ip"}}])),
        tagged("postrouting", serde_json::json!([saddr(),
            {"match": {"left": {"meta": {"key": "oifname"}}, "right": "rrbr0", "op": "!="}},
            {"masquerade": null}])),
    ]});
    assert_eq!(got, expected);
}

#[test]
fn outbound_addr_is_snat_of_its_family_and_the_other_family_is_masqueraded() {
    let r = SandboxRules {
        sandbox: vec![
            "10.0.2.101".parse().expect("literal"),
            "fd00::101".parse().expect("literal"),
        ],
        gateway: vec![
            "10.0.2.2".parse().expect("literal"),
            "fd00::2".parse().expect("literal"),
        ],
        dns: vec![
            "10.0.2.3".parse().expect("literal"),
            "fd00::3".parse().expect("literal"),
        ],
        outbound: vec!["198.51.100.3".parse().expect("literal")],
        ..rules()
    };
    let got = json(sandbox_objects(&r, &OWNER));
    let post: Vec<&serde_json::Value> = got["nftables"]
        .as_array()
        .expect("array")
        .iter()
        .filter(|o| o["add"]["rule"]["chain"] == "postrouting")
        .map(|o| &o["add"]["rule"]["expr"][2])
        .collect();
    assert_eq!(
        post,
        [
            &serde_json::json!({"snat": {"addr": "198.51.100.3", "family": "ip"}}),
            &serde_json::json!({"masquerade": null})
        ]
    );
}

#[test]
fn dns_rules_dnat_udp_and_tcp_to_the_forwarders_own_ports() {
    let ends = Endpoint {
        udp: "127.0.0.1:40001".parse().expect("literal"),
        tcp: "127.0.0.1:40002".parse().expect("literal"),
    };
    let pairs = [(
        "10.0.2.101".parse().expect("literal"),
        "10.0.2.3".parse().expect("literal"),
        ends,
    )];
    let got = json(dns_objects("rrbr0", &pairs, &OWNER));
    let dns = |l4: &str, port: u16| {
        tagged(
            "prerouting",
            serde_json::json!([iif(), saddr(),
            {"match": {"left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.0.2.3", "op": "=="}},
            {"match": {"left": {"meta": {"key": "l4proto"}}, "right": l4, "op": "=="}},
            {"match": {"left": {"payload": {"protocol": "th", "field": "dport"}}, "right": 53, "op": "=="}},
            {"dnat": {"addr": "127.0.0.1", "family": "ip", "port": port}}]),
        )
    };
    assert_eq!(
        got,
        serde_json::json!({"nftables": [dns("udp", 40001), dns("tcp", 40002)]})
    );
}

#[test]
fn disabled_host_loopback_and_dns_refuse_gateway_and_dns() {
    let r = SandboxRules {
        host_loopback: false,
        serve_dns: false,
        ..rules()
    };
    let got = json(sandbox_objects(&r, &OWNER));
    let chains: Vec<&str> = got["nftables"]
        .as_array()
        .expect("array")
        .iter()
        .map(|o| o["add"]["rule"]["chain"].as_str().expect("chain"))
        .collect();
    assert_eq!(chains, ["input", "input", "postrouting"]);
    let first = &got["nftables"][0]["add"]["rule"]["expr"];
    assert_eq!(first[2]["match"]["right"], "10.0.2.2");
    assert_eq!(first[3]["match"]["op"], "!=");
    assert_eq!(first[4], serde_json::json!({"reject": null}));
}

#[test]
fn publish_dnats_in_prerouting_and_output_and_snats_loopback_clients() {
    let r = SandboxRules {
        publish: vec![
            ForwardSpec {
                proto: netstack::forward::Transport::Tcp,
                host: "0.0.0.0:8080".parse().expect("literal"),
                guest: "10.0.2.101:80".parse().expect("literal"),
            },
            ForwardSpec {
                proto: netstack::forward::Transport::Udp,
                host: "[2001:db8::1]:53".parse().expect("literal"),
                guest: "[fd00::101]:5353".parse().expect("literal"),
            },
        ],
        ..rules()
    };
    let got = json(publish_objects(&r, "t"));
    let rule = |chain: &str, expr: serde_json::Value| serde_json::json!({"add": {"rule": {"family": "inet", "table": "rootless_run", "chain": chain, "expr": expr, "comment": "t"}}});
    let not_bridge = serde_json::json!({"match": {"left": {"meta": {"key": "iifname"}}, "right": "rrbr0", "op": "!="}});
    let any4 = serde_json::json!([
        {"match": {"left": {"meta": {"key": "nfproto"}}, "right": "ipv4", "op": "=="}},
        {"match": {"left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local", "op": "=="}},
        {"match": {"left": {"meta": {"key": "l4proto"}}, "right": "tcp", "op": "=="}},
        {"match": {"left": {"payload": {"protocol": "th", "field": "dport"}}, "right": 8080, "op": "=="}}]);
    let dnat4 = serde_json::json!({"dnat": {"addr": "10.0.2.101", "family": "ip", "port": 80}});
    let one6 = serde_json::json!([
        {"match": {"left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": "2001:db8::1", "op": "=="}},
        {"match": {"left": {"meta": {"key": "l4proto"}}, "right": "udp", "op": "=="}},
        {"match": {"left": {"payload": {"protocol": "th", "field": "dport"}}, "right": 53, "op": "=="}}]);
    let dnat6 = serde_json::json!({"dnat": {"addr": "fd00::101", "family": "ip6", "port": 5353}});
    let cat = |head: &[serde_json::Value], mid: &serde_json::Value, tail: &[serde_json::Value]| {
        let mut v = head.to_vec();
        v.extend(mid.as_array().expect("array").iter().cloned());
        v.extend(tail.iter().cloned());
        serde_json::Value::Array(v)
    };
    let not_lo6 = serde_json::json!({"match": {"left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": "::1", "op": "!="}});
    let expected = serde_json::json!({"nftables": [
        rule("prerouting", cat(std::slice::from_ref(&not_bridge), &any4, std::slice::from_ref(&dnat4))),
        rule("output", cat(&[], &any4, &[dnat4])),
        rule("prerouting", cat(&[not_bridge], &one6, std::slice::from_ref(&dnat6))),
        rule("output", cat(&[], &one6, &[not_lo6, dnat6])),
        rule("postrouting", serde_json::json!([
            {"match": {"left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}, "op": "=="}},
            {"match": {"left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.0.2.101", "op": "=="}},
            {"match": {"left": {"meta": {"key": "oifname"}}, "right": "rrbr0", "op": "=="}},
            {"snat": {"addr": "10.0.2.2", "family": "ip"}}])),
    ]});
    assert_eq!(got, expected);
}

#[test]
fn stale_rules_are_found_by_owner_and_others_are_left() {
    let listing: Nftables<'static> = serde_json::from_value(serde_json::json!({"nftables": [
        {"metainfo": {"version": "1.0.6", "release_name": "x", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "rootless_run", "handle": 1}},
        {"rule": {"family": "inet", "table": "rootless_run", "chain": "guard", "handle": 5, "expr": [], "comment": "rootless-run guard"}},
        {"rule": {"family": "inet", "table": "rootless_run", "chain": "postrouting", "handle": 6, "expr": [], "comment": "rootless-run owner=77/1234"}},
        {"rule": {"family": "inet", "table": "rootless_run", "chain": "input", "handle": 7, "expr": [], "comment": "rootless-run owner=78/1"}}
    ]})).expect("listing parses");
    let stale = owned_rules(&listing, &|o| o.pid == 77);
    assert_eq!(stale, [("postrouting".to_owned(), 6)]);
    assert!(has_rule_in(&listing, "guard"));
}
