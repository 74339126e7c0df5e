//! `--persist` with `--time` and `--pid` (issue 13, item 2), as the unprivileged test user: the
//! holder keeps the new time namespace, so a later `--join DIR` sees the sandbox's clocks;
//! the pid namespace ends with its pid 1 (the kernel lets no process into a pid namespace
//! whose init has exited), so `--join DIR` runs in the launcher's, and `--join DIR --pid` makes
//! a fresh one.

mod common;

use std::path::Path;

use common::Env;

/// `--boottime` offset of the persisted sandbox, in seconds: a year, above any test machine's
/// uptime, so only a process in the sandbox's time namespace sees a boot time this old.
const BOOTTIME_OFFSET: f64 = 86_400.0 * 365.0;

#[test]
fn persist_keeps_the_time_namespace_and_the_pid_namespace_ends_with_its_pid_1() {
    let env = Env::new();
    let dir = env.scratch.join("box-pid-time");
    let d = dir.to_str().expect("utf-8");
    let offset = format!("--boottime={BOOTTIME_OFFSET}");
    let offset = offset.trim_end_matches(".0");
    let started = env.rr(&[
        "--persist",
        d,
        "--detach",
        "--pid",
        "--time",
        offset,
        "--",
        "sh",
        "-c",
        "echo $$",
    ]);
    let stop = || env.rr(&["--stop", d]);
    if started.code() != 0 {
        stop();
        panic!("--persist --pid --time did not start: {started:?}");
    }

    let uptime = env.rr(&["--join", d, "--", "cat", "/proc/uptime"]);
    let joined_pid = env.rr(&["--join", d, "--", "sh", "-c", "echo $$"]);
    let fresh_pid = env.rr(&["--join", d, "--pid", "--", "sh", "-c", "echo $$"]);
    let stopped = stop();

    let boot: f64 = uptime
        .ok()
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no uptime in {uptime:?}"));
    assert!(
        boot >= BOOTTIME_OFFSET,
        "the joined process sees the sandbox's boot time offset: {boot}"
    );
    let pid: u32 = joined_pid.ok().trim().parse().expect("a pid");
    assert!(pid > 1, "no pid namespace is kept to join: {pid}");
    assert_eq!(
        fresh_pid.ok().trim(),
        "1",
        "--join DIR --pid makes a new one"
    );
    assert_eq!(stopped.code(), 0, "{stopped:?}");
    assert!(!Path::new(d).exists(), "record removed");
}
