//! The stack process: `rootless-run`'s userspace network stack in a process of its own, forked
//! by `network::start` after the launcher's last fork and confined before it reads a byte the
//! sandbox sent, so that a bug reachable from the sandbox gains an attacker nothing on the host
//! (issue 14). Its life, in order:
//! ```text
//! die with the launcher (PR_SET_PDEATHSIG SIGKILL); name itself rr-netstack
//! raise its RLIMIT_NOFILE soft limit to the hard limit (`netstack::fd_budget`: the flow
//!   table is bounded by the fds this leaves; the sandbox's command keeps the user's limits)
//! close every inherited fd but its own: tap, --publish sockets, API listener, stop pipe,
//!   --log-egress file, stdio (stdio to /dev/null with --detach)
//! a user namespace of its own (capabilities there only, to drop them; its network namespace,
//!   and so its host sockets, stay the host's)
//! sandbox: no capabilities (bounding set included), no_new_privs, and no filesystem: a
//!   Landlock domain denying every access (an empty read-only root where there is no Landlock)
//! build the stack (event loop, DNS upstream sockets, DNS-over-TCP relay thread), publish
//!   the --publish sockets, prepare the API server (its stop pipe)
//! seccomp allowlist on every thread (rr_ns::confine, also rr-slirp4netns's)
//! start the API thread; run until the launcher's stop byte, then linger (LINGER)
//! egress summary on stderr; exit 0 (1 on a stack error, logged)
//! ```
//! What it may do after that, and why, is in docs/architecture.md ("Confinement"). The
//! launcher supervises it (`network`): exit status, signals (the supervised ones stay blocked
//! here, inherited, so only the launcher acts on them), the sandbox killed if it dies first.
//! Never returns to the launcher's code: `main` ends in exit, so the launcher's objects it
//! inherited (whose fds it closed) are never dropped here.

use std::ffi::CStr;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use anyhow::Context;
use netstack::api::{ArmedApi, BoundApi};
use netstack::forward::{Bound, Listener};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rr_ns::confine::{Filesystem, Helper, Userns, Violation};

use crate::sys::process;

/// How long after the command exits we keep carrying its connections' last bytes. Flows the
/// sandbox closed end sooner; flows still open then are reset toward the host.
const LINGER: Duration = Duration::from_secs(1);

/// The stack process's name in `ps -e` and /proc/PID/comm (at most TASK_COMM_LEN - 1 = 15
/// bytes; its command line stays the launcher's).
pub const NAME: &CStr = c"rr-netstack";

/// Debug builds only: with this variable set, the confined stack calls execve(2), which its
/// allowlist forbids, so the integration test `confine::a_forbidden_syscall_kills_the_helper`
/// sees it killed by SIGSYS and reported. Absent from release builds.
#[cfg(debug_assertions)]
pub const TRY_EXECVE_VAR: &str = "RR_TEST_HELPER_EXECVE";
/// Debug builds only: the stack opens the file this variable names once its filesystem is
/// gone (before seccomp, which would answer ENOENT itself) and logs the outcome, so the
/// integration test sees the sandbox refuse it. Absent from release builds.
#[cfg(debug_assertions)]
pub const TRY_OPEN_VAR: &str = "RR_TEST_HELPER_OPEN";

/// What the stack process gets at the fork: its copies of what the launcher set up.
pub struct Setup {
    /// The stack's configuration (its egress enforcer, with the `--log-egress` file, inside).
    pub cfg: netstack::StackConfig,
    /// The bound `--publish` sockets, in command-line order, with the value each came from.
    pub listeners: Vec<(String, Listener)>,
    /// The bound `--api-socket`; the launcher keeps the file and removes it.
    pub api: Option<BoundApi>,
    /// The `--log-egress` file's descriptor, kept open.
    pub audit_fd: Option<RawFd>,
    /// The sandbox's tap device.
    pub tap: OwnedFd,
    /// Readable once the launcher wants the stack to stop (its command exited).
    pub stop: OwnedFd,
    /// The launcher, whose death kills us.
    pub launcher: Pid,
    /// `--detach`: the launcher is about to point its stdio at /dev/null; do the same.
    pub detached: bool,
}

/// The stack process's whole life (see the module header); exits 0 after a clean stop, 1 on
/// any error (logged first).
pub fn main(setup: Setup) -> ! {
    let code = match run(setup) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "network stack failed");
            1
        }
    };
    std::process::exit(code)
}

