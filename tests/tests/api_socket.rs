//! The API socket (`--api-socket PATH`, issue 9 items 3, 7 and 8), as the unprivileged test
//! user: slirp4netns's JSON protocol byte for byte (research/anchors-features.md §1.3; api.c),
//! add/list/remove round trips whose forwards really forward (IPv6 too, which slirp4netns
//! cannot), ids from 1 never reused, every error reply, a reply without the client's
//! half-close, the socket 0600 and gone after exit, and other flows untouched by bad requests.
//! The test (root, sealed netns) is the API client and the host-side caller; `rr-probe serve`
//! in the sandbox reports each caller.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rr_tests::addrs::{GATEWAY_V4, GATEWAY_V6, HOST_V4, SANDBOX_V4, SANDBOX_V6};
use rr_tests::api_client::{
    add_body, added, call, entry, error, list_reply, remove_body, request, user_dir, Close, LIST,
    REMOVED,
};
use rr_tests::child::TIMEOUT;
use rr_tests::host_client::{connect_from, tcp_echo_from, udp_echo_from};
use rr_tests::peer_echo::PeerEcho;
use rr_tests::ports;
use rr_tests::sandbox::Harness;

/// Sandbox ports the servers listen on.
const GUEST_A: u16 = 80;
const GUEST_B: u16 = 81;
/// Bytes each TCP client sends and expects back.
const TCP_BYTES: usize = 50_000;
/// slirp4netns reads one request of at most 4096 bytes; a full buffer is "too large" (api.c).
const MAX_REQUEST: usize = 4096;

fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// A sandbox with `--api-socket` (plus `flags`) serving TCP and UDP on GUEST_A and TCP on
/// GUEST_B; returns it and the socket's path, checked to exist once the sandbox runs.
fn launch(h: &Harness, flags: &[&str]) -> (PeerEcho, PathBuf) {
    let dir = user_dir(h.dir(), "api", h.user());
    let path = dir.join("api.sock");
    let path_str = path.to_str().expect("temp paths are UTF-8").to_owned();
    let mut all = vec!["--api-socket", path_str.as_str()];
    all.extend(flags);
    let specs = [
        format!("tcp:[::]:{GUEST_A}"),
        format!("udp:[::]:{GUEST_A}"),
        format!("tcp:[::]:{GUEST_B}"),
    ];
    let spec_refs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let server = PeerEcho::launch(h, &all, &spec_refs, TIMEOUT);
    assert!(
        path.exists(),
        "the sandbox's command runs but the API socket {} does not exist yet\n{}",
        path.display(),
        server.output_so_far()
    );
    (server, path)
}

fn assert_reply(path: &Path, body: &str, want: &str, server: &PeerEcho) {
    let got = call(path, body);
    assert_eq!(
        got,
        want,
        "API request {body:?}: the reply differs from slirp4netns's\n{}",
        server.output_so_far()
    );
}

fn assert_refused(to: SocketAddr, why: &str) {
    let got = TcpStream::connect(to).map_err(|e| e.kind());
    assert_eq!(
        got.err(),
        Some(ErrorKind::ConnectionRefused),
        "{why}: {to} must refuse connections"
    );
}

