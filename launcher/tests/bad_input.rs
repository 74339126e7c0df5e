//! Bad input and broken machines (issues 3 and 5): each must give one line
//! `rootless-run: <what>: <why and remedy>` and the documented exit status, without a panic.
//! A missing or locked /dev/net/tun and a missing newuidmap are simulated in a private mount
//! namespace (as root, then switching to the test user), so the machine itself is not touched.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Env, Out};

/// Asserts a one-line error with this prefix and status.
fn one_line_error(out: &Out, status: i32, prefix: &str) {
    assert_eq!(out.code(), status, "{out:?}");
    let lines: Vec<_> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {out:?}");
    assert!(
        lines[0].starts_with(prefix),
        "{:?} does not start with {prefix:?}",
        lines[0]
    );
    assert!(!out.stderr.contains("panicked"), "{out:?}");
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let env = Env::new();
    let out = env.rr(&["--bogus", "true"]);
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(
        out.stderr.contains("unexpected argument '--bogus'"),
        "{out:?}"
    );
}

#[test]
fn double_dash_without_command_is_a_usage_error() {
    let env = Env::new();
    one_line_error(
        &env.rr(&["--"]),
        2,
        "rootless-run: missing command after '--'",
    );
}

#[test]
fn command_not_found_and_not_executable() {
    let env = Env::new();
    let out = env.rr(&["--", "no-such-command-here"]);
    one_line_error(
        &out,
        127,
        "rootless-run: cannot execute 'no-such-command-here': No such file or directory",
    );
    let file = env.scratch.join("not-executable");
    std::fs::write(&file, "echo should not run\n").expect("write");
    let f = file.to_str().expect("utf-8");
    let out = env.rr(&["--", f]);
    one_line_error(
        &out,
        126,
        &format!("rootless-run: cannot execute '{f}': Permission denied"),
    );
}

#[test]
fn root_on_a_missing_directory() {
    let env = Env::new();
    one_line_error(
        &env.rr(&["--root=/nonexistent/rootfs", "true"]),
        2,
        "rootless-run: --root=/nonexistent/rootfs: not an existing directory",
    );
}

#[test]
fn map_auto_without_a_subuid_entry_names_the_file() {
    let env = Env::new();
    // `nobody` has no /etc/subuid entry on a stock system.
    let mut c = Command::new("/usr/bin/setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(&env.bin)
        .args(["--map-auto", "true"])
        .current_dir("/");
    let out = env.run(c);
    one_line_error(
        &out,
        2,
        "rootless-run: --map-auto: nobody has no range in /etc/subuid",
    );
}

#[test]
fn mount_proc_with_a_join_that_has_no_mount_namespace() {
    let env = Env::new();
    one_line_error(
        &env.rr(&["--join-ns", "net=/proc/self/ns/net", "--mount-proc", "true"]),
        2,
        "rootless-run: --mount-proc: the joined namespaces have no mount namespace",
    );
}

#[test]
fn tun_device_missing() {
    let env = Env::new();
    let out = env.rr_with_mounts("mount -t tmpfs none /dev/net", &["true"]);
    one_line_error(
        &out,
        1,
        "rootless-run: cannot create the sandbox's tap device: /dev/net/tun is missing",
    );
}

#[test]
fn tun_device_not_permitted() {
    let env = Env::new();
    let out = env.rr_with_mounts(
        "mount -t tmpfs none /dev/net; mknod -m 0600 /dev/net/tun c 10 200",
        &["true"],
    );
    one_line_error(
        &out,
        1,
        "rootless-run: cannot create the sandbox's tap device: /dev/net/tun is not accessible",
    );
    assert!(
        out.stderr.contains("chmod 0666"),
        "names the remedy: {out:?}"
    );
}

#[test]
fn newuidmap_missing() {
    let env = Env::new();
    let hide: String = [
        "/usr/bin/newuidmap",
        "/usr/sbin/newuidmap",
        "/bin/newuidmap",
        "/sbin/newuidmap",
    ]
    .iter()
    .filter(|p| Path::new(p).exists())
    .map(|p| format!("mount --bind /dev/null {p}; "))
    .collect();
    let out = env.rr_with_mounts(hide.trim_end_matches("; "), &["--map-auto", "true"]);
    one_line_error(
        &out,
        1,
        "rootless-run: --map-users/--map-groups/--map-auto: newuidmap not found",
    );
    assert!(out.stderr.contains("uidmap package"), "{out:?}");
}
