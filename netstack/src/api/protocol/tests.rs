//! Tests of the request parser and reply encoder: real requests as rootlesskit and podman
//! send them, every slirp4netns error text, and byte-exact replies.

use super::*;

fn parse_default(text: &str) -> Result<Request, RequestError> {
    parse(text.as_bytes(), &Addressing::default())
}

fn add(args: &str) -> Result<Request, RequestError> {
    parse_default(&format!(
        r#"{{"execute":"add_hostfwd","arguments":{{{args}}}}}"#
    ))
}

fn spec(proto: Transport, host: &str, guest: &str) -> Request {
    Request::AddHostfwd(ForwardSpec {
        proto,
        host: host.parse().unwrap(),
        guest: guest.parse().unwrap(),
    })
}

fn bad(arg: AddArgument) -> Result<Request, RequestError> {
    Err(RequestError::BadAddArgument(arg))
}

#[test]
fn rootlesskit_add_request_parses_to_its_spec() {
    let req = br#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}}
"#;
    assert_eq!(
        parse(req, &Addressing::default()),
        Ok(spec(Transport::Tcp, "0.0.0.0:8080", "10.0.2.100:80"))
    );
}

#[test]
fn podman_add_request_gets_the_default_guest_address() {
    let req = br#"{"execute":"add_hostfwd","arguments":{"proto":"udp","host_addr":"0.0.0.0","host_port":5353,"guest_addr":"","guest_port":53}}
"#;
    assert_eq!(
        parse(req, &Addressing::default()),
        Ok(spec(Transport::Udp, "0.0.0.0:5353", "10.0.2.100:53"))
    );
}

