//! The helper's fd limit (issue 15): its soft RLIMIT_NOFILE raised to the hard one, its flow
//! table bounded by the fds that leaves (`netstack::fd_budget`). End to end as the unprivileged
//! test user, the launcher started under `prlimit`: the sandbox (`rr-probe connect-many`,
//! spread over child processes, since it shares the launcher's limit) opens more connections
//! than fit, and the test checks how the excess was refused, that the held ones still carry
//! data, that the helper kept fds for its API socket and forwards, and what it does after.
//! The echo server runs in this (root, sealed-netns) process on 127.0.0.1, reached as 10.0.2.2.

use std::fs;
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use netstack::fd_budget::flow_bound;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use rr_tests::api_client::{self, Close};
use rr_tests::child::{Running, TIMEOUT};
use rr_tests::ports;
use rr_tests::sandbox::{command, Harness};
use rr_tests::servers::{TcpEcho, GATEWAY};

/// The stack process's name (launcher/src/helper.rs, `NAME`).
const HELPER_NAME: &str = "rr-netstack";
/// The stack's default flow table bound (`StackConfig::max_flows`).
const DEFAULT_MAX_FLOWS: usize = 4096;
/// The common default fd limit.
const LOW_LIMIT: u64 = 1024;
/// A hard limit above it (test b: the helper raises its soft limit to this).
const HIGH_LIMIT: u64 = 8192;
/// Connections of test a: more than the table at `LOW_LIMIT` holds, and more than the old
/// helper's ~1,010 free fds at that limit.
const OVER_LOW: usize = 1200;
/// Connections one sandbox process opens at a hard limit of 1,024.
const PER_PROCESS_AT_LOW: usize = 900;
/// Connections of test b: more than a soft limit of 1,024 would let the helper hold.
const OVER_A_THOUSAND: usize = 1500;
/// A refusal, an API reply or a forward's refusal must come within this ("at once").
const PROMPT: Duration = Duration::from_secs(2);
/// Fds this process needs: the echo server's side of every connection, and slack.
const OWN_FDS: u64 = 16_384;
/// Guest port of the forward in test a (nothing listens on it).
const GUEST_PORT: &str = "80";

/// Raises this process's fd limit so the echo server can hold every connection (root may).
fn raise_own_fd_limit() {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let want = OWN_FDS.max(soft);
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want, want.max(hard))
            .unwrap_or_else(|e| panic!("setrlimit NOFILE {want} (the test runs as root): {e}"));
    }
}

/// `prlimit --nofile=SOFT:HARD -- ARGV...`, as the test user.
fn under_prlimit(h: &Harness, soft: u64, hard: u64, flags: &[&str], probe: &[String]) -> Running {
    let mut argv = vec![
        "/usr/bin/prlimit".to_owned(),
        format!("--nofile={soft}:{hard}"),
        "--".to_owned(),
    ];
    argv.extend(h.as_user_argv(&h.rootless_run_with(flags, probe)));
    Running::spawn(
        "prlimit rootless-run -- rr-probe connect-many",
        &mut command(&argv),
    )
}

/// The launcher's stack process: its child named `HELPER_NAME`.
fn helper_of(launcher: i32) -> i32 {
    let parent = format!("PPid:\t{launcher}");
    let is_helper = |pid: i32| {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status.lines().any(|l| l == parent)
            && status.lines().any(|l| l == format!("Name:\t{HELPER_NAME}"))
    };
    fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .find(|&pid| is_helper(pid))
        .unwrap_or_else(|| panic!("no {HELPER_NAME} child of the launcher {launcher}"))
}

/// (soft, hard) "Max open files" of /proc/PID/limits.
fn open_files_limit(pid: i32) -> (u64, u64) {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/limits: {e}"));
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no Max open files in /proc/{pid}/limits:\n{limits}"));
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match nums.as_slice() {
        [soft, hard] => (*soft, *hard),
        _ => panic!("cannot read {line:?}"),
    }
}

/// The numbers of the probe's `connected C refused R other O slowest_refusal_ms T` line.
#[derive(Debug, PartialEq, Eq)]
struct Tally {
    connected: usize,
    refused: usize,
    other: usize,
    slowest_refusal_ms: u64,
}

fn tally(launcher: &mut Running) -> Tally {
    let line = launcher.expect_line("the connections' tally", TIMEOUT, |l| {
        l.starts_with("connected ")
    });
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [connected, refused, other, slowest_refusal_ms] = nums[..] else {
        panic!("cannot read {line:?}");
    };
    Tally {
        connected: connected as usize,
        refused: refused as usize,
        other: other as usize,
        slowest_refusal_ms,
    }
}

/// Every held connection still echoes a byte.
fn assert_all_carry(launcher: &mut Running, held: usize) {
    launcher.write_stdin(b"check\n");
    let line = launcher.expect_line("the held connections' echo", TIMEOUT, |l| {
        l.starts_with("carried ")
    });
    assert_eq!(
        line,
        format!("carried {held} of {held}"),
        "every held connection must still carry data"
    );
}

