//! Harness for the launcher's integration tests: checks the machine (sealed netns, root, the
//! test user, /dev/net/tun), copies the binary to a 0755 temp dir, and runs it (or util-linux
//! unshare/nsenter, for comparison) as the unprivileged test user with a timeout, optionally
//! after root has changed mounts in a private mount namespace; builds minimal rootfs trees.
//! Missing setup fails the test with the remedy; nothing is skipped. No sleeps: processes are
//! waited on through pidfds with a deadline.
#![allow(dead_code)] // each test file uses a different subset

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// The unprivileged user the tests run as (created by `scripts/setup`).
pub const TEST_USER: &str = "rrtest";
/// Bound for any one command.
pub const TIMEOUT: Duration = Duration::from_secs(30);
const SETUP: &str = "run `scripts/setup` once, then the tests with `scripts/test`";

/// One test's environment: a runnable copy of the binary and a scratch dir, both removed at
/// the end of the test.
pub struct Env {
    /// The 0755 copy of rootless-run.
    pub bin: PathBuf,
    /// A scratch directory owned by the test user.
    pub scratch: PathBuf,
    /// The test user's uid and gid.
    pub uid: u32,
    pub gid: u32,
    _dir: tempfile::TempDir,
}

/// What a finished command left.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The shell's view of the status: the code, or 128 + the signal.
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .or_else(|| self.status.signal().map(|s| 128 + s))
            .unwrap_or(-1)
    }

    /// Panics with the output unless the command exited 0; returns stdout.
    pub fn ok(&self) -> &str {
        assert!(self.status.success(), "command failed: {self:#?}");
        &self.stdout
    }
}

fn check_machine() -> (u32, u32) {
    let mut problems = Vec::new();
    if std::env::var("RR_SEALED_NETNS").as_deref() != Ok("1") {
        panic!(
            "\nthe launcher integration tests run only inside the sealed network namespace \
             (RR_SEALED_NETNS=1 is not set), so nothing they start can reach the network.\n\
             Remedy: {SETUP} (or `scripts/sealed-netns cargo test -p launcher`).\n"
        );
    }
    if !nix::unistd::geteuid().is_root() {
        problems.push(format!(
            "the tests must run as root (they switch to {TEST_USER} with setpriv)"
        ));
    }
    let user = nix::unistd::User::from_name(TEST_USER).ok().flatten();
    if user.is_none() {
        problems.push(format!(
            "user {TEST_USER} is missing (useradd -m {TEST_USER})"
        ));
    }
    match fs::metadata("/dev/net/tun") {
        Ok(m) if m.mode() & 0o006 == 0o006 => {}
        Ok(_) => problems
            .push("/dev/net/tun is not usable by other users (chmod 0666 /dev/net/tun)".into()),
        Err(e) => problems.push(format!("/dev/net/tun: {e} (modprobe tun)")),
    }
    for tool in [
        "/usr/bin/setpriv",
        "/usr/bin/unshare",
        "/usr/bin/nsenter",
        "/usr/bin/newuidmap",
    ] {
        if !Path::new(tool).exists() {
            problems.push(format!(
                "{tool} is missing (apt-get install util-linux uidmap)"
            ));
        }
    }
    if !problems.is_empty() {
        panic!(
            "\nthe machine is not ready for the launcher integration tests:\n  - {}\nRemedy: {SETUP}\n",
            problems.join("\n  - ")
        );
    }
    let u = user.expect("checked above");
    (u.uid.as_raw(), u.gid.as_raw())
}