#[test]
fn missing_addresses_default_to_any_and_the_sandbox() {
    assert_eq!(
        add(r#""proto":"tcp","host_port":1,"guest_port":2"#),
        Ok(spec(Transport::Tcp, "0.0.0.0:1", "10.0.2.100:2"))
    );
    assert_eq!(
        add(r#""proto":"tcp","host_addr":null,"host_port":1,"guest_addr":null,"guest_port":2"#),
        Ok(spec(Transport::Tcp, "0.0.0.0:1", "10.0.2.100:2"))
    );
}

#[test]
fn default_guest_address_follows_cidr() {
    let addr = Addressing::default().with_cidr_v4("10.0.3.0/24").unwrap();
    let req =
        br#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":1,"guest_port":2}}"#;
    assert_eq!(
        parse(req, &addr),
        Ok(spec(Transport::Tcp, "0.0.0.0:1", "10.0.3.100:2"))
    );
}

#[test]
fn ipv6_host_addr_forwards_to_the_sandbox_v6_address() {
    assert_eq!(
        add(r#""proto":"tcp","host_addr":"::1","host_port":8080,"guest_port":80"#),
        Ok(spec(Transport::Tcp, "[::1]:8080", "[fd00::100]:80"))
    );
    assert_eq!(
        add(
            r#""proto":"udp","host_addr":"[::]","host_port":8080,"guest_addr":"fd00::100","guest_port":80"#
        ),
        Ok(spec(Transport::Udp, "[::]:8080", "[fd00::100]:80"))
    );
    assert_eq!(
        add(
            r#""proto":"tcp","host_addr":"::","host_port":1,"guest_addr":"[fd00::100]","guest_port":2"#
        ),
        Ok(spec(Transport::Tcp, "[::]:1", "[fd00::100]:2"))
    );
}

#[test]
fn proto_must_be_tcp_or_udp() {
    let rest = r#""host_port":1,"guest_port":2"#;
    assert_eq!(add(rest), bad(AddArgument::Proto));
    assert_eq!(
        add(&format!(r#""proto":"sctp",{rest}"#)),
        bad(AddArgument::Proto)
    );
    assert_eq!(
        add(&format!(r#""proto":"TCP",{rest}"#)),
        bad(AddArgument::Proto)
    );
    assert_eq!(
        add(&format!(r#""proto":6,{rest}"#)),
        bad(AddArgument::Proto)
    );
    assert_eq!(
        parse_default(r#"{"execute":"add_hostfwd"}"#),
        bad(AddArgument::Proto)
    );
    assert_eq!(
        parse_default(r#"{"execute":"add_hostfwd","arguments":[1]}"#),
        bad(AddArgument::Proto)
    );
}

#[test]
fn bad_host_addr_is_refused() {
    for host in [
        r#""localhost""#,
        r#""10.0.0.256""#,
        r#""[10.0.0.1]""#,
        "17",
        r#""fe80::1%eth0""#,
    ] {
        assert_eq!(
            add(&format!(
                r#""proto":"tcp","host_addr":{host},"host_port":1,"guest_port":2"#
            )),
            bad(AddArgument::HostAddr),
            "{host}"
        );
    }
}

#[test]
fn ports_must_be_integers_in_range() {
    for p in ["0", "-1", "65536", "80.0", "8e1", r#""80""#, "true", "{}"] {
        assert_eq!(
            add(&format!(r#""proto":"tcp","host_port":{p},"guest_port":2"#)),
            bad(AddArgument::HostPort),
            "host_port {p}"
        );
        assert_eq!(
            add(&format!(r#""proto":"tcp","host_port":1,"guest_port":{p}"#)),
            bad(AddArgument::GuestPort),
            "guest_port {p}"
        );
    }
    assert_eq!(
        add(r#""proto":"tcp","guest_port":2"#),
        bad(AddArgument::HostPort)
    );
    assert_eq!(
        add(r#""proto":"tcp","host_port":1"#),
        bad(AddArgument::GuestPort)
    );
    assert_eq!(
        add(r#""proto":"tcp","host_port":65535,"guest_port":1"#),
        Ok(spec(Transport::Tcp, "0.0.0.0:65535", "10.0.2.100:1"))
    );
}

#[test]
fn explicit_guest_addr_must_be_the_sandbox_of_the_same_family() {
    for (host, guest) in [
        ("0.0.0.0", "10.0.2.99"),
        ("0.0.0.0", "fd00::100"),
        ("::", "10.0.2.100"),
        ("0.0.0.0", "sandbox"),
    ] {
        assert_eq!(
            add(&format!(
                r#""proto":"tcp","host_addr":"{host}","host_port":1,"guest_addr":"{guest}","guest_port":2"#
            )),
            bad(AddArgument::GuestAddr),
            "{host} -> {guest}"
        );
    }
}

#[test]
fn argument_errors_come_in_slirp4netns_order() {
    // Everything wrong: proto is named first.
    assert_eq!(
        add(r#""host_addr":"x","guest_addr":"y""#),
        bad(AddArgument::Proto)
    );
    assert_eq!(
        add(r#""proto":"tcp","host_addr":"x","guest_addr":"y""#),
        bad(AddArgument::HostAddr)
    );
    // host_port before guest_addr, as api.c checks them.
    assert_eq!(
        add(r#""proto":"tcp","guest_addr":"y""#),
        bad(AddArgument::HostPort)
    );
    assert_eq!(
        add(r#""proto":"tcp","host_port":1,"guest_addr":"y""#),
        bad(AddArgument::GuestAddr)
    );
}

#[test]
fn list_and_remove_parse() {
    assert_eq!(
        parse_default(r#"{"execute":"list_hostfwd"}"#),
        Ok(Request::ListHostfwd)
    );
    assert_eq!(
        parse_default("{\"execute\": \"remove_hostfwd\", \"arguments\": {\"id\": 42}}\n"),
        Ok(Request::RemoveHostfwd(42))
    );
}

#[test]
fn remove_id_must_be_a_positive_integer() {
    for id in ["0", "-1", "1.5", r#""1""#, "4294967296", "null"] {
        assert_eq!(
            parse_default(&format!(
                r#"{{"execute":"remove_hostfwd","arguments":{{"id":{id}}}}}"#
            )),
            Err(RequestError::BadRemoveId),
            "{id}"
        );
    }
    assert_eq!(
        parse_default(r#"{"execute":"remove_hostfwd"}"#),
        Err(RequestError::BadRemoveId)
    );
}

#[test]
fn malformed_requests_get_slirp4netns_errors() {
    let cases: [(&[u8], &str); 9] = [
        (b"", "bad request: cannot parse JSON"),
        (b"{\"execute\":", "bad request: cannot parse JSON"),
        (b"{} {}", "bad request: cannot parse JSON"),
        (b"{\"execute\":\"\xff\"}", "bad request: cannot parse JSON"),
        (b"[1,2]", "bad request: json_object() failed"),
        (b"\"list_hostfwd\"", "bad request: json_object() failed"),
        (b"{\"arguments\":{}}", "bad request: no execute found"),
        (b"{\"execute\":7}", "bad request: no execute found"),
        (
            b"{\"execute\":\"add_hostfwds\"}",
            "bad request: unknown execute",
        ),
    ];
    for (bytes, desc) in cases {
        let err = parse(bytes, &Addressing::default()).unwrap_err();
        assert_eq!(err.desc(), desc, "{}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn requests_of_4096_bytes_are_too_large() {
    let mut req = br#"{"execute":"list_hostfwd"}"#.to_vec();
    req.resize(MAX_REQUEST - 1, b' ');
    assert_eq!(
        parse(&req, &Addressing::default()),
        Ok(Request::ListHostfwd)
    );
    req.push(b' ');
    let err = parse(&req, &Addressing::default()).unwrap_err();
    assert_eq!(err.desc(), "bad request: too large message");
}

#[test]
fn every_error_has_slirp4netns_text() {
    let all = [
        (
            RequestError::BadAddArgument(AddArgument::Proto),
            "bad request: add_hostfwd: bad arguments.proto",
        ),
        (
            RequestError::BadAddArgument(AddArgument::HostAddr),
            "bad request: add_hostfwd: bad arguments.host_addr",
        ),
        (
            RequestError::BadAddArgument(AddArgument::HostPort),
            "bad request: add_hostfwd: bad arguments.host_port",
        ),
        (
            RequestError::BadAddArgument(AddArgument::GuestAddr),
            "bad request: add_hostfwd: bad arguments.guest_addr",
        ),
        (
            RequestError::BadAddArgument(AddArgument::GuestPort),
            "bad request: add_hostfwd: bad arguments.guest_port",
        ),
        (
            RequestError::AddFailed,
            "bad request: add_hostfwd: slirp_add_hostfwd failed",
        ),
        (
            RequestError::BadRemoveId,
            "bad request: remove_hostfwd: bad arguments.id",
        ),
        (
            RequestError::RemoveFailed,
            "bad request: remove_hostfwd: slirp_remove_hostfwd failed",
        ),
    ];
    for (err, desc) in all {
        assert_eq!(err.desc(), desc);
        let reply = Reply::Failed(err).to_json();
        assert_eq!(
            reply,
            format!(r#"{{"error":{{"desc":"{desc}"}}}}"#).into_bytes()
        );
    }
}

#[test]
fn replies_are_byte_exact() {
    assert_eq!(Reply::Added(7).to_json(), br#"{"return":{"id":7}}"#);
    assert_eq!(Reply::Removed.to_json(), br#"{"return":{}}"#);
    assert_eq!(Reply::Entries(vec![]).to_json(), br#"{"entries":[]}"#);
    let entries = vec![
        ForwardEntry {
            id: 1,
            spec: ForwardSpec {
                proto: Transport::Tcp,
                host: "0.0.0.0:18080".parse().unwrap(),
                guest: "10.0.2.100:80".parse().unwrap(),
            },
        },
        ForwardEntry {
            id: 3,
            spec: ForwardSpec {
                proto: Transport::Udp,
                host: "[::1]:53".parse().unwrap(),
                guest: "[fd00::100]:5353".parse().unwrap(),
            },
        },
    ];
    assert_eq!(
        String::from_utf8(Reply::Entries(entries).to_json()).unwrap(),
        concat!(
            r#"{"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":18080,"guest_addr":"10.0.2.100","guest_port":80},"#,
            r#"{"id":3,"proto":"udp","host_addr":"::1","host_port":53,"guest_addr":"fd00::100","guest_port":5353}]}"#
        )
    );
    assert_eq!(
        Reply::Failed(RequestError::Json).to_json(),
        br#"{"error":{"desc":"bad request: cannot parse JSON"}}"#
    );
}

#[test]
fn completeness_waits_for_a_whole_value_or_a_syntax_error() {
    assert!(!is_complete(b""));
    assert!(!is_complete(b" \n"));
    assert!(!is_complete(br#"{"execute":"list_hos"#));
    assert!(!is_complete(br#"{"execute":"list_hostfwd""#));
    assert!(is_complete(br#"{"execute":"list_hostfwd"}"#));
    assert!(is_complete(b"{\"execute\":\"list_hostfwd\"}\n"));
    assert!(is_complete(b"}"));
    assert!(is_complete(b"{\"execute\" 1"));
}

#[test]
fn egress_commands_parse_and_each_bad_argument_has_its_text() {
    use crate::policy::{Action, EgressError, RuleError};
    assert_eq!(
        parse_default(r#"{"execute":"list_egress"}"#),
        Ok(Request::ListEgress)
    );
    let req = parse_default(
        r#"{"execute":"add_egress_rule","arguments":{"action":"deny","rule":"198.51.100.0/24:80","index":0}}"#,
    );
    assert_eq!(
        req,
        Ok(Request::AddEgressRule {
            rule: Rule::parse(Action::Deny, "198.51.100.0/24:80").unwrap(),
            index: Some(0)
        })
    );
    assert_eq!(
        parse_default(r#"{"execute":"remove_egress_rule","arguments":{"id":3}}"#),
        Ok(Request::RemoveEgressRule(3))
    );
    let cases = [
        (r#"{"execute":"add_egress_rule","arguments":{"action":"permit","rule":"x.org"}}"#,
         "bad request: add_egress_rule: bad arguments.action"),
        (r#"{"execute":"add_egress_rule","arguments":{"action":"allow","rule":"x.org:http"}}"#,
         "bad request: add_egress_rule: bad arguments.rule: port must be a number from 1 to 65535"),
        (r#"{"execute":"add_egress_rule","arguments":{"action":"allow"}}"#,
         "bad request: add_egress_rule: bad arguments.rule: empty rule"),
        (r#"{"execute":"add_egress_rule","arguments":{"action":"allow","rule":"x.org","index":-1}}"#,
         "bad request: add_egress_rule: bad arguments.index"),
        (r#"{"execute":"remove_egress_rule","arguments":{"id":0}}"#,
         "bad request: remove_egress_rule: bad arguments.id"),
    ];
    for (text, desc) in cases {
        assert_eq!(parse_default(text).unwrap_err().desc(), desc, "{text}");
    }
    let e = RequestError::EgressFailed("list_egress", EgressError::NoPolicy);
    assert!(e
        .desc()
        .starts_with("bad request: list_egress: no egress policy in force"));
    let e = RequestError::EgressFailed("remove_egress_rule", EgressError::UnknownId(9));
    assert_eq!(
        e.desc(),
        "bad request: remove_egress_rule: bad arguments.id"
    );
    let _ = RuleError::Empty;
}

#[test]
fn egress_replies_are_compact_json() {
    use crate::policy::{Action, EgressReply, PolicyStats, RuleEntry};
    let listing = EgressReply::Listing {
        default: Action::Deny,
        rules: vec![RuleEntry {
            id: 1,
            rule: Rule::parse(Action::Allow, "pypi.org:443").unwrap(),
        }],
        stats: PolicyStats {
            allowed: 3,
            denied: 1,
            ..PolicyStats::default()
        },
        closed: 0,
    };
    assert_eq!(
        String::from_utf8(Reply::Egress(listing).to_json()).unwrap(),
        r#"{"return":{"egress":"deny","rules":[{"id":1,"action":"allow","rule":"pypi.org:443"}],"allowed":3,"denied":1,"queries_refused":0,"closed":0}}"#
    );
    assert_eq!(
        Reply::Egress(EgressReply::Added { id: 2, closed: 1 }).to_json(),
        br#"{"return":{"id":2,"closed":1}}"#
    );
    let failed = Reply::Failed(RequestError::BadEgressArgument(EgressArgument::Index));
    assert_eq!(
        failed.to_json(),
        br#"{"error":{"desc":"bad request: add_egress_rule: bad arguments.index"}}"#
    );
}
