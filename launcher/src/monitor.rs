//! The monitor: without `--pid`, the sandbox's first process forks the command and stays
//! behind as its supervisor, so the command's whole process tree dies with the launcher.
//! It is PR_SET_CHILD_SUBREAPER (orphans of the command reparent to it, not to the host's
//! init) and its parent-death signal is a catchable one (`DEATH_SIGNAL`). While the launcher
//! lives it forwards signals and reaps like the pid-1 init (`supervise`); when the launcher
//! dies it sends the command the `--kill-child` signal, waits for the command if that signal
//! is catchable, then SIGKILLs every remaining descendant, found through the PPid chains of a
//! /proc opened before the sandbox changed root, and repeats until it has no child left.
//! Called by `child` in the sandbox's first process (`run`, which forks the command: the
//! command's side gets its filesystem view from `fsview` and execs through `exec`); the
//! monitor itself does no namespace or filesystem setup.
//! Limit: a pid listed in one scan may be reused by an unrelated process before it is killed
//! (the window is one /proc scan; the kill needs the same uid or the sandbox's capabilities).

use std::collections::HashMap;
use std::ffi::OsString;

use anyhow::Context;
use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

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

/// Makes the calling process a monitor: subreaper, `DEATH_SIGNAL` blocked and set as its
/// parent-death signal (checked against `parent`), and a signalfd reading both that and the
/// supervised set. Call before forking the command.
pub fn prepare<K: Kernel>(k: &mut K, parent: i32) -> anyhow::Result<Signals> {
    k.block_signal(DEATH_SIGNAL)
        .context("cannot block the death signal")?;
    k.set_child_subreaper()
        .context("cannot become a child subreaper")?;
    sandbox::tie_to_parent(k, DEATH_SIGNAL, parent)?;
    Signals::open_with(&[DEATH_SIGNAL])
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
    if let Some(st) = supervise::supervise_while(signals, cmd, true, judge)? {
        return Ok(st);
    }
    tracing::debug!(signal = %kill_child, "launcher gone; bringing the sandbox down");
    bring_down(cmd, kill_child, proc);
    Ok(Status::Signaled(kill_child))
}

/// `kill_child` to the command; if it is catchable, waits for the command to act on it;
/// then SIGKILL to every descendant until none is left.
fn bring_down(cmd: Pid, kill_child: Signal, proc: &ProcDir) {
    let _ = kill(cmd, kill_child);
    if kill_child != Signal::SIGKILL {
        // As with util-linux unshare, a command that ignores the signal keeps running; here
        // the rest of the sandbox waits with it.
        loop {
            match waitpid(Pid::from_raw(-1), None) {
                Ok(ws) if ws.pid() == Some(cmd) => break,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
    }
    let me = nix::unistd::getpid().as_raw();
    loop {
        // Kill everything found at once, so a subtree cannot keep forking while its parent
        // waits for its turn; whatever a scan missed is reparented to us and found next time.
        let table = proc.stats().unwrap_or_default();
        for pid in descendants(me, &parent_table(&table)) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
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
    let signals = prepare(k, parent)?;
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

/// The PPid field of a /proc/PID/stat line (the field after the state, which follows the
/// last ')': the command name may itself contain ") ").
pub fn parse_ppid(stat: &str) -> Option<i32> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    fields.next()?; // state
    fields.next()?.parse().ok()
}

/// pid -> ppid for every stat line that parses.
fn parent_table(stats: &[(i32, String)]) -> HashMap<i32, i32> {
    stats
        .iter()
        .filter_map(|(pid, s)| parse_ppid(s).map(|pp| (*pid, pp)))
        .collect()
}

/// Every process whose parent chain reaches `root` (not `root` itself).
pub fn descendants(root: i32, parents: &HashMap<i32, i32>) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (&pid, &ppid) in parents {
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            if c != root && !out.contains(&c) {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_is_read_after_the_last_parenthesis() {
        assert_eq!(parse_ppid("42 (sleep) S 7 42 7 0 -1"), Some(7));
        assert_eq!(parse_ppid("43 (a) b) (c) R 9 43 9"), Some(9));
        assert_eq!(parse_ppid("44 (x"), None);
        assert_eq!(parse_ppid("45 (x) S"), None);
    }

    #[test]
    fn descendants_follow_every_level_and_nothing_else() {
        let stats: Vec<(i32, String)> = [
            (1, 0),
            (10, 1), // the monitor
            (11, 10),
            (12, 11),
            (13, 12),
            (14, 10),
            (20, 1), // unrelated
            (21, 20),
        ]
        .iter()
        .map(|(p, pp)| (*p, format!("{p} (sh) S {pp} 1 1 0")))
        .collect();
        let mut d = descendants(10, &parent_table(&stats));
        d.sort();
        assert_eq!(d, vec![11, 12, 13, 14]);
        assert!(descendants(13, &parent_table(&stats)).is_empty());
    }
}
