//! The monitor: without `--pid`, the sandbox's first process forks the command and stays
//! behind as its supervisor, so the command's whole process tree dies with the launcher.
//! It is PR_SET_CHILD_SUBREAPER (orphans of the command reparent to it, not to the host's
//! init) and its parent-death signal is a catchable one (`DEATH_SIGNAL`). While the launcher
//! lives it forwards signals and reaps like the pid-1 init (`supervise`); when the launcher
//! dies it sends the command the `--kill-child` signal, waits for the command if that signal
//! is catchable, then SIGKILLs every remaining descendant through pidfds (`descendants`: found
//! in a /proc opened before the sandbox changed root, each proven before it is signalled, so
//! a recycled pid is never hit), and repeats until it has no child left. `prepare` and
//! `watch_launcher` also serve the pid-namespace relay (`pidns`), which needs no subreaper.
//! Called by `child` in the sandbox's first process (`run`, which forks the command: the
//! command's side gets its filesystem view from `fsview` and execs through `exec`); the
//! monitor itself does no namespace or filesystem setup.

use std::ffi::OsString;

use anyhow::Context;
use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use crate::descendants;
use crate::exec;
use crate::fsview;
use crate::kernel::Kernel;
use crate::plan::Plan;
use crate::sandbox;
use crate::supervise::{self, Signals, Status, Verdict};
use crate::sys::process::{self, Forked, ProcDir};

/// The monitor's parent-death signal. Not in the forwarded set, rarely sent by anyone else,
/// and checked against getppid() before it is believed.
pub const DEATH_SIGNAL: Signal = Signal::SIGPWR;

/// Prepares the calling process to watch the launcher `parent`: `DEATH_SIGNAL` blocked and
/// set as its parent-death signal (checked against `parent`), a child subreaper if asked
/// (the monitor), and a signalfd reading both that and the supervised set. Call before
/// forking the command.
pub fn prepare<K: Kernel>(k: &mut K, parent: i32, subreaper: bool) -> anyhow::Result<Signals> {
    k.block_signal(DEATH_SIGNAL)
        .context("cannot block the death signal")?;
    if subreaper {
        k.set_child_subreaper()
            .context("cannot become a child subreaper")?;
    }
    sandbox::tie_to_parent(k, DEATH_SIGNAL, parent)?;
    Signals::open_with(&[DEATH_SIGNAL])
}

/// Supervises `child` (reaping every orphan too if `reap_all`) until it exits (its status) or
/// the launcher `parent` dies (`None`, the child still running).
pub fn watch_launcher(
    signals: &Signals,
    child: Pid,
    parent: i32,
    reap_all: bool,
) -> anyhow::Result<Option<Status>> {
    let judge = &mut |sig| {
        if sig != DEATH_SIGNAL {
            Verdict::Forward
        } else if nix::unistd::getppid().as_raw() != parent {
            Verdict::Stop
        } else {
            // Someone else sent it; the launcher is still there.
            Verdict::Ignore
        }
    };
    supervise::supervise_while(signals, child, reap_all, judge)
}

/// `kill_child` to `child`; if it is catchable, waits for `child` to act on it (reaping
/// whatever else exits meanwhile). Returns once `child` is gone or we have no child left.
pub fn signal_and_wait(child: Pid, kill_child: Signal) {
    let _ = kill(child, kill_child);
    if kill_child == Signal::SIGKILL {
        return;
    }
    // As with util-linux unshare, a command that ignores the signal keeps running; here
    // the rest of the sandbox waits with it.
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(ws) if ws.pid() == Some(child) => return,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Supervises `cmd` until it exits (its status) or the launcher `parent` dies (then the whole
/// tree is brought down and the result is `kill_child`, which nobody is left to read).
pub fn watch(
    signals: &Signals,
    cmd: Pid,
    parent: i32,
    kill_child: Signal,
    proc: &ProcDir,
) -> anyhow::Result<Status> {
    if let Some(st) = watch_launcher(signals, cmd, parent, true)? {
        return Ok(st);
    }
    tracing::debug!(signal = %kill_child, "launcher gone; bringing the sandbox down");
    bring_down(cmd, kill_child, proc);
    Ok(Status::Signaled(kill_child))
}

/// `kill_child` to the command (waiting for it if that is catchable), then SIGKILL to every
/// descendant, round after round, until none is left.
fn bring_down(cmd: Pid, kill_child: Signal, proc: &ProcDir) {
    signal_and_wait(cmd, kill_child);
    let me = nix::unistd::getpid().as_raw();
    let system = descendants::System(proc);
    loop {
        // Whatever a round could not prove is reparented to us and found next time.
        descendants::kill_round(&system, me);
        match waitpid(Pid::from_raw(-1), None) {
            Ok(_) | Err(Errno::EINTR) => {}
            // ECHILD: no child, so (being the subreaper) no descendant either.
            Err(_) => return,
        }
    }
}

/// No pid namespace of our own: becomes the monitor and forks the command, which gets its
/// filesystem view and execs `argv`; returns (or re-raises) the command's status.
pub fn run<K: Kernel>(
    k: &mut K,
    plan: &Plan,
    argv: &[OsString],
    proc: ProcDir,
    parent: i32,
    old_mask: &SigSet,
) -> anyhow::Result<i32> {
    let signals = prepare(k, parent, true)?;
    let me = k.pid();
    match k.fork().context("cannot fork")? {
        Forked::Parent(cmd) => {
            let st = watch(&signals, cmd, parent, plan.creds.kill_child, &proc)?;
            if let Status::Signaled(sig) = st {
                process::reraise(sig);
            }
            Ok(st.code())
        }
        Forked::Child => {
            drop(signals);
            drop(proc);
            fsview::prepare_fs(k, &plan.fs)?;
            exec::command(k, argv, &plan.creds, me, old_mask)
        }
    }
}
