//! Bad input and a broken environment, as the unprivileged test user (issue 3, item 5): an
//! unknown flag, no command after `--`, user namespaces disabled, /dev/net/tun missing or not
//! permitted. Each must give a one-line error naming the cause, a non-zero exit, no panic, and
//! leave no process behind. The broken environments are built inside namespaces this test
//! creates (a user namespace with max_user_namespaces 0, a mount namespace with its own
//! /dev/net), so nothing global changes.

use std::fs;
use std::time::Duration;

use rr_tests::child::{run, Outcome, Running, TIMEOUT};
use rr_tests::procs;
use rr_tests::sandbox::{command, in_new_namespaces, unique_token, Harness};

/// Exit code for a usage error (STYLE.md, CLI: exit codes).
const EXIT_USAGE: i32 = 2;
/// Exit code when rootless-run's own setup fails (STYLE.md, CLI: exit codes).
const EXIT_SETUP: i32 = 1;

/// Bound for a failed launch's processes to be gone.
const VANISH_TIMEOUT: Duration = Duration::from_secs(30);

const MAX_USERNS: &str = "/proc/sys/user/max_user_namespaces";

/// Checks the contract for every bad-input case: exit `code`, exactly one line on stderr in the
/// house format `rootless-run: ...`, mentioning each of `mentions`, and no panic text.
fn assert_one_line_error(out: &Outcome, code: i32, mentions: &[&str]) {
    assert_eq!(out.status.code(), Some(code), "wrong exit status\n{out}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "the error must be exactly one line\n{out}");
    let line = lines[0];
    assert!(
        line.starts_with("rootless-run: "),
        "the error must read `rootless-run: what: why` (STYLE.md, Errors)\n{out}"
    );
    for m in mentions {
        assert!(line.contains(m), "the error must name {m:?}\n{out}");
    }
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"),
        "rootless-run panicked\n{out}"
    );
}

/// Waits until no process of the test user carries `token`; kills and fails otherwise.
fn assert_nothing_left(h: &Harness, token: &str) {
    if let Err(left) = procs::wait_gone(h.user().uid, token, VANISH_TIMEOUT) {
        procs::kill_all(&left);
        panic!("a failed launch left processes behind: {left:#?}");
    }
}

#[test]
fn unknown_flag_is_a_one_line_usage_error() {
    let h = Harness::new();
    let token = unique_token("badflag");
    let argv = h.as_user_argv(&h.rootless_run_with(&["--bogus-flag"], &h.probe(&["hold", &token])));
    let out = run(
        "rootless-run --bogus-flag -- rr-probe hold",
        &mut command(&argv),
        TIMEOUT,
    );
    assert_one_line_error(&out, EXIT_USAGE, &["--bogus-flag"]);
    assert_eq!(out.stdout, "", "nothing may run after a usage error\n{out}");
    assert_nothing_left(&h, &token);
}

#[test]
fn out_of_range_busy_poll_is_a_one_line_usage_error() {
    let h = Harness::new();
    let token = unique_token("badspin");
    let hold = h.probe(&["hold", &token]);
    for bad in ["10001", "-1", "fast"] {
        let flag = format!("--busy-poll={bad}");
        let argv = h.as_user_argv(&h.rootless_run_with(&[&flag], &hold));
        let out = run(format!("rootless-run {flag}"), &mut command(&argv), TIMEOUT);
        assert_one_line_error(&out, EXIT_USAGE, &["--busy-poll", bad]);
        assert_eq!(out.stdout, "", "nothing may run after a usage error\n{out}");
    }
    assert_nothing_left(&h, &token);
}

#[test]
fn missing_command_after_double_dash_is_a_one_line_usage_error() {
    let h = Harness::new();
    let out = run("rootless-run --", &mut h.rootless_run(&[]), TIMEOUT);
    assert_one_line_error(&out, EXIT_USAGE, &[]);
    assert_eq!(out.stdout, "", "{out}");
}

