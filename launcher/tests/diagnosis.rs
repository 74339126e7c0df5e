//! Host settings that restrict user namespaces, diagnosed before anything is built (issue 13,
//! item 3): one line naming the setting and the remedy, exit status 1, and no sandbox process
//! started. This machine (Debian 12 userspace, no AppArmor, a kernel without Debian's
//! `unprivileged_userns_clone`) cannot flip these knobs for one test, so each is simulated in
//! a namespace the test owns:
//! - `user.max_user_namespaces`: really set to 0, in a user namespace of the test user's (the
//!   limit is per user namespace and binds its descendants), so the kernel would refuse too;
//! - `kernel.unprivileged_userns_clone` and `kernel.apparmor_restrict_unprivileged_userns`: a
//!   directory of fake sysctl files bind-mounted over /proc/sys/kernel in a private mount
//!   namespace (as root, before switching to the test user). The kernel would still allow the
//!   namespace; the test checks that rootless-run reads the setting and refuses up front.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{Env, Out};

/// Asserts exit status 1 and a single stderr line that contains every one of `parts`.
fn refused(out: &Out, parts: &[&str]) {
    assert_eq!(out.code(), 1, "{out:?}");
    let lines: Vec<_> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {out:?}");
    assert!(lines[0].starts_with("rootless-run: "), "{out:?}");
    for p in parts {
        assert!(lines[0].contains(p), "{p:?} missing from {:?}", lines[0]);
    }
    assert!(
        out.stdout.is_empty(),
        "the program must not have run: {out:?}"
    );
}

/// Runs `rootless-run -- echo ran` with /proc/sys/kernel replaced by a directory holding only
/// `files` (name, contents).
fn with_fake_kernel_sysctls(env: &Env, files: &[(&str, &str)]) -> Out {
    let dir = env.scratch.join("fake-sysctl-kernel");
    fs::create_dir_all(&dir).expect("mkdir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    for (name, contents) in files {
        fs::write(dir.join(name), contents).expect("write fake sysctl");
    }
    let setup = format!("mount --bind {} /proc/sys/kernel", dir.display());
    env.rr_with_mounts(&setup, &["--", "echo", "ran"])
}

#[test]
fn zero_max_user_namespaces_in_an_owned_user_namespace_is_named() {
    let env = Env::new();
    let script = "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" \
                  --net-mode=userspace -- echo ran";
    let bin = env.bin.to_str().expect("utf-8");
    let out = env.user_cmd("/usr/bin/unshare", &["-Ur", "sh", "-c", script, bin]);
    refused(
        &out,
        &[
            "sysctl user.max_user_namespaces is 0",
            "sysctl -w user.max_user_namespaces=15000",
        ],
    );
}

#[test]
fn debian_unprivileged_userns_clone_off_is_named() {
    let env = Env::new();
    let out = with_fake_kernel_sysctls(&env, &[("unprivileged_userns_clone", "0\n")]);
    refused(
        &out,
        &[
            "sysctl kernel.unprivileged_userns_clone is 0",
            "sysctl -w kernel.unprivileged_userns_clone=1",
        ],
    );
}

#[test]
fn ubuntu_apparmor_restriction_is_named_with_the_profile_to_load() {
    let env = Env::new();
    let out = with_fake_kernel_sysctls(&env, &[("apparmor_restrict_unprivileged_userns", "1\n")]);
    refused(
        &out,
        &[
            "kernel.apparmor_restrict_unprivileged_userns is 1",
            "apparmor_parser -r /etc/apparmor.d/rootless-run",
        ],
    );
}

#[test]
fn the_same_settings_turned_on_let_the_sandbox_run() {
    let env = Env::new();
    let out = with_fake_kernel_sysctls(
        &env,
        &[
            ("unprivileged_userns_clone", "1\n"),
            ("apparmor_restrict_unprivileged_userns", "0\n"),
        ],
    );
    assert_eq!((out.code(), out.stdout.as_str()), (0, "ran\n"), "{out:?}");
}