#[test]
fn add_list_remove_round_trip_forwards_and_never_reuses_ids() {
    let h = Harness::new();
    let (mut server, path) = launch(&h, &[]);

    let meta = fs::metadata(&path).expect("stat the API socket");
    assert!(
        meta.file_type().is_socket(),
        "{} is not a socket",
        path.display()
    );
    assert_eq!(
        (meta.permissions().mode() & 0o777, meta.uid()),
        (0o600, h.user().uid),
        "the API socket must be mode 0600 and owned by the user who ran rootless-run"
    );

    assert_reply(&path, LIST, &list_reply(&[]), &server);

    let (p1, p2, p3) = (ports::free_port(), ports::free_port(), ports::free_port());
    let any = Ipv4Addr::UNSPECIFIED;
    let lo4 = Ipv4Addr::LOCALHOST;
    let lo6 = Ipv6Addr::LOCALHOST;
    assert_reply(
        &path,
        &add_body("tcp", "0.0.0.0", p1, "10.0.2.100", GUEST_A),
        &added(1),
        &server,
    );
    // An empty guest_addr means the sandbox's address (podman sends it so).
    assert_reply(
        &path,
        &add_body("udp", "127.0.0.1", p2, "", GUEST_A),
        &added(2),
        &server,
    );
    // IPv6, which slirp4netns refuses.
    assert_reply(
        &path,
        &add_body("tcp", "::1", p3, "fd00::100", GUEST_B),
        &added(3),
        &server,
    );
    let e1 = entry(1, "tcp", sa(any, p1), sa(SANDBOX_V4, GUEST_A));
    let e2 = entry(2, "udp", sa(lo4, p2), sa(SANDBOX_V4, GUEST_A));
    let e3 = entry(3, "tcp", sa(lo6, p3), sa(SANDBOX_V6, GUEST_B));
    assert_reply(
        &path,
        LIST,
        &list_reply(&[e1, e2.clone(), e3.clone()]),
        &server,
    );

    // Each forward forwards, and keeps the caller's address.
    let client =
        tcp_echo_from(Some(HOST_V4.into()), sa(HOST_V4, p1), TCP_BYTES).unwrap_or_else(|e| {
            panic!(
                "TCP through API forward 1 failed: {e}\n{}",
                server.output_so_far()
            )
        });
    let c = server.next_tcp(TIMEOUT);
    assert_eq!(
        (c.tcp, c.local, c.peer),
        (true, sa(SANDBOX_V4, GUEST_A), client),
        "forward 1"
    );
    udp_echo_from(lo4.into(), sa(lo4, p2), 1).unwrap_or_else(|e| {
        panic!(
            "UDP through API forward 2 failed: {e}\n{}",
            server.output_so_far()
        )
    });
    let c = server.next_udp(TIMEOUT);
    assert_eq!(
        (c.tcp, c.local.port(), c.peer.ip()),
        (false, GUEST_A, IpAddr::V4(GATEWAY_V4)),
        "forward 2"
    );
    tcp_echo_from(Some(lo6.into()), sa(lo6, p3), TCP_BYTES).unwrap_or_else(|e| {
        panic!(
            "TCP through API forward 3 failed: {e}\n{}",
            server.output_so_far()
        )
    });
    let c = server.next_tcp(TIMEOUT);
    assert_eq!(
        (c.tcp, c.local, c.peer.ip()),
        (true, sa(SANDBOX_V6, GUEST_B), IpAddr::V6(GATEWAY_V6)),
        "forward 3"
    );

    // Remove closes the port; the id is gone for good.
    assert_reply(&path, &remove_body(1), REMOVED, &server);
    assert_refused(sa(HOST_V4, p1), "after remove_hostfwd of forward 1");
    assert_reply(&path, LIST, &list_reply(&[e2.clone(), e3.clone()]), &server);
    assert_reply(
        &path,
        &remove_body(1),
        &error("bad request: remove_hostfwd: bad arguments.id"),
        &server,
    );
    assert_reply(
        &path,
        &add_body("tcp", "0.0.0.0", p1, "10.0.2.100", GUEST_A),
        &added(4),
        &server,
    );
    let e4 = entry(4, "tcp", sa(any, p1), sa(SANDBOX_V4, GUEST_A));
    assert_reply(&path, LIST, &list_reply(&[e2, e3, e4]), &server);
    tcp_echo_from(Some(HOST_V4.into()), sa(HOST_V4, p1), TCP_BYTES).unwrap_or_else(|e| {
        panic!(
            "TCP through API forward 4 failed: {e}\n{}",
            server.output_so_far()
        )
    });

    let out = server.finish(TIMEOUT);
    assert_eq!(out.shell_status(), 0, "the run failed\n{out}");
    assert!(
        !path.exists(),
        "the API socket {} is left behind after rootless-run exited",
        path.display()
    );
    for p in [p1, p2, p3] {
        assert!(
            ports::is_free(p),
            "port {p} is still bound after rootless-run exited"
        );
    }
}

