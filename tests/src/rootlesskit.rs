//! rootlesskit (Debian's, 1.1) driving the slirp4netns under test, as the test user: the argv
//! with `--net=slirp4netns --slirp4netns-binary=BIN`, a state directory the test user owns,
//! a wait for rootlesskit's REST API socket (inotify, never a sleep), and `rootlessctl`
//! calls on that socket. rootlesskit itself starts the binary as
//! `BIN --mtu 65520 -r 3 [--enable-sandbox] [--enable-seccomp] PID tap0` on the tap it
//! created (research/anchors-features.md §2.1). Called by `tests/tests/dropin_rootlesskit.rs`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

use crate::api_client::user_dir;
use crate::child::{run, Outcome, Running};
use crate::dropin::{require_tools, Slirp4netns};
use crate::sandbox::{argv, command, Harness};

/// rootlesskit from Debian's `rootlesskit` package.
pub const ROOTLESSKIT: &str = "/usr/bin/rootlesskit";
/// Its API client, from the same package.
pub const ROOTLESSCTL: &str = "/usr/bin/rootlessctl";

/// The MTU rootlesskit's documentation and Docker rootless use (slirp4netns's recommended one).
pub const MTU: &str = "65520";

/// rootlesskit's REST API socket in its state directory (pkg/parent StateFileAPISock).
const API_SOCK: &str = "api.sock";

/// `rootlessctl` calls refused this often in a row fail the test: the socket file appears at
/// bind(2), a few instructions before Go's net.Listen calls listen(2).
const REFUSED_ATTEMPTS: u32 = 3;

/// One rootlesskit run: the process and its state directory.
pub struct RootlessKit {
    run: Running,
    state: PathBuf,
}

impl RootlessKit {
    /// Starts `rootlesskit FLAGS... --net=slirp4netns --slirp4netns-binary=BIN --mtu=65520
    /// --port-driver=DRIVER -- CHILD...` as the test user. `flags` adds options such as
    /// `--slirp4netns-sandbox=true`.
    pub fn start(
        h: &Harness,
        bin: &Slirp4netns,
        driver: &str,
        flags: &[&str],
        child: &[String],
    ) -> RootlessKit {
        require_tools(&[
            (ROOTLESSKIT, "rootlesskit"),
            (ROOTLESSCTL, "rootlesskit"),
            ("/usr/bin/newuidmap", "uidmap"),
        ]);
        let state = user_dir(h.dir(), "rootlesskit-state", h.user());
        let state_flag = format!("--state-dir={}", state.display());
        let binary_flag = format!("--slirp4netns-binary={}", bin.path());
        let driver_flag = format!("--port-driver={driver}");
        let mtu_flag = format!("--mtu={MTU}");
        let mut cmd = argv(&[
            ROOTLESSKIT,
            &state_flag,
            "--net=slirp4netns",
            &binary_flag,
            &mtu_flag,
            &driver_flag,
        ]);
        cmd.extend(argv(flags));
        cmd.push("--".to_owned());
        cmd.extend(child.iter().cloned());
        let what = format!(
            "rootlesskit {driver_flag} {} (as {})",
            flags.join(" "),
            h.user().name
        );
        let run = Running::spawn(what, &mut h.as_user(&cmd));
        RootlessKit { run, state }
    }

    /// The running rootlesskit (its stdout carries the child's).
    pub fn running(&mut self) -> &mut Running {
        &mut self.run
    }

    /// Its API socket's path.
    pub fn api_socket(&self) -> PathBuf {
        self.state.join(API_SOCK)
    }

    /// Waits until rootlesskit has created its API socket; panics with its output on timeout.
    pub fn wait_api(&self, timeout: Duration) {
        if let Err(why) = wait_created(&self.state, OsStr::new(API_SOCK), timeout) {
            panic!(
                "rootlesskit did not create {}: {why}\n{}",
                self.api_socket().display(),
                self.run.output_so_far()
            );
        }
    }

    /// `rootlessctl --socket=API ARGS...` as the test user.
    pub fn ctl(&self, h: &Harness, args: &[&str], timeout: Duration) -> Outcome {
        let socket = format!("--socket={}", self.api_socket().display());
        let mut cmd = argv(&[ROOTLESSCTL, &socket]);
        cmd.extend(argv(args));
        let mut last = None;
        for _ in 0..REFUSED_ATTEMPTS {
            let out = run(
                format!("rootlessctl {}", args.join(" ")),
                &mut command(&h.as_user_argv(&cmd)),
                timeout,
            );
            if out.status.success() || !out.stderr.contains("connection refused") {
                return out;
            }
            last = Some(out);
        }
        last.expect("REFUSED_ATTEMPTS is at least 1")
    }

    /// Closes the child's stdin and waits for rootlesskit to exit.
    pub fn finish(mut self, timeout: Duration) -> Outcome {
        self.run.close_stdin();
        self.run.wait(timeout)
    }
}

/// Waits until `dir/name` exists, through inotify (IN_CREATE, IN_MOVED_TO on `dir`).
pub fn wait_created(dir: &Path, name: &OsStr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .map_err(|e| format!("inotify_init: {e}"))?;
    inotify
        .add_watch(
            dir,
            AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_DELETE_SELF,
        )
        .map_err(|e| format!("inotify_add_watch {}: {e}", dir.display()))?;
    // Watching first, then looking, so that a creation in between is not missed.
    if dir.join(name).exists() {
        return Ok(());
    }
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("not created within {timeout:?}"));
        }
        let ts = Timespec::try_from(left).expect("timeouts here are far below i64 seconds");
        let mut fds = [PollFd::new(&inotify, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(format!("poll on inotify: {e}")),
        }
        let events = match inotify.read_events() {
            Ok(events) => events,
            Err(nix::errno::Errno::EAGAIN) => continue,
            Err(e) => return Err(format!("read inotify events: {e}")),
        };
        for event in events {
            if event.mask.contains(AddWatchFlags::IN_DELETE_SELF) {
                return Err(format!("{} was removed", dir.display()));
            }
            if event.name.as_deref() == Some(name) {
                return Ok(());
            }
        }
    }
}
