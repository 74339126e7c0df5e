//! The unprivileged side of a test: the test user, copies of the built binaries in a fresh 0755
//! directory that user can enter (the checkout may sit where it cannot), and argv/Commands that
//! run them as that user through `setpriv` with a clean environment.
//! Called by every integration test through `Harness::new`; it never runs anything itself.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use crate::preflight;

/// The unprivileged user the tests run as; `scripts/setup` and `.ci/run` create it.
pub const TEST_USER: &str = "rrtest";

/// PATH for the test user: `setpriv --reset-env` leaves /usr/sbin out, and `ip` lives there.
pub const USER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The launcher binary's name (package `launcher`).
pub const LAUNCHER: &str = "rootless-run";

/// The in-sandbox helper binary's name (this package).
pub const PROBE: &str = "rr-probe";

/// Environment variable naming a launcher to test instead of the built `rootless-run`.
pub const LAUNCHER_OVERRIDE: &str = "RR_TEST_LAUNCHER";

/// `setpriv` from util-linux, by absolute path so root's PATH does not matter.
pub const SETPRIV: &str = "/usr/bin/setpriv";

/// An account from /etc/passwd.
#[derive(Debug, Clone)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Numeric uid.
    pub uid: u32,
    /// Numeric primary gid.
    pub gid: u32,
}

/// argv that runs `argv` as `user` (uid, gid and supplementary groups), with a clean
/// environment: PATH set as above, and RUST_LOG passed on only when the test run sets it.
pub fn as_user_argv(user: &User, argv: &[String]) -> Vec<String> {
    as_user_argv_env(user, &[], argv)
}

/// Like `as_user_argv`, plus `env` (e.g. `RR_FAULT_INJECT`) in the clean environment. These
/// come after RUST_LOG, so a test that needs a log level gets it whatever the run sets.
pub fn as_user_argv_env(user: &User, env: &[(&str, &str)], argv: &[String]) -> Vec<String> {
    let mut out = vec![
        SETPRIV.to_owned(),
        format!("--reuid={}", user.name),
        format!("--regid={}", user.name),
        "--init-groups".to_owned(),
        "--reset-env".to_owned(),
        "--".to_owned(),
        "/usr/bin/env".to_owned(),
        format!("PATH={USER_PATH}"),
    ];
    if let Ok(filter) = std::env::var("RUST_LOG") {
        out.push(format!("RUST_LOG={filter}"));
    }
    out.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    out.extend(argv.iter().cloned());
    out
}

/// A Command for `argv`, run from `/` so that no user depends on the test's working directory.
pub fn command(argv: &[String]) -> Command {
    let (program, args) = argv.split_first().expect("argv has a program");
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir("/");
    cmd
}

/// argv that runs `setup` (a shell snippet, as root) in new namespaces made by
/// `unshare FLAGS` and then execs `then`; `setup` failing exits 91 before `then` runs.
pub fn in_new_namespaces(flags: &[&str], setup: &str, then: &[String]) -> Vec<String> {
    let script = format!("{setup} || exit 91; exec \"$@\"");
    let mut out = vec!["/usr/bin/unshare".to_owned()];
    out.extend(argv(flags));
    out.extend(argv(&["--", "/bin/sh", "-c", &script, "sh"]));
    out.extend(then.iter().cloned());
    out
}

/// Turns string slices into an owned argv.
pub fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

