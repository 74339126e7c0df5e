//! Tests of the API socket server: real UNIX sockets in a temporary directory, a recording
//! fake `ForwardControl`, and clients that behave like podman, rootlesskit and netcat.
//! No sleeps: every wait is a read with a timeout, and a timeout fails the test.

use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{serve, serve_with, ApiError, ApiSocket, Options};
use crate::config::Addressing;
use crate::forward::{ForwardControl, ForwardEntry, ForwardError, ForwardSpec, Transport};

/// How long a test client waits for a reply before the test fails.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// A server timeout no test should ever reach (a test that waits for it fails first).
const LONG: Duration = Duration::from_secs(60);
/// The fake refuses to forward this host port, as if it were in use.
const BUSY_PORT: u16 = 2222;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Add(ForwardSpec),
    Remove(u32),
    List,
}

#[derive(Debug, Default)]
struct FakeState {
    calls: Vec<Call>,
    forwards: Vec<ForwardEntry>,
    last_id: u32,
    stack_gone: bool,
}

/// Records every call, hands out ids last_id + 1, + 2, ..., refuses `BUSY_PORT`, and fails
/// everything with `StackGone` once `stack_gone` is set.
#[derive(Debug, Clone, Default)]
struct FakeControl(Arc<Mutex<FakeState>>);

impl FakeControl {
    fn state(&self) -> MutexGuard<'_, FakeState> {
        self.0
            .lock()
            .expect("a test thread panicked while holding the fake")
    }
}

/// No policy: the trait's default answer.
impl crate::policy::EgressControl for FakeControl {}

impl ForwardControl for FakeControl {
    fn add(&self, spec: ForwardSpec) -> Result<u32, ForwardError> {
        let mut s = self.state();
        s.calls.push(Call::Add(spec));
        if s.stack_gone {
            return Err(ForwardError::StackGone);
        }
        if spec.host.port() == BUSY_PORT {
            return Err(ForwardError::Bind {
                addr: spec.host,
                source: io::ErrorKind::AddrInUse.into(),
            });
        }
        s.last_id += 1;
        let id = s.last_id;
        s.forwards.push(ForwardEntry { id, spec });
        Ok(id)
    }