impl Env {
    /// Checks the machine and prepares a fresh copy of the binary.
    pub fn new() -> Env {
        let (uid, gid) = check_machine();
        let dir = tempfile::Builder::new()
            .prefix("rr-launcher-test-")
            .tempdir()
            .expect("create temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod 0755");
        let bin = dir.path().join("rootless-run");
        // RR_TEST_LAUNCHER tests another build (the static release one) instead of this one.
        let built = std::env::var_os("RR_TEST_LAUNCHER")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_rootless-run").into());
        copy_executable(Path::new(&built), &bin);
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
        let scratch = dir.path().join("scratch");
        fs::create_dir(&scratch).expect("mkdir scratch");
        nix::unistd::chown(
            &scratch,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .expect("chown scratch");
        Env {
            bin,
            scratch,
            uid,
            gid,
            _dir: dir,
        }
    }

    /// A command that runs `prog args` as the test user.
    pub fn as_user(&self, prog: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("/usr/bin/setpriv");
        c.args([
            &format!("--reuid={TEST_USER}"),
            &format!("--regid={TEST_USER}"),
            "--init-groups",
            "--",
        ])
        .arg(prog)
        .args(args)
        .current_dir(&self.scratch)
        .env("HOME", &self.scratch)
        .env_remove("RUST_LOG");
        c
    }

    /// Runs rootless-run with `args` as the test user.
    pub fn rr(&self, args: &[&str]) -> Out {
        self.run(self.as_user(&self.bin, args))
    }

    /// Runs rootless-run with `args` as the test user after `setup` (shell commands, as root)
    /// in a private mount namespace, so what `setup` mounts is seen by this run only.
    pub fn rr_with_mounts(&self, setup: &str, args: &[&str]) -> Out {
        let mut c = Command::new("/usr/bin/unshare");
        c.args(["-m", "--propagation", "private", "/bin/sh", "-c"])
            .arg(format!(
                "set -e; {setup}; exec /usr/bin/setpriv --reuid={TEST_USER} --regid={TEST_USER} --init-groups -- \"$@\""
            ))
            .arg("sh")
            .arg(&self.bin)
            .args(args)
            .current_dir(&self.scratch)
            .env_remove("RUST_LOG");
        self.run(c)
    }

    /// Runs util-linux `unshare` with `args` as the test user, for comparison.
    pub fn unshare(&self, args: &[&str]) -> Out {
        self.run(self.as_user(Path::new("/usr/bin/unshare"), args))
    }

    /// Runs any program as the test user.
    pub fn user_cmd(&self, prog: &str, args: &[&str]) -> Out {
        self.run(self.as_user(Path::new(prog), args))
    }

    /// Runs `cmd` to completion (bounded by `TIMEOUT`), capturing its output in files so a
    /// process left behind holding a pipe cannot hang the test.
    pub fn run(&self, mut cmd: Command) -> Out {
        let out_path = tempfile::NamedTempFile::new().expect("temp file");
        let err_path = tempfile::NamedTempFile::new().expect("temp file");
        cmd.stdin(Stdio::null())
            .stdout(out_path.reopen().expect("reopen"))
            .stderr(err_path.reopen().expect("reopen"));
        let mut child = cmd.spawn().expect("spawn");
        let status = wait_bounded(&mut child, TIMEOUT);
        Out {
            status,
            stdout: fs::read_to_string(out_path.path()).unwrap_or_default(),
            stderr: fs::read_to_string(err_path.path()).unwrap_or_default(),
        }
    }
}

/// A pidfd for `pid`.
pub fn pidfd(pid: u32) -> OwnedFd {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("nonzero pid");
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).expect("pidfd_open")
}

/// Waits until the process behind `fd` exits; false on timeout.
pub fn wait_pidfd(fd: &OwnedFd, timeout: Duration) -> bool {
    let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    let ts = rustix::event::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: timeout.subsec_nanos() as i64,
    };
    loop {
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(n) => return n > 0,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// Waits for `child` with a deadline; kills it and fails the test when the deadline passes.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> ExitStatus {
    let fd = pidfd(child.id());
    if !wait_pidfd(&fd, timeout) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("command did not finish within {timeout:?}");
    }
    child.wait().expect("wait")
}

/// Pids of processes owned by `uid` whose command line contains `marker`.
pub fn processes_with(uid: u32, marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(meta) = e.metadata() else { continue };
        if meta.uid() != uid {
            continue;
        }
        let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            out.push(pid);
        }
    }
    out
}

/// Every whitespace-separated field, for comparing /proc tables regardless of padding.
pub fn fields(s: &str) -> Vec<Vec<String>> {
    s.lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .filter(|v: &Vec<String>| !v.is_empty())
        .collect()
}

/// A launcher started in the background whose first stdout line has been read; killed (and
/// reaped) on drop, so a failing test leaves nothing running.
pub struct Spawned {
    pub child: Child,
    pub stdout: std::process::ChildStdout,
}

/// Reads one byte from `r` within `timeout`; None at EOF. Panics with what the process tree
/// is doing when the deadline passes.
fn read_byte_bounded(r: &mut std::process::ChildStdout, timeout: Duration, pid: u32) -> Option<u8> {
    use std::io::Read;
    let ts = rustix::event::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: 0,
    };
    let mut fds = [rustix::event::PollFd::new(
        &*r,
        rustix::event::PollFlags::IN,
    )];
    loop {
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => panic!(
                "no output within {timeout:?}; process tree: {}",
                describe_tree(pid)
            ),
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
    let mut b = [0u8; 1];
    match r.read(&mut b) {
        Ok(0) => None,
        Ok(_) => Some(b[0]),
        Err(e) => panic!("read: {e}"),
    }
}

