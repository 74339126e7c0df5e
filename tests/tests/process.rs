//! The launcher as a process, as the unprivileged test user (issue 3, items 2 and 4): the
//! caller is root inside (`unshare -Ur`), the child's exit code and fatal signal pass through,
//! forwarded signals reach the child, and SIGKILL of the launcher leaves no process behind.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rr_tests::child::{run, Running, TIMEOUT};
use rr_tests::procs;
use rr_tests::sandbox::{unique_token, Harness};

/// Bound for the launcher's child to die after the launcher is SIGKILLed.
const VANISH_TIMEOUT: Duration = Duration::from_secs(30);

/// `rr-probe trap-signals` exits with this plus the caught signal's number.
const TRAPPED_BASE: i32 = 64;

/// The signals rootless-run forwards to its child (issue 3, item 2).
const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()]
}

#[test]
fn caller_is_root_inside_with_setgroups_denied() {
    let h = Harness::new();
    let script = "id -u; id -g; cat /proc/self/uid_map /proc/self/setgroups";
    let out = run(
        "rootless-run -- id",
        &mut h.rootless_run(&sh(script)),
        TIMEOUT,
    );
    assert_eq!(out.shell_status(), 0, "{out}");
    let uid = h.user().uid;
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    // `unshare -Ur` semantics: uid and gid 0 inside, mapped to the caller, setgroups denied.
    assert_eq!(
        words,
        ["0", "0", "0", &uid.to_string(), "1", "deny"],
        "{out}"
    );
}

#[test]
fn exit_code_of_child_passes_through() {
    let h = Harness::new();
    for code in [0, 1, 42, 255] {
        let script = format!("exit {code}");
        let out = run(
            format!("rootless-run -- sh -c '{script}'"),
            &mut h.rootless_run(&sh(&script)),
            TIMEOUT,
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "exit code {code} did not pass through\n{out}"
        );
    }
}

#[test]
fn child_killed_by_sigterm_gives_143() {
    let h = Harness::new();
    let out = run(
        "rootless-run -- sh -c 'kill -TERM $$'",
        &mut h.rootless_run(&sh("kill -TERM $$")),
        TIMEOUT,
    );
    // 128 + SIGTERM, whether the launcher exits with 143 or re-raises SIGTERM (a shell's $?
    // shows 143 either way).
    assert_eq!(
        out.shell_status(),
        128 + Signal::SIGTERM as i32,
        "SIGTERM death did not pass through\n{out}"
    );
}

#[test]
fn signals_sent_to_launcher_reach_the_child() {
    let h = Harness::new();
    // One launcher per signal, all at once, so a launcher that forwards nothing costs one
    // timeout rather than seven.
    let mut launchers: Vec<(Signal, Running)> = FORWARDED
        .iter()
        .map(|&sig| {
            let probe = h.probe(&["trap-signals"]);
            let what = format!("rootless-run -- rr-probe trap-signals ({sig})");
            (sig, Running::spawn(what, &mut h.rootless_run(&probe)))
        })
        .collect();
    for (_, launcher) in &mut launchers {
        launcher.expect_line("ready", TIMEOUT, |l| l == "ready");
    }
    let mut failures = Vec::new();
    for (sig, launcher) in &launchers {
        launcher.signal(*sig);
    }
    let deadline = Instant::now() + TIMEOUT;
    for (sig, launcher) in launchers {
        let want = TRAPPED_BASE + sig as i32;
        match launcher.wait_bounded(deadline.saturating_duration_since(Instant::now())) {
            Ok(out)
                if out.status.code() == Some(want)
                    && out.stdout.contains(&format!("caught {}", sig.as_str())) => {}
            Ok(out) => failures.push(format!(
                "{sig}: want exit {want} (the child caught it)\n{out}"
            )),
            Err(out) => failures.push(format!(
                "{sig}: launcher still running after {TIMEOUT:?}\n{out}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} signals sent to the launcher did not reach the child:\n{}",
        failures.len(),
        FORWARDED.len(),
        failures.join("\n")
    );
}

#[test]
fn sigkill_of_launcher_leaves_no_process_behind() {
    let h = Harness::new();
    let token = unique_token("sigkill");
    let probe = h.probe(&["hold", &token]);
    let mut launcher = Running::spawn("rootless-run -- rr-probe hold", &mut h.rootless_run(&probe));
    launcher.expect_line("ready", TIMEOUT, |l| l == "ready");

    // Precondition: we can see the processes we are about to expect gone.
    let uid = h.user().uid;
    let before = procs::find(uid, &token);
    assert!(
        before.iter().any(|p| p.pid == launcher.pid()),
        "the launcher (pid {}) is not among {}'s processes with {token}: {before:?}",
        launcher.pid(),
        h.user().name
    );
    assert!(
        before
            .iter()
            .any(|p| p.pid != launcher.pid() && p.cmdline.contains("rr-probe hold")),
        "the sandboxed rr-probe is not among {}'s processes with {token}: {before:?}",
        h.user().name
    );

    // `rr-probe hold` exits when its stdin reaches EOF: keep that pipe open until the end of
    // the test, so only the launcher's own cleanup (PDEATHSIG) can end the child.
    let _keep_child_blocked = launcher.take_stdin();
    launcher.signal(Signal::SIGKILL);
    let out = launcher.wait(TIMEOUT);
    assert_eq!(out.status.signal(), Some(Signal::SIGKILL as i32), "{out}");
    if let Err(left) = procs::wait_gone(uid, &token, VANISH_TIMEOUT) {
        procs::kill_all(&left);
        panic!("SIGKILL of the launcher left processes behind after {VANISH_TIMEOUT:?}: {left:#?}");
    }
}