#[test]
fn every_bad_request_gets_slirp4netns_error_reply_and_nothing_else_changes() {
    let h = Harness::new();
    let (held_flow_port, in_use) = (ports::free_port(), ports::free_port());
    let publish = format!("{held_flow_port}:{GUEST_B}");
    let (mut server, path) = launch(&h, &["--publish", &publish]);

    // A flow through a forward, open across every bad request below.
    let mut flow = connect_from(None, sa(Ipv4Addr::LOCALHOST, held_flow_port))
        .unwrap_or_else(|e| panic!("connect through --publish {publish}: {e}"));
    let echo = |flow: &mut TcpStream, line: &[u8]| {
        flow.write_all(line).expect("write on the held flow");
        let mut back = vec![0u8; line.len()];
        flow.read_exact(&mut back)
            .expect("read the echo on the held flow");
        assert_eq!(back, line, "the held flow's echo differs");
    };
    echo(&mut flow, b"before the bad requests\n");
    server.next_tcp(TIMEOUT);

    // The --publish forwards are listed too and hold the first ids.
    let published = call(&path, LIST).matches(r#""id":"#).count() as u32;
    assert!(
        published >= 1,
        "--publish {publish} is not among the listed forwards\n{}",
        server.output_so_far()
    );
    let good_port = ports::free_port();
    assert_reply(
        &path,
        &add_body("tcp", "127.0.0.1", good_port, "10.0.2.100", GUEST_A),
        &added(published + 1),
        &server,
    );
    let list_before = call(&path, LIST);

    // A port the test holds, and a privileged one: both fail in the bind.
    let _holder = TcpListener::bind((Ipv4Addr::LOCALHOST, in_use)).expect("hold a port");
    let add = |proto: &str, host: &str, hp: &str, guest: &str, gp: &str| {
        format!(
            r#"{{"execute":"add_hostfwd","arguments":{{"proto":{proto},"host_addr":{host},"host_port":{hp},"guest_addr":{guest},"guest_port":{gp}}}}}"#
        )
    };
    // A free port, so that only the field under test can be wrong.
    let (hp, gp) = (ports::free_port(), GUEST_A);
    let (hps, gps) = (hp.to_string(), gp.to_string());
    let oversized = format!(
        r#"{{"execute":"list_hostfwd","pad":"{}"}}"#,
        "x".repeat(MAX_REQUEST + 100)
    );
    let cases: Vec<(String, &str)> = vec![
        ("{not json".to_owned(), "bad request: cannot parse JSON"),
        (String::new(), "bad request: cannot parse JSON"),
        ("[1,2,3]".to_owned(), "bad request: json_object() failed"),
        (
            r#""add_hostfwd""#.to_owned(),
            "bad request: json_object() failed",
        ),
        ("{}".to_owned(), "bad request: no execute found"),
        (
            r#"{"execute":42}"#.to_owned(),
            "bad request: no execute found",
        ),
        (
            r#"{"execute":"reboot"}"#.to_owned(),
            "bad request: unknown execute",
        ),
        (oversized, "bad request: too large message"),
        // slirp4netns dereferences NULL here (no proto); we must answer.
        (
            r#"{"execute":"add_hostfwd"}"#.to_owned(),
            "bad request: add_hostfwd: bad arguments.proto",
        ),
        (
            add(r#""sctp""#, r#""0.0.0.0""#, &hps, r#""""#, &gps),
            "bad request: add_hostfwd: bad arguments.proto",
        ),
        (
            add("6", r#""0.0.0.0""#, &hps, r#""""#, &gps),
            "bad request: add_hostfwd: bad arguments.proto",
        ),
        (
            add(r#""tcp""#, r#""999.0.0.1""#, &hps, r#""""#, &gps),
            "bad request: add_hostfwd: bad arguments.host_addr",
        ),
        (
            add(r#""tcp""#, r#""localhost""#, &hps, r#""""#, &gps),
            "bad request: add_hostfwd: bad arguments.host_addr",
        ),
        (
            add(r#""tcp""#, r#""0.0.0.0""#, "0", r#""""#, &gps),
            "bad request: add_hostfwd: bad arguments.host_port",
        ),
        (
            add(
                r#""tcp""#,
                r#""0.0.0.0""#,
                &format!(r#""{hp}""#),
                r#""""#,
                &gps,
            ),
            "bad request: add_hostfwd: bad arguments.host_port",
        ),
        // Out of range: slirp4netns would truncate these; an error is the only sane reply.
        (
            add(r#""tcp""#, r#""0.0.0.0""#, "70000", r#""""#, &gps),
            "bad request: add_hostfwd: bad arguments.host_port",
        ),
        (
            add(r#""tcp""#, r#""0.0.0.0""#, "-1", r#""""#, &gps),
            "bad request: add_hostfwd: bad arguments.host_port",
        ),
        (
            add(r#""tcp""#, r#""0.0.0.0""#, &hps, r#""10.0.2.300""#, &gps),
            "bad request: add_hostfwd: bad arguments.guest_addr",
        ),
        (
            add(r#""tcp""#, r#""0.0.0.0""#, &hps, r#""""#, "0"),
            "bad request: add_hostfwd: bad arguments.guest_port",
        ),
        (
            add(r#""tcp""#, r#""0.0.0.0""#, &hps, r#""""#, r#""80""#),
            "bad request: add_hostfwd: bad arguments.guest_port",
        ),
        (
            add(r#""tcp""#, r#""0.0.0.0""#, &hps, r#""""#, "65536"),
            "bad request: add_hostfwd: bad arguments.guest_port",
        ),
        (
            add(
                r#""tcp""#,
                r#""127.0.0.1""#,
                &in_use.to_string(),
                r#""""#,
                &gps,
            ),
            "bad request: add_hostfwd: slirp_add_hostfwd failed",
        ),
        (
            add(r#""tcp""#, r#""127.0.0.1""#, "80", r#""""#, &gps),
            "bad request: add_hostfwd: slirp_add_hostfwd failed",
        ),
        (
            remove_body(999),
            "bad request: remove_hostfwd: bad arguments.id",
        ),
        (
            r#"{"execute":"remove_hostfwd","arguments":{"id":"1"}}"#.to_owned(),
            "bad request: remove_hostfwd: bad arguments.id",
        ),
        (
            r#"{"execute":"remove_hostfwd"}"#.to_owned(),
            "bad request: remove_hostfwd: bad arguments.id",
        ),
    ];
    let mut wrong = Vec::new();
    for (body, desc) in &cases {
        let got = request(&path, body.as_bytes(), Close::HalfClose)
            .unwrap_or_else(|e| panic!("API request {body:?}: {e}\n{}", server.output_so_far()));
        if got != error(desc) {
            wrong.push(format!(
                "{body:.120?}\n    want {}\n    got  {got}",
                error(desc)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} bad requests got another reply than slirp4netns's:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );

    // Nothing changed: same forwards, the failed adds took no id, the held flow still echoes,
    // the port the test holds is still the test's, and the socket answers without a half-close
    // and with a trailing newline (podman and rootlesskit send one).
    assert_eq!(
        call(&path, LIST),
        list_before,
        "a bad request changed the forwards"
    );
    let no_half_close = request(&path, format!("{LIST}\n").as_bytes(), Close::KeepOpen)
        .unwrap_or_else(|e| panic!("list without a half-close: {e}"));
    assert_eq!(no_half_close, list_before, "list without a half-close");
    assert_reply(
        &path,
        &add_body("udp", "127.0.0.1", good_port, "10.0.2.100", GUEST_A),
        &added(published + 2),
        &server,
    );
    echo(&mut flow, b"after the bad requests\n");
    drop(flow);
    tcp_echo_from(None, sa(Ipv4Addr::LOCALHOST, good_port), TCP_BYTES).unwrap_or_else(|e| {
        panic!(
            "forward 1 stopped forwarding: {e}\n{}",
            server.output_so_far()
        )
    });
    let out = server.finish(TIMEOUT);
    assert_eq!(out.shell_status(), 0, "the run failed\n{out}");
    assert!(
        !out.stderr.contains("panicked"),
        "the launcher panicked\n{out}"
    );
}
