//! Who is pid 1 of the sandbox's pid namespace (issue 13, items 1 and 7), as the unprivileged
//! test user: under `--pid` the program itself, as util-linux `unshare --pid --fork` has it
//! (so it ignores a signal it has no handler for, even its own SIGTERM); under `--init` our
//! init (its reaping of orphans: launcher/tests/options.rs, `init_reaps_orphans`). The
//! launcher's death still takes the whole namespace with it, and the program's status passes
//! through either way.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use nix::sys::signal::Signal;
use rr_tests::child::{run, Outcome, Running, TIMEOUT};
use rr_tests::procs;
use rr_tests::sandbox::{argv, unique_token, Harness};

/// Bound for the sandbox to vanish after the launcher is SIGKILLed.
const VANISH_TIMEOUT: Duration = Duration::from_secs(30);

/// `rr-probe trap-signals` exits with this plus the caught signal's number.
const TRAPPED_BASE: i32 = 64;

/// Runs `sh -c SCRIPT` under `rootless-run FLAGS...` as the test user.
fn sh(h: &Harness, flags: &[&str], script: &str) -> Outcome {
    let cmd = argv(&["/bin/sh", "-c", script]);
    let what = format!("rootless-run {} -- sh -c '{script}'", flags.join(" "));
    run(
        what,
        &mut h.as_user(&h.rootless_run_with(flags, &cmd)),
        TIMEOUT,
    )
}

#[test]
fn under_pid_the_program_is_pid_1_as_under_unshare() {
    let h = Harness::new();
    let out = sh(&h, &["--pid"], "echo $$; exit 7");
    assert_eq!(out.stdout.trim(), "1", "{out}");
    assert_eq!(out.shell_status(), 7, "the status passes through\n{out}");
}

#[test]
fn under_init_our_init_is_pid_1_and_the_program_pid_2() {
    let h = Harness::new();
    let out = sh(
        &h,
        &["--init", "--mount-proc"],
        "echo $$; cat /proc/1/comm; exit 9",
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"2"), "{out}");
    // The init is the launcher's own image (its comm is the copied binary's name).
    let launcher = std::path::Path::new(h.launcher())
        .file_name()
        .and_then(|n| n.to_str())
        .expect("launcher path has a name");
    assert_eq!(lines.get(1), Some(&launcher), "{out}");
    assert_eq!(out.shell_status(), 9, "the status passes through\n{out}");
}

#[test]
fn pid_1_ignores_its_own_sigterm_and_init_gives_the_default_back() {
    let h = Harness::new();
    // A pid 1 without a handler is immune to the signal from inside its namespace (the kernel
    // drops it), so the shell carries on; as pid 2 under our init it dies of it.
    let script = "kill -TERM $$; echo survived";
    let out = sh(&h, &["--pid"], script);
    assert_eq!(
        (out.shell_status(), out.stdout.trim()),
        (0, "survived"),
        "{out}"
    );
    let out = sh(&h, &["--init"], script);
    assert_eq!(
        out.shell_status(),
        128 + Signal::SIGTERM as i32,
        "SIGTERM death passes through as 143\n{out}"
    );
}

#[test]
fn forwarded_signals_reach_a_pid_1_that_handles_them() {
    let h = Harness::new();
    for flags in [&["--pid"][..], &["--init"]] {
        let probe = h.probe(&["trap-signals"]);
        let what = format!("rootless-run {flags:?} -- rr-probe trap-signals");
        let mut launcher =
            Running::spawn(&what, &mut h.as_user(&h.rootless_run_with(flags, &probe)));
        launcher.expect_line("ready", TIMEOUT, |l| l == "ready");
        launcher.signal(Signal::SIGTERM);
        let out = launcher.wait(TIMEOUT);
        assert_eq!(
            out.status.code(),
            Some(TRAPPED_BASE + Signal::SIGTERM as i32),
            "{what}: SIGTERM did not reach the program\n{out}"
        );
    }
}

#[test]
fn sigkill_of_launcher_takes_the_pid_namespace_with_it() {
    let h = Harness::new();
    for flags in [&["--pid"][..], &["--init"]] {
        let token = unique_token("pid1-kill");
        let probe = h.probe(&["hold", &token]);
        let what = format!("rootless-run {flags:?} -- rr-probe hold");
        let mut launcher =
            Running::spawn(&what, &mut h.as_user(&h.rootless_run_with(flags, &probe)));
        launcher.expect_line("ready", TIMEOUT, |l| l == "ready");
        let uid = h.user().uid;
        assert!(
            procs::find(uid, &token)
                .iter()
                .any(|p| p.pid != launcher.pid() && p.cmdline.contains("rr-probe hold")),
            "{what}: the sandboxed rr-probe is not visible"
        );
        // Keep the probe's stdin open: only the launcher's death may end it.
        let _keep = launcher.take_stdin();
        launcher.signal(Signal::SIGKILL);
        let out = launcher.wait(TIMEOUT);
        assert_eq!(out.status.signal(), Some(Signal::SIGKILL as i32), "{out}");
        if let Err(left) = procs::wait_gone(uid, &token, VANISH_TIMEOUT) {
            procs::kill_all(&left);
            panic!("{what}: SIGKILL of the launcher left processes behind: {left:#?}");
        }
    }
}
