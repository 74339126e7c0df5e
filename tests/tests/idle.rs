//! An idle helper sleeps (issue 15, item 4), as the unprivileged test user: after one TCP
//! connection through the gateway, rootless-run's helper (every process of the run outside the
//! sandbox's network namespace: the launcher and its rr-netstack) wakes only for what its
//! sandbox sends, never on a tick or a busy-poll of its own.
//!
//! Idle is not silent: the sandbox's kernel solicits a router that never answers (IPv6 router
//! solicitations with exponential backoff, RFC 7559) and sends MLD reports at first, and each
//! such frame wakes the stack. So the test counts the frames the sandbox sent on tap0 (its
//! /proc/PID/net/dev, read through a process inside) beside the helper's wakeups (context
//! switches of every thread) and CPU ticks over a window of `WINDOW`, and allows the wakeups
//! beyond the frames no more than `SLACK` (one frame sent just before the window may wake the
//! stack just inside it). A tick of a second or faster, or a busy-poll, fails it.
//! The window is a measurement of nothing happening, the one wait here that is not for an event.
//! The benchmark's own idle figures (`scripts/bench --sandboxes`) hold the targets; this test
//! only keeps an idle helper asleep.

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::thread;
use std::time::Duration;

use rr_tests::child::{Running, TIMEOUT};
use rr_tests::procs;
use rr_tests::sandbox::{unique_token, Harness};

/// How long the helper is watched while nothing moves.
const WINDOW: Duration = Duration::from_secs(6);
/// Wakeups beyond the sandbox's frames allowed in the window (see the header).
const SLACK: u64 = 1;
/// CPU ticks (utime+stime, 1/100 s) the helper may be charged in the window: handling a few
/// frames costs microseconds, so one tick boundary crossed is the most that may show.
const TICKS: u64 = 1;

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()]
}

fn netns(pid: i32) -> Option<std::path::PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/net")).ok()
}

/// utime+stime of a process, all its threads, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/stat: {e}"));
    let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    // Fields after the command: state is the first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |i: usize| -> u64 {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("bad /proc/{pid}/stat: {stat}"))
    };
    field(11) + field(12)
}

/// Context switches, voluntary and not, of every thread of a process.
fn wakeups(pid: i32) -> u64 {
    let tasks = fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("cannot list the threads of {pid}: {e}"));
    let mut total = 0;
    for task in tasks.flatten() {
        let Ok(status) = fs::read_to_string(task.path().join("status")) else {
            continue; // the thread exited meanwhile
        };
        for line in status.lines() {
            if let Some(n) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += n.trim().parse::<u64>().expect("a context switch count");
            }
        }
    }
    total
}

/// Frames the network namespace of `pid` sent on its interfaces other than lo.
fn frames_sent(pid: i32) -> u64 {
    let dev = fs::read_to_string(format!("/proc/{pid}/net/dev"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/net/dev: {e}"));
    dev.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim() != "lo")
        // Receive has 8 columns, then transmit bytes, then transmit packets.
        .map(|(_, counters)| {
            counters
                .split_whitespace()
                .nth(9)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("bad /proc/{pid}/net/dev:\n{dev}"))
        })
        .sum()
}

/// (CPU ticks, wakeups) of the helper's processes and the frames the sandbox sent.
fn sample(helpers: &[i32], inside: i32) -> (u64, u64, u64) {
    let ticks = helpers.iter().map(|&p| cpu_ticks(p)).sum();
    let woke = helpers.iter().map(|&p| wakeups(p)).sum();
    (ticks, woke, frames_sent(inside))
}

#[test]
fn an_idle_helper_wakes_only_for_frames_from_its_sandbox() {
    let h = Harness::new();
    let token = unique_token("idle");
    // The host side accepts, reads to EOF and closes, so the flow ends on both sides.
    let host = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a host port");
    let port = host.local_addr().expect("local addr").port();
    let server = thread::spawn(move || {
        let (mut conn, _) = host.accept().expect("accept the sandbox's connection");
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
    });
    let probe = h.probe(&[]).join(" ");
    let script = format!("{probe} connect 10.0.2.2:{port} && exec {probe} hold {token}");
    let mut launcher = Running::spawn(
        "rootless-run -- connect; hold",
        &mut h.rootless_run(&sh(&script)),
    );
    launcher.expect_line("connected", TIMEOUT, |l| l == "connected");
    launcher.expect_line("ready", TIMEOUT, |l| l == "ready");
    server.join().expect("the host side ended");

    let ours = netns(std::process::id() as i32);
    let run = procs::find(h.user().uid, &token);
    let (outside, inside): (Vec<i32>, Vec<i32>) = run
        .iter()
        .map(|p| p.pid)
        .partition(|&pid| netns(pid) == ours);
    assert!(
        outside.contains(&launcher.pid()) && outside.len() >= 2,
        "the helper is the launcher and its stack process: {run:#?}"
    );
    let inside = *inside.first().expect("a process in the sandbox");

    let before = sample(&outside, inside);
    thread::sleep(WINDOW);
    let after = sample(&outside, inside);
    let ticks = after.0 - before.0;
    let woke = after.1 - before.1;
    let frames = after.2 - before.2;
    eprintln!(
        "idle {WINDOW:?}: {woke} wakeups, {frames} frames from the sandbox, {ticks} CPU ticks"
    );
    launcher.close_stdin();
    let out = launcher.wait(TIMEOUT);
    assert_eq!(out.shell_status(), 0, "{out}");
    assert!(
        woke <= frames + SLACK,
        "the idle helper woke {woke} times in {WINDOW:?}, its sandbox sent {frames} frames"
    );
    assert!(
        ticks <= TICKS,
        "the idle helper used {ticks} CPU ticks in {WINDOW:?}"
    );
}