/// `pid state wchan cmdline` for `pid` and its descendants, for failure messages.
pub fn describe_tree(pid: u32) -> String {
    let mut out = String::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let stat = fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(") ")
            .next()
            .unwrap_or("")
            .chars()
            .next()
            .unwrap_or('?');
        let cmd = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        for t in fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let wchan = fs::read_to_string(t.path().join("wchan")).unwrap_or_default();
            out.push_str(&format!(
                "\n  {p}/{} {state} {wchan} {cmd}",
                t.file_name().to_string_lossy()
            ));
        }
        todo.extend(children_of(p));
    }
    out
}

impl Spawned {
    /// Starts `cmd` with stdout piped and returns once it printed `first_line`.
    pub fn start(mut cmd: Command, first_line: &str) -> Spawned {
        cmd.stdout(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let mut s = Spawned { child, stdout };
        let line = s.read_line();
        assert_eq!(line.trim(), first_line, "first line of output");
        s
    }

    /// One line of stdout (bounded by `TIMEOUT`).
    pub fn read_line(&mut self) -> String {
        let mut line = Vec::new();
        let pid = self.pid();
        while let Some(b) = read_byte_bounded(&mut self.stdout, TIMEOUT, pid) {
            line.push(b);
            if b == b'\n' {
                break;
            }
        }
        String::from_utf8_lossy(&line).into_owned()
    }

    /// Pid of the launcher (setpriv execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for exit with the test deadline.
    pub fn wait(&mut self) -> ExitStatus {
        wait_bounded(&mut self.child, TIMEOUT)
    }

    /// The rest of stdout, up to EOF (bounded by `TIMEOUT` per byte).
    pub fn rest(&mut self) -> String {
        let mut out = Vec::new();
        let pid = self.pid();
        while let Some(b) = read_byte_bounded(&mut self.stdout, TIMEOUT, pid) {
            out.push(b);
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Pids of the children of `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The name of the launcher's stack process in /proc/PID/comm (launcher/src/helper.rs).
pub const STACK_PROCESS: &str = "rr-netstack";

/// Whether `pid` is a launcher's stack process.
pub fn is_stack_process(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == STACK_PROCESS)
}

/// The launcher's children that belong to the sandbox: all but its stack process.
pub fn sandbox_children_of(launcher: u32) -> Vec<u32> {
    children_of(launcher)
        .into_iter()
        .filter(|&p| !is_stack_process(p))
        .collect()
}

/// The launcher's stack process, if it has one.
pub fn stack_process_of(launcher: u32) -> Option<u32> {
    children_of(launcher)
        .into_iter()
        .find(|&p| is_stack_process(p))
}

/// Every process of the sandbox below `launcher` (its stack process left out).
pub fn sandbox_descendants_of(launcher: u32) -> Vec<u32> {
    sandbox_children_of(launcher)
        .into_iter()
        .flat_map(|c| std::iter::once(c).chain(descendants_of(c)))
        .collect()
}

/// Pids of every descendant of `pid` (not `pid` itself), parents before children.
pub fn descendants_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = children_of(pid);
    while let Some(p) = todo.pop() {
        out.push(p);
        todo.extend(children_of(p));
    }
    out
}

/// Copies an executable with `cp` in a child process, not `fs::copy`. While this process held
/// the copy open for writing, a test on another thread could fork, its child would inherit
/// that descriptor until its exec, and an exec of the copy in that window fails with ETXTBSY
/// ("Text file busy"). A `cp` child's descriptors are never inherited by our forks.
pub fn copy_executable(src: &Path, dst: &Path) {
    let status = Command::new("/bin/cp")
        .arg("--")
        .arg(src)
        .arg(dst)
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp {} {} failed: {status}",
        src.display(),
        dst.display()
    );
}

/// A rootfs with /bin/sh and ls and their libraries, nothing else.
pub fn minimal_rootfs(dir: &Path) {
    for d in ["usr/bin", "proc", "sys", "tmp", "work"] {
        fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    std::os::unix::fs::symlink("usr/bin", dir.join("bin")).expect("symlink");
    for prog in ["/bin/sh", "/bin/ls"] {
        let real = fs::canonicalize(prog).expect("canonicalize");
        let name = Path::new(prog).file_name().expect("name");
        copy_executable(&real, &dir.join("usr/bin").join(name));
        let ldd = std::process::Command::new("ldd")
            .arg(&real)
            .output()
            .expect("ldd");
        for lib in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let dst = dir.join(lib.trim_start_matches('/'));
            fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir lib dir");
            fs::copy(lib, &dst).expect("copy lib");
        }
    }
    std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir)
        .status()
        .expect("chmod");
}