    fn remove(&self, id: u32) -> Result<(), ForwardError> {
        let mut s = self.state();
        s.calls.push(Call::Remove(id));
        if s.stack_gone {
            return Err(ForwardError::StackGone);
        }
        let before = s.forwards.len();
        s.forwards.retain(|e| e.id != id);
        if s.forwards.len() == before {
            return Err(ForwardError::UnknownId(id));
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<ForwardEntry>, ForwardError> {
        let mut s = self.state();
        s.calls.push(Call::List);
        if s.stack_gone {
            return Err(ForwardError::StackGone);
        }
        Ok(s.forwards.clone())
    }
}

struct Fixture {
    // Declared first so the guard is dropped before the directory goes.
    api: ApiSocket,
    fake: FakeControl,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn path(&self) -> &Path {
        self.api.path()
    }
}

fn start(timeout: Duration) -> Fixture {
    start_with(Options {
        timeout,
        ..Options::default()
    })
}

fn start_with(options: Options) -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fake = FakeControl::default();
    let path = dir.path().join("api.sock");
    let api = serve_with(&path, fake.clone(), Addressing::default(), options)
        .expect("the API socket starts");
    Fixture {
        api,
        fake,
        _dir: dir,
    }
}

fn connect(path: &Path) -> UnixStream {
    let conn = UnixStream::connect(path).expect("connect to the API socket");
    conn.set_read_timeout(Some(CLIENT_TIMEOUT))
        .expect("set a read timeout");
    conn
}

/// Like rootlesskit: send, half-close, read to EOF.
fn request(path: &Path, bytes: &[u8]) -> String {
    let mut conn = connect(path);
    conn.write_all(bytes).expect("send the request");
    conn.shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    read_reply(&mut conn)
}

/// Reads to EOF (the server closes after replying); fails on the client timeout.
fn read_reply(conn: &mut UnixStream) -> String {
    let mut reply = String::new();
    conn.read_to_string(&mut reply)
        .expect("a reply, then EOF, before the client timeout");
    reply
}

fn error_reply(desc: &str) -> String {
    format!(r#"{{"error":{{"desc":"{desc}"}}}}"#)
}

const ADD_PODMAN: &[u8] = b"{\"execute\":\"add_hostfwd\",\"arguments\":{\"proto\":\"tcp\",\"host_addr\":\"0.0.0.0\",\"host_port\":18080,\"guest_addr\":\"\",\"guest_port\":80}}\n";
const LIST: &[u8] = b"{\"execute\":\"list_hostfwd\"}\n";

#[test]
fn add_list_remove_round_trip_through_the_control() {
    let fx = start(LONG);
    assert_eq!(request(fx.path(), ADD_PODMAN), r#"{"return":{"id":1}}"#);
    let add_v6 = br#"{"execute":"add_hostfwd","arguments":{"proto":"udp","host_addr":"::1","host_port":5353,"guest_port":53}}"#;
    assert_eq!(request(fx.path(), add_v6), r#"{"return":{"id":2}}"#);
    assert_eq!(
        request(fx.path(), LIST),
        concat!(
            r#"{"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":18080,"guest_addr":"10.0.2.100","guest_port":80},"#,
            r#"{"id":2,"proto":"udp","host_addr":"::1","host_port":5353,"guest_addr":"fd00::100","guest_port":53}]}"#
        )
    );
    let remove = b"{\"execute\":\"remove_hostfwd\",\"arguments\":{\"id\":1}}\n";
    assert_eq!(request(fx.path(), remove), r#"{"return":{}}"#);
    assert_eq!(
        request(fx.path(), remove),
        error_reply("bad request: remove_hostfwd: bad arguments.id")
    );
    assert_eq!(
        request(fx.path(), LIST),
        r#"{"entries":[{"id":2,"proto":"udp","host_addr":"::1","host_port":5353,"guest_addr":"fd00::100","guest_port":53}]}"#
    );
    let spec = |proto, host: &str, guest: &str| ForwardSpec {
        proto,
        host: host.parse().unwrap(),
        guest: guest.parse().unwrap(),
    };
    assert_eq!(
        fx.fake.state().calls,
        vec![
            Call::Add(spec(Transport::Tcp, "0.0.0.0:18080", "10.0.2.100:80")),
            Call::Add(spec(Transport::Udp, "[::1]:5353", "[fd00::100]:53")),
            Call::List,
            Call::Remove(1),
            Call::Remove(1),
            Call::List,
        ]
    );
}

#[test]
fn ids_are_the_controls_not_the_servers() {
    let fx = start(LONG);
    fx.fake.state().last_id = 40;
    assert_eq!(request(fx.path(), ADD_PODMAN), r#"{"return":{"id":41}}"#);
}

#[test]
fn podman_single_read_gets_the_whole_reply() {
    let fx = start(LONG);
    let mut conn = connect(fx.path());
    conn.write_all(ADD_PODMAN).unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut buf = [0u8; 2048];
    let n = conn
        .read(&mut buf)
        .expect("a reply before the client timeout");
    assert_eq!(&buf[..n], br#"{"return":{"id":1}}"#);
}

#[test]
fn failed_add_is_reported_and_serving_goes_on() {
    let fx = start(LONG);
    let busy = br#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":2222,"guest_port":22}}"#;
    assert_eq!(
        request(fx.path(), busy),
        error_reply("bad request: add_hostfwd: slirp_add_hostfwd failed")
    );
    assert_eq!(request(fx.path(), LIST), r#"{"entries":[]}"#);
}

#[test]
fn a_stopped_stack_fails_every_command() {
    let fx = start(LONG);
    assert_eq!(request(fx.path(), ADD_PODMAN), r#"{"return":{"id":1}}"#);
    fx.fake.state().stack_gone = true;
    assert_eq!(
        request(fx.path(), ADD_PODMAN),
        error_reply("bad request: add_hostfwd: slirp_add_hostfwd failed")
    );
    assert_eq!(
        request(
            fx.path(),
            br#"{"execute":"remove_hostfwd","arguments":{"id":1}}"#
        ),
        error_reply("bad request: remove_hostfwd: slirp_remove_hostfwd failed")
    );
    assert_eq!(
        request(fx.path(), LIST),
        error_reply("bad request: list_hostfwd: failed")
    );
}

#[test]
fn bad_requests_get_slirp4netns_errors_and_serving_goes_on() {
    let fx = start(LONG);
    let add = |args: &str| format!(r#"{{"execute":"add_hostfwd","arguments":{{{args}}}}}"#);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "bad request: cannot parse JSON"),
        (b"".to_vec(), "bad request: cannot parse JSON"),
        (b"{\"execute\":".to_vec(), "bad request: cannot parse JSON"),
        (
            b"[\"execute\"]".to_vec(),
            "bad request: json_object() failed",
        ),
        (b"{}".to_vec(), "bad request: no execute found"),
        (
            br#"{"execute":"quit"}"#.to_vec(),
            "bad request: unknown execute",
        ),
        (
            add(r#""host_port":1,"guest_port":2"#).into_bytes(),
            "bad request: add_hostfwd: bad arguments.proto",
        ),
        (
            add(r#""proto":"tcp","host_addr":"::1%lo","host_port":1,"guest_port":2"#).into_bytes(),
            "bad request: add_hostfwd: bad arguments.host_addr",
        ),
        (
            add(r#""proto":"tcp","host_port":"80","guest_port":2"#).into_bytes(),
            "bad request: add_hostfwd: bad arguments.host_port",
        ),
        (
            add(r#""proto":"tcp","host_port":1,"guest_addr":"10.0.2.2","guest_port":2"#)
                .into_bytes(),
            "bad request: add_hostfwd: bad arguments.guest_addr",
        ),
        (
            add(r#""proto":"tcp","host_port":1,"guest_port":0"#).into_bytes(),
            "bad request: add_hostfwd: bad arguments.guest_port",
        ),
        (
            br#"{"execute":"remove_hostfwd","arguments":{"id":-3}}"#.to_vec(),
            "bad request: remove_hostfwd: bad arguments.id",
        ),
    ];
    for (bytes, desc) in cases {
        assert_eq!(
            request(fx.path(), &bytes),
            error_reply(desc),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
    }
    assert!(
        fx.fake.state().calls.is_empty(),
        "no bad request reaches the control"
    );
    assert_eq!(request(fx.path(), LIST), r#"{"entries":[]}"#);
}

#[test]
fn oversized_request_is_refused() {
    let fx = start(LONG);
    // Valid JSON only at its end, so the server cannot see a complete value early.
    let mut big = vec![b' '; 5000];
    big.extend_from_slice(LIST);
    assert_eq!(
        request(fx.path(), &big),
        error_reply("bad request: too large message")
    );
    assert!(fx.fake.state().calls.is_empty());
    assert_eq!(request(fx.path(), LIST), r#"{"entries":[]}"#);
}

#[test]
fn request_without_half_close_gets_its_reply() {
    // The server's timeout is far beyond the client's: only seeing the JSON end answers in time.
    let fx = start(LONG);
    let mut conn = connect(fx.path());
    conn.write_all(br#"{"execute":"list_hostfwd"}"#).unwrap();
    assert_eq!(read_reply(&mut conn), r#"{"entries":[]}"#);
}

#[test]
fn request_in_pieces_is_read_whole() {
    let fx = start(LONG);
    let mut conn = connect(fx.path());
    let (head, tail) = ADD_PODMAN.split_at(40);
    conn.write_all(head).unwrap();
    conn.flush().unwrap();
    conn.write_all(tail).unwrap();
    assert_eq!(read_reply(&mut conn), r#"{"return":{"id":1}}"#);
}

#[test]
fn silent_client_delays_the_next_by_at_most_the_timeout() {
    let fx = start(Duration::from_millis(200));
    let started = Instant::now();
    let mut silent = connect(fx.path());
    let mut partial = connect(fx.path());
    partial.write_all(br#"{"execute":"#).unwrap();
    let mut next = connect(fx.path());
    next.write_all(LIST).unwrap();
    next.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_reply(&mut next), r#"{"entries":[]}"#);
    // Two timeouts and a little; far below CLIENT_TIMEOUT, which is what a hung server hits.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        read_reply(&mut silent),
        error_reply("bad request: cannot parse JSON")
    );
    assert_eq!(
        read_reply(&mut partial),
        error_reply("bad request: cannot parse JSON")
    );
}

#[test]
fn socket_is_mode_0600() {
    let fx = start(LONG);
    let meta = std::fs::symlink_metadata(fx.path()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
}

#[test]
fn dropping_the_guard_stops_promptly_and_removes_the_file() {
    let (accepted_tx, accepted) = std::sync::mpsc::channel();
    let fx = start_with(Options {
        timeout: LONG,
        accepted: Some(accepted_tx),
    });
    let path = fx.path().to_owned();
    // A client in the middle of a request, and one queued behind it, must not hold the drop
    // up for LONG.
    let mut silent = connect(&path);
    silent.write_all(b"{").unwrap();
    let _queued = connect(&path);
    accepted
        .recv_timeout(CLIENT_TIMEOUT)
        .expect("the server accepts the first client");
    let started = Instant::now();
    drop(fx.api);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!path.exists());
    let err = UnixStream::connect(&path).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}

#[test]
fn dropping_the_guard_leaves_a_replaced_file_alone() {
    let fx = start(LONG);
    let path = fx.path().to_owned();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"someone else's").unwrap();
    drop(fx.api);
    assert_eq!(std::fs::read(&path).unwrap(), b"someone else's");
}

#[test]
fn stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "a closed listener leaves its file behind");
    let fake = FakeControl::default();
    let _api = serve(&path, fake, Addressing::default()).expect("the stale socket is replaced");
    assert_eq!(request(&path, LIST), r#"{"entries":[]}"#);
}

#[test]
fn a_file_that_is_not_a_socket_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    std::fs::write(&path, b"data").unwrap();
    let err = serve(&path, FakeControl::default(), Addressing::default()).unwrap_err();
    assert!(
        matches!(err, ApiError::NotSocket { path: ref p } if p == &path),
        "{err:?}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"data");
}

#[test]
fn path_must_fit_in_sun_path() {
    let dir = tempfile::tempdir().unwrap();
    let with_len = |len: usize| -> PathBuf {
        let base = dir.path().as_os_str().len() + 1;
        dir.path().join("s".repeat(len - base))
    };
    let longest = with_len(107);
    let api = serve(&longest, FakeControl::default(), Addressing::default())
        .expect("107 bytes leave room for the NUL");
    assert_eq!(request(&longest, LIST), r#"{"entries":[]}"#);
    drop(api);
    let too_long = with_len(108);
    let err = serve(&too_long, FakeControl::default(), Addressing::default()).unwrap_err();
    assert!(
        matches!(err, ApiError::PathTooLong { len: 108, .. }),
        "{err:?}"
    );
    assert!(!too_long.exists());
}

#[test]
fn bind_failure_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("api.sock");
    let err = serve(&path, FakeControl::default(), Addressing::default()).unwrap_err();
    match err {
        ApiError::Bind { path: p, source } => {
            assert_eq!(p, path);
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("expected Bind, got {other:?}"),
    }
}