#[test]
fn disabled_user_namespaces_give_a_one_line_error() {
    let h = Harness::new();
    let global_before = fs::read_to_string(MAX_USERNS).expect("read max_user_namespaces");
    let token = unique_token("nouserns");
    // As root: a new user namespace (identity-mapped below, so the test user exists in it),
    // whose own max_user_namespaces is set to 0. The limit binds every namespace created under
    // it and nothing outside it.
    // Stage 1 waits for the id maps; it must exec again (stage 2) to hold capabilities in the
    // new namespace, since an exec before the maps exist drops them (user_namespaces(7)).
    let stage1 = "echo waiting-for-maps; read go || exit 90; exec /bin/sh -c \"$1\" stage2 \"$@\"";
    let stage2 = "echo 0 > /proc/sys/user/max_user_namespaces || exit 91; \
                  echo \"max_user_namespaces=$(cat /proc/sys/user/max_user_namespaces)\"; \
                  shift; exec \"$@\"";
    let mut argv = [
        "/usr/bin/unshare",
        "--user",
        "--",
        "/bin/sh",
        "-c",
        stage1,
        "stage1",
        stage2,
    ]
    .map(String::from)
    .to_vec();
    argv.extend(h.as_user_argv(&h.rootless_run_argv(&h.probe(&["hold", &token]))));
    let mut outer = Running::spawn(
        "unshare --user: rootless-run with max_user_namespaces 0",
        &mut command(&argv),
    );
    outer.expect_line("waiting-for-maps", TIMEOUT, |l| l == "waiting-for-maps");
    let pid = outer.pid();
    // 4294967295 ids from 0: everything but the invalid id -1 (user_namespaces(7)).
    for map in ["uid_map", "gid_map"] {
        fs::write(format!("/proc/{pid}/{map}"), "0 0 4294967295\n")
            .unwrap_or_else(|e| panic!("write /proc/{pid}/{map}: {e}\n{}", outer.output_so_far()));
    }
    outer.write_stdin(b"go\n");
    outer.close_stdin();
    outer.expect_line("max_user_namespaces=0", TIMEOUT, |l| {
        l.starts_with("max_user_namespaces=")
    });
    let out = outer.wait(TIMEOUT);

    let global_after = fs::read_to_string(MAX_USERNS).expect("read max_user_namespaces");
    assert_eq!(
        global_before, global_after,
        "the global max_user_namespaces changed"
    );
    assert!(
        out.stdout.contains("max_user_namespaces=0"),
        "precondition: the limit was not 0 in the test's user namespace\n{out}"
    );
    assert_one_line_error(&out, EXIT_SETUP, &["max_user_namespaces"]);
    assert!(
        !out.stdout.contains("ready"),
        "the command ran anyway\n{out}"
    );
    assert_nothing_left(&h, &token);
}

/// Runs the launcher as the test user in a private mount namespace where /dev/net is a fresh
/// tmpfs prepared by `prepare` (a shell snippet run as root); returns its outcome.
fn launch_with_private_dev_net(h: &Harness, token: &str, prepare: &str) -> Outcome {
    let setup = format!(
        "mount -t tmpfs -o mode=0755,size=64k rr-dev-net /dev/net || exit 91; {prepare}; \
         if [ -e /dev/net/tun ]; then echo \"precondition: tun $(stat -c %a /dev/net/tun)\"; \
         else echo 'precondition: tun absent'; fi"
    );
    let argv = in_new_namespaces(
        &["--mount", "--propagation", "private"],
        &setup,
        &h.as_user_argv(&h.rootless_run_argv(&h.probe(&["hold", token]))),
    );
    run(
        "unshare --mount: rootless-run with a private /dev/net",
        &mut command(&argv),
        TIMEOUT,
    )
}

#[test]
fn missing_dev_net_tun_gives_a_one_line_error() {
    let h = Harness::new();
    let token = unique_token("notun");
    let out = launch_with_private_dev_net(&h, &token, "true");
    assert!(
        out.stdout.contains("precondition: tun absent"),
        "precondition: /dev/net/tun should be absent in the test's mount namespace\n{out}"
    );
    assert_one_line_error(&out, EXIT_SETUP, &["/dev/net/tun"]);
    assert!(
        !out.stdout.contains("ready"),
        "the command ran anyway\n{out}"
    );
    assert_nothing_left(&h, &token);
}

#[test]
fn unpermitted_dev_net_tun_gives_a_one_line_error() {
    let h = Harness::new();
    let token = unique_token("tun0600");
    let out =
        launch_with_private_dev_net(&h, &token, "mknod -m 0600 /dev/net/tun c 10 200 || exit 92");
    assert!(
        out.stdout.contains("precondition: tun 600"),
        "precondition: /dev/net/tun should be mode 0600 in the test's mount namespace\n{out}"
    );
    assert_one_line_error(&out, EXIT_SETUP, &["/dev/net/tun"]);
    assert!(
        !out.stdout.contains("ready"),
        "the command ran anyway\n{out}"
    );
    assert_nothing_left(&h, &token);
}