fn run(s: Setup) -> anyhow::Result<()> {
    let Setup {
        cfg,
        listeners,
        api,
        audit_fd,
        tap,
        stop,
        launcher,
        detached,
    } = s;
    // Never dropped in this process: the launcher's copy of the guard removes the file.
    let api = ManuallyDrop::new(api);
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("cannot set PR_SET_PDEATHSIG")?;
    if nix::unistd::getppid() != launcher {
        anyhow::bail!("the launcher exited before its network stack started");
    }
    if let Err(error) = nix::sys::prctl::set_name(NAME) {
        tracing::debug!(%error, "cannot name the stack process");
    }
    // Before the allowlist, which has no setrlimit; the sandbox keeps the user's limits.
    netstack::fd_budget::raise_nofile_logged();
    let mut listeners = listeners;
    let mut keep = vec![tap.as_raw_fd(), stop.as_raw_fd()];
    keep.extend(listeners.iter_mut().map(|(_, l)| listener_fd(l)));
    keep.extend(api.iter().map(|a| a.as_fd().as_raw_fd()));
    keep.extend(audit_fd);
    process::close_fds_except(&keep);
    if detached {
        process::stdio_to_devnull().context("cannot point stdio at /dev/null (--detach)")?;
    }

    let helper = Helper {
        sandbox: true,
        seccomp: true,
        keep_net_bind_service: false,
        filesystem: Filesystem::LandlockOrEmptyRoot,
        violation: Violation::KillProcess,
    };
    helper
        .before_threads(Userns::Own, &[])
        .context("cannot confine the network stack")?;
    try_open_for_tests();
    let addr = cfg.addr;
    let policy = cfg.policy.clone();
    let (control, commands) =
        netstack::command::channel().context("cannot create the stack's command channel")?;
    let mut stack = netstack::Stack::new(tap, cfg, commands)?;
    for (value, l) in listeners {
        let spec = l.spec();
        let id = stack.publish(l)?;
        tracing::debug!(id, publish = %value, proto = spec.proto.name(), host = %spec.host,
                        guest = %spec.guest, "forwarding");
    }
    // The API server is never dropped here either: the process ends with it (exit), and
    // only the launcher may remove the socket file.
    let armed = ManuallyDrop::new(
        ManuallyDrop::into_inner(api)
            .map(|b| b.arm(control, addr))
            .transpose()
            .context("--api-socket")?,
    );
    helper
        .after_threads()
        .context("cannot confine the network stack")?;
    try_forbidden_for_tests();
    let _api = ManuallyDrop::new(
        ManuallyDrop::into_inner(armed)
            .map(ArmedApi::start)
            .transpose()
            .context("--api-socket")?,
    );
    stack.run_until(stop.as_fd(), LINGER)?;
    if let Some(policy) = &policy {
        // Issue 12 asks for this line on stderr whenever a policy is in force, whatever
        // RUST_LOG says: it is the run's report, like the final error in `main`.
        eprintln!("{}", crate::egress::summary(policy));
    }
    Ok(())
}

/// A `--publish` socket's descriptor, to keep open.
fn listener_fd(l: &mut Listener) -> RawFd {
    match l.bound_mut() {
        Bound::Tcp(t) => t.as_raw_fd(),
        Bound::Udp(u) => u.as_raw_fd(),
    }
}

/// `TRY_EXECVE_VAR` (debug builds): a forbidden call from the confined stack.
fn try_forbidden_for_tests() {
    #[cfg(debug_assertions)]
    if std::env::var_os(TRY_EXECVE_VAR).is_some() {
        match process::exec(&["/bin/true".into()]) {
            Ok(never) => match never {},
            Err(error) => {
                tracing::error!(%error, "{TRY_EXECVE_VAR}: execve was not stopped by the allowlist")
            }
        }
    }
}

/// `TRY_OPEN_VAR` (debug builds): a file opened once the filesystem is gone.
fn try_open_for_tests() {
    #[cfg(debug_assertions)]
    if let Some(path) = std::env::var_os(TRY_OPEN_VAR) {
        let path = std::path::PathBuf::from(path);
        match std::fs::File::open(&path) {
            Ok(_) => tracing::warn!(path = %path.display(), "{TRY_OPEN_VAR}: opened"),
            Err(error) => tracing::warn!(path = %path.display(), %error, "{TRY_OPEN_VAR}: refused"),
        }
    }
}
