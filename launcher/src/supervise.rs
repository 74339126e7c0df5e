//! Waiting for a child while forwarding signals to it: the loop shared by the launcher's
//! parent, the relay process, the monitor and the pid-1 init.
//! Expects the supervised signals (`sys::process::supervised_set`) to be blocked already; reads
//! them from a signalfd. Forwards each to the child unless it came from the kernel (si_code
//! SI_KERNEL): the terminal sends SIGINT/SIGQUIT/SIGWINCH/... to the whole foreground process
//! group, so the child already has it and forwarding would deliver it twice.
//! As pid 1 (`reap_all`) it also reaps every orphan that lands on it.

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::sys::process::supervised_set;

/// How the supervised child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// exit(N).
    Exited(i32),
    /// Killed by this signal.
    Signaled(Signal),
}

impl Status {
    /// The shell's view: N, or 128 + signal number.
    pub fn code(self) -> i32 {
        match self {
            Status::Exited(n) => n,
            Status::Signaled(s) => 128 + s as i32,
        }
    }
}

/// `si_code` of signals the kernel itself sent (tty, pdeathsig of a kernel path): <asm/siginfo.h>.
const SI_KERNEL: i32 = 0x80;

/// A blocking reader of the supervised signals.
pub struct Signals(SignalFd);

impl Signals {
    /// Opens a signalfd for the supervised set (which must already be blocked).
    pub fn open() -> anyhow::Result<Signals> {
        Signals::open_with(&[])
    }

    /// Opens a signalfd for the supervised set plus `extra` (all blocked already).
    pub fn open_with(extra: &[Signal]) -> anyhow::Result<Signals> {
        let mut set = supervised_set();
        for s in extra {
            set.add(*s);
        }
        SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)
            .map(Signals)
            .context("cannot open a signalfd")
    }

    /// Next signal with its si_code.
    pub fn next(&self) -> anyhow::Result<(Signal, i32)> {
        loop {
            match self.0.read_signal() {
                Ok(Some(info)) => {
                    let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                        continue;
                    };
                    return Ok((sig, info.ssi_code));
                }
                Ok(None) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("cannot read the signalfd"),
            }
        }
    }
}

/// Whether a received signal should be passed on to the child.
pub fn should_forward(sig: Signal, si_code: i32) -> bool {
    sig != Signal::SIGCHLD && si_code != SI_KERNEL
}

fn to_status(ws: WaitStatus) -> Option<(Pid, Status)> {
    match ws {
        WaitStatus::Exited(pid, code) => Some((pid, Status::Exited(code))),
        WaitStatus::Signaled(pid, sig, _) => Some((pid, Status::Signaled(sig))),
        _ => None,
    }
}

/// Reaps what has exited: only `child`, or every child when `reap_all` (pid 1).
/// Returns the child's status once it has exited.
pub fn reap(child: Pid, reap_all: bool) -> anyhow::Result<Option<Status>> {
    let target = if reap_all { Pid::from_raw(-1) } else { child };
    let mut result = None;
    loop {
        match waitpid(target, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return Ok(result),
            Ok(ws) => {
                if let Some((pid, st)) = to_status(ws) {
                    if pid == child {
                        result = Some(st);
                        if !reap_all {
                            return Ok(result);
                        }
                    } else {
                        tracing::debug!(pid = pid.as_raw(), status = ?st, "reaped orphan");
                    }
                }
            }
            Err(nix::errno::Errno::ECHILD) => return Ok(result),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("waitpid"),
        }
    }
}

/// Forwards signals to `child` until it exits; returns its status.
pub fn supervise(signals: &Signals, child: Pid, reap_all: bool) -> anyhow::Result<Status> {
    supervise_until(signals, child, reap_all, &mut |_| {})
}

/// As `supervise`, calling `seen` with every signal before it is forwarded.
pub fn supervise_until(
    signals: &Signals,
    child: Pid,
    reap_all: bool,
    seen: &mut dyn FnMut(Signal),
) -> anyhow::Result<Status> {
    let judge = &mut |sig| {
        seen(sig);
        Verdict::Forward
    };
    supervise_while(signals, child, reap_all, judge)?
        .context("supervision stopped although every signal was forwarded")
}

/// What `supervise_while` does with a signal other than SIGCHLD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Pass it on to the child (unless the kernel sent it to the whole group).
    Forward,
    /// Drop it.
    Ignore,
    /// Stop supervising and return `None`, leaving the child running.
    Stop,
}

/// Forwards signals to `child` as `judge` decides until it exits (`Some(status)`) or `judge`
/// says stop (`None`).
pub fn supervise_while(
    signals: &Signals,
    child: Pid,
    reap_all: bool,
    judge: &mut dyn FnMut(Signal) -> Verdict,
) -> anyhow::Result<Option<Status>> {
    // The child may have exited before the signalfd existed; its SIGCHLD is then pending and
    // the first read returns it, but check once anyway.
    if let Some(st) = reap(child, reap_all)? {
        return Ok(Some(st));
    }
    loop {
        let (sig, code) = signals.next()?;
        if sig == Signal::SIGCHLD {
            if let Some(st) = reap(child, reap_all)? {
                return Ok(Some(st));
            }
            continue;
        }
        match judge(sig) {
            Verdict::Stop => return Ok(None),
            Verdict::Ignore => continue,
            Verdict::Forward => {}
        }
        if should_forward(sig, code) {
            tracing::debug!(signal = %sig, child = child.as_raw(), "forwarding");
            // ESRCH: it is exiting; its SIGCHLD follows.
            let _ = kill(child, sig);
        } else {
            tracing::debug!(signal = %sig, "not forwarded: the kernel sent it to the group");
        }
    }
}

/// SIGKILL to `pid`, then reaps it (errors ignored: it may be gone already).
pub fn kill_and_reap(pid: Pid) {
    let _ = kill(pid, Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_sent_signals_are_not_forwarded_twice() {
        assert!(!should_forward(Signal::SIGINT, SI_KERNEL));
        assert!(should_forward(Signal::SIGINT, 0)); // SI_USER: kill(1) from someone
        assert!(should_forward(Signal::SIGTERM, -6)); // SI_TKILL
        assert!(!should_forward(Signal::SIGCHLD, 0));
    }

    #[test]
    fn status_codes_follow_the_shell() {
        assert_eq!(Status::Exited(42).code(), 42);
        assert_eq!(Status::Signaled(Signal::SIGTERM).code(), 143);
        assert_eq!(Status::Signaled(Signal::SIGKILL).code(), 137);
    }
}