/// An API request is answered within `PROMPT`: the API thread could accept it.
fn assert_api_answers(socket: &Path) {
    let start = Instant::now();
    let reply = api_client::request(socket, api_client::LIST.as_bytes(), Close::HalfClose)
        .unwrap_or_else(|e| panic!("the API socket must answer with the table full: {e}"));
    let took = start.elapsed();
    assert!(reply.contains("\"entries\""), "list_hostfwd reply: {reply}");
    assert!(took < PROMPT, "the API answered after {took:?}");
}

/// A host client of the forward is reset within `PROMPT`, not left in the accept queue.
fn assert_forward_refused_at_once(port: u16) {
    let start = Instant::now();
    let mut client = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to the forward 127.0.0.1:{port}: {e}"));
    client.set_read_timeout(Some(PROMPT)).expect("timeout");
    let outcome = client.read(&mut [0u8; 16]);
    let took = start.elapsed();
    assert!(
        matches!(&outcome, Err(e) if e.kind() == ErrorKind::ConnectionReset)
            || matches!(outcome, Ok(0)),
        "a forwarded connection with the table full must be reset at once, got {outcome:?} after \
         {took:?}"
    );
}

/// At a hard limit of 1,024 the table holds what `fd_budget` allows and the rest is refused
/// at once (RST), while the helper keeps fds for its API socket and forwards; the held
/// connections carry data, and once they close new ones are served. Before, the helper let
/// its flows take every fd: the API thread and the forward's accept met EMFILE, and their
/// clients hung.
#[test]
fn past_the_fd_bound_connections_are_refused_and_the_helper_keeps_its_own_fds() {
    raise_own_fd_limit();
    let h = Harness::new();
    let server = TcpEcho::start();
    let api_dir = api_client::user_dir(h.dir(), "api", h.user());
    let socket = api_dir.join("api.sock");
    let port = ports::free_port();
    let publish = format!("{port}:{GUEST_PORT}");
    let probe = h.probe(&[
        "connect-many",
        &format!("{GATEWAY}:{}", server.port()),
        &OVER_LOW.to_string(),
        &PER_PROCESS_AT_LOW.to_string(),
    ]);
    let flags = [
        "--api-socket",
        socket.to_str().expect("UTF-8 temp path"),
        "--publish",
        &publish,
    ];
    let mut launcher = under_prlimit(&h, LOW_LIMIT, LOW_LIMIT, &flags, &probe);
    let bound = flow_bound(DEFAULT_MAX_FLOWS, LOW_LIMIT);
    let got = tally(&mut launcher);
    assert_eq!(
        (got.connected, got.refused, got.other),
        (bound, OVER_LOW - bound, 0),
        "the table ({bound} flows at a limit of {LOW_LIMIT}) holds that many, the rest are \
         refused: {got:?}\n{}",
        launcher.output_so_far()
    );
    assert!(
        got.slowest_refusal_ms < PROMPT.as_millis() as u64,
        "refusals must come at once: {got:?}"
    );
    launcher.expect_line("holding", TIMEOUT, |l| l == "holding");

    assert_api_answers(&socket);
    assert_forward_refused_at_once(port);
    let helper = helper_of(launcher.pid());
    assert_eq!(open_files_limit(helper), (LOW_LIMIT, LOW_LIMIT));
    assert_all_carry(&mut launcher, bound);

    release_and_connect_again(launcher);
}

/// With a soft limit of 1,024 under a hard one of 8,192, the helper raises its own soft limit
/// (the sandbox's command keeps 1,024) and carries 1,500 connections at once. Before, it
/// stayed at 1,024 and refused every connection past its ~1,010th.
#[test]
fn the_helper_raises_its_soft_limit_and_carries_more_than_a_thousand_connections() {
    raise_own_fd_limit();
    let h = Harness::new();
    let server = TcpEcho::start();
    let total = OVER_A_THOUSAND.to_string();
    let probe = h.probe(&[
        "connect-many",
        &format!("{GATEWAY}:{}", server.port()),
        &total,
        &total,
    ]);
    let mut launcher = under_prlimit(&h, LOW_LIMIT, HIGH_LIMIT, &[], &probe);
    let got = tally(&mut launcher);
    launcher.expect_line("holding", TIMEOUT, |l| l == "holding");
    let helper = helper_of(launcher.pid());
    assert_eq!(
        open_files_limit(helper),
        (HIGH_LIMIT, HIGH_LIMIT),
        "the helper raises its soft limit to the hard one"
    );
    assert_eq!(
        open_files_limit(launcher.pid()),
        (LOW_LIMIT, HIGH_LIMIT),
        "the launcher (and so the sandbox) keeps the user's soft limit"
    );
    assert_eq!(
        (got.connected, got.refused, got.other),
        (OVER_A_THOUSAND, 0, 0),
        "every connection must be carried: {got:?}\n{}",
        launcher.output_so_far()
    );
    assert_all_carry(&mut launcher, OVER_A_THOUSAND);
    release_and_connect_again(launcher);
}

/// Releases every held connection; a new one must then connect, and the run end cleanly.
fn release_and_connect_again(mut launcher: Running) {
    launcher.write_stdin(b"release\n");
    launcher.expect_line("a new connection after the release", TIMEOUT, |l| {
        l.starts_with("after release connected")
    });
    launcher.close_stdin();
    let out = launcher.wait(TIMEOUT);
    assert_eq!(out.shell_status(), 0, "{out}");
}