/// A token unique to this process and call, to find a test's processes among everyone's.
pub fn unique_token(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "rr-{tag}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where cargo put the built binaries: the directory above the test executable's `deps/`
/// (`target/<profile>/`).
pub fn built_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own executable");
    let deps = exe.parent().expect("the test executable is in a directory");
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps/ has a parent").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// One test's view of the machine: the checked setup and binaries the test user can execute.
pub struct Harness {
    user: User,
    dir: TempDir,
    launcher: String,
    probe: String,
}

impl Harness {
    /// Checks the machine (panicking with the remedy if it is not set up), then copies
    /// `rootless-run` and `rr-probe` into a fresh 0755 directory.
    pub fn new() -> Harness {
        let user = preflight::require().clone();
        let dir = tempfile::Builder::new()
            .prefix("rr-tests-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        set_mode(dir.path(), 0o755);
        let from = built_dir();
        let launcher = match std::env::var_os(LAUNCHER_OVERRIDE) {
            // Checking the tests themselves against another implementation (e.g. a wrapper
            // around slirp4netns) shows which failures are the tests' and which the launcher's.
            Some(path) => copy_file(Path::new(&path), &dir.path().join(LAUNCHER)),
            None => copy_exe(&from, LAUNCHER, dir.path()),
        };
        let probe = copy_exe(&from, PROBE, dir.path());
        Harness {
            user,
            dir,
            launcher,
            probe,
        }
    }

    /// The test user.
    pub fn user(&self) -> &User {
        &self.user
    }

    /// A directory (0755, removed with the harness) for files the test user must read.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of the copied launcher.
    pub fn launcher(&self) -> &str {
        &self.launcher
    }

    /// argv of `rr-probe ARGS...` (the copy the test user can run).
    pub fn probe(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec![self.probe.clone()];
        v.extend(argv(args));
        v
    }

    /// argv of `rootless-run -- COMMAND...`, not yet switched to the test user.
    pub fn rootless_run_argv(&self, command: &[String]) -> Vec<String> {
        self.rootless_run_with(&[], command)
    }

    /// argv of `rootless-run FLAGS... -- COMMAND...`, not yet switched to the test user.
    pub fn rootless_run_with(&self, flags: &[&str], command: &[String]) -> Vec<String> {
        let mut v = vec![self.launcher.clone()];
        v.extend(argv(flags));
        v.push("--".to_owned());
        v.extend(command.iter().cloned());
        v
    }

    /// argv that runs `argv` as the test user.
    pub fn as_user_argv(&self, argv: &[String]) -> Vec<String> {
        as_user_argv(&self.user, argv)
    }

    /// A Command running `rootless-run -- COMMAND...` as the test user.
    pub fn rootless_run(&self, program: &[String]) -> Command {
        command(&self.as_user_argv(&self.rootless_run_argv(program)))
    }

    /// A Command running `rootless-run -- COMMAND...` as the test user, with `env` added to its
    /// clean environment (the launcher's netstack reads `RR_FAULT_INJECT` from there).
    pub fn rootless_run_env(&self, env: &[(&str, &str)], program: &[String]) -> Command {
        command(&as_user_argv_env(
            &self.user,
            env,
            &self.rootless_run_argv(program),
        ))
    }

    /// A Command running `argv` as the test user.
    pub fn as_user(&self, argv: &[String]) -> Command {
        command(&self.as_user_argv(argv))
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

fn copy_exe(from: &Path, name: &str, to: &Path) -> String {
    let src = from.join(name);
    if !src.is_file() {
        panic!(
            "{} is missing: build the workspace first. Remedy: run the tests with `scripts/test` \
             (it runs `cargo build --workspace --all-targets` before `cargo test`).",
            src.display()
        );
    }
    copy_file(&src, &to.join(name))
}

/// Copies an executable with `cp` in a child process, not `fs::copy`. While this process held
/// the copy open for writing, a test on another thread could fork, its child would inherit
/// that descriptor until its exec, and an exec of the copy in that window fails with ETXTBSY
/// ("Text file busy"). A `cp` child's descriptors are never inherited by our forks.
pub fn copy_file(src: &Path, dst: &Path) -> String {
    let status = Command::new("/bin/cp")
        .arg("--")
        .arg(src)
        .arg(dst)
        .status()
        .unwrap_or_else(|e| panic!("run cp {} {}: {e}", src.display(), dst.display()));
    assert!(
        status.success(),
        "cp {} {} failed: {status}",
        src.display(),
        dst.display()
    );
    set_mode(dst, 0o755);
    dst.to_str().expect("temp dir paths are UTF-8").to_owned()
}
