//! The confined stack process (issue 14, item 2), as the unprivileged test user: the userspace
//! stack runs in a process of its own ("rr-netstack", a child of the launcher) with a seccomp
//! filter, no_new_privs, no capabilities (bounding set included, in a user namespace of its
//! own) and no filesystem (Landlock, or an empty root where the kernel has no Landlock); a
//! forbidden syscall kills it (SIGSYS), and the launcher then kills the sandbox, says why and
//! exits 1, leaving no process behind.
//! The rest of the integration suite is the functional proof that the stack works confined.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use rr_tests::child::{Running, TIMEOUT};
use rr_tests::procs;
use rr_tests::sandbox::{unique_token, Harness};

/// The launcher's debug-build knob (launcher/src/helper.rs, `TRY_EXECVE_VAR`): the confined
/// stack calls execve(2) once it is confined.
const TRY_EXECVE_VAR: &str = "RR_TEST_HELPER_EXECVE";
/// The launcher's debug-build knob (launcher/src/helper.rs, `TRY_OPEN_VAR`): the stack opens
/// this file once its filesystem is gone, and logs the outcome.
const TRY_OPEN_VAR: &str = "RR_TEST_HELPER_OPEN";
/// The stack process's name (launcher/src/helper.rs, `NAME`).
const HELPER_NAME: &str = "rr-netstack";
/// Bound for the sandbox's processes to be gone once the launcher has exited.
const VANISH_TIMEOUT: Duration = Duration::from_secs(30);

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()]
}

/// The value of `field` in /proc/PID/status.
fn status_field(pid: i32, field: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status:\n{status}"))
}

fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_owned())
        .unwrap_or_default()
}

#[test]
fn the_stack_runs_in_its_own_confined_process() {
    let h = Harness::new();
    let token = unique_token("confined");
    // A connection through the stack proves it is running, so confined (it confines itself
    // before it reads a frame).
    let host = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a host port");
    let port = host.local_addr().expect("local addr").port();
    let probe = h.probe(&[]).join(" ");
    let script = format!("{probe} connect 10.0.2.2:{port} && exec {probe} hold {token}");
    // A file the test user may read: the stack must not, once confined.
    let readable = h.dir().join("readable");
    fs::write(&readable, "x").expect("write a file");
    fs::set_permissions(&readable, fs::Permissions::from_mode(0o644)).expect("chmod");
    let readable = readable.display().to_string();
    let mut launcher = Running::spawn(
        "rootless-run -- connect; hold",
        &mut h.rootless_run_env(&[(TRY_OPEN_VAR, readable.as_str())], &sh(&script)),
    );
    launcher.expect_line("connected", TIMEOUT, |l| l == "connected");
    launcher.expect_line("ready", TIMEOUT, |l| l == "ready");

    let uid = h.user().uid;
    let helpers: Vec<i32> = procs::find(uid, &token)
        .into_iter()
        .map(|p| p.pid)
        .filter(|&pid| comm(pid) == HELPER_NAME)
        .collect();
    assert_eq!(
        helpers.len(),
        1,
        "one {HELPER_NAME} process among {:?}",
        procs::find(uid, &token)
    );
    let pid = helpers[0];
    assert_eq!(
        status_field(pid, "PPid"),
        launcher.pid().to_string(),
        "its parent is the launcher"
    );
    // SECCOMP_MODE_FILTER, and nothing can widen it.
    assert_eq!(status_field(pid, "Seccomp"), "2");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(pid, set), "0000000000000000", "{set}");
    }
    // A user namespace of its own, so the capabilities it dropped were only ever its own.
    let ns = |p: i32| fs::read_link(format!("/proc/{p}/ns/user")).expect("user namespace");
    assert_ne!(
        ns(pid),
        ns(launcher.pid()),
        "the helper is in the launcher's user namespace"
    );

    launcher.close_stdin();
    let out = launcher.wait(TIMEOUT);
    assert_eq!(out.shell_status(), 0, "{out}");
    // No filesystem: Landlock answers EACCES, the empty root ENOENT.
    let refused = out.stderr_lines().into_iter().any(|l| {
        l.contains(&format!("{TRY_OPEN_VAR}: refused"))
            && (l.contains("Permission denied") || l.contains("No such file"))
    });
    assert!(refused, "the confined stack could open {readable}:\n{out}");
}

#[test]
fn a_forbidden_syscall_kills_the_helper_and_fails_the_run() {
    let h = Harness::new();
    let token = unique_token("sigsys");
    let probe = h.probe(&["hold", &token]);
    let mut launcher = Running::spawn(
        format!("{TRY_EXECVE_VAR}=1 rootless-run -- rr-probe hold"),
        &mut h.rootless_run_env(&[(TRY_EXECVE_VAR, "1")], &probe),
    );
    // `hold` ends only at EOF on stdin: keep it open, so only the launcher can end the sandbox.
    let _keep_blocked = launcher.take_stdin();
    let out = launcher.wait(TIMEOUT);
    assert_eq!(out.shell_status(), 1, "{out}");
    let last = out.stderr_lines().last().copied().unwrap_or_default();
    assert!(
        last.starts_with("rootless-run: ") && last.contains("killed by SIGSYS"),
        "the final error does not say the helper was killed by SIGSYS:\n{out}"
    );
    if let Err(left) = procs::wait_gone(h.user().uid, &token, VANISH_TIMEOUT) {
        procs::kill_all(&left);
        panic!("a killed helper left processes behind: {left:#?}");
    }
}
