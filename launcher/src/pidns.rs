//! A new or joined pid namespace: the sandbox's first process forks once more, so that the rest
//! runs inside it, and stays outside as the relay; inside, the forked process either execs the
//! program, which so is pid 1 of a new namespace (`--pid`, as `unshare --pid --fork`), or
//! becomes our small init in front of it (`--pid --init`, as `docker run --init`: mounts proc
//! from inside, forks the program, forwards signals, reaps every orphan, exits with the
//! program's status). In a joined namespace the forked process execs the program.
//!
//! Signals and death. The relay forwards the supervised signals to the process it forked. A
//! pid 1 receives from outside its namespace only the signals it has a handler for (and
//! SIGKILL): a program that is pid 1 and installs no SIGTERM handler ignores a forwarded
//! SIGTERM, as under unshare; our init blocks and reads them, so `--init` gives the default
//! behaviour back. The relay's death signal is the monitor's catchable `DEATH_SIGNAL`: when
//! the launcher dies it sends `--kill-child` (default SIGKILL) to the process it forked, waits
//! for it if that signal is catchable, and exits; the death of pid 1 takes the whole new
//! namespace with it. Pid 1 also carries `--kill-child` as its own parent-death signal, for
//! the case where the relay itself is killed.
//!
//! Called by `child` after "go". Does no namespace setup of its own; the side inside goes
//! through `Kernel`, the relaying and reaping side (never faked) through `supervise` and
//! `monitor`.

use std::ffi::OsString;

use anyhow::Context;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

use crate::config::RunConfig;
use crate::exec;
use crate::fsview;
use crate::kernel::Kernel;
use crate::monitor;
use crate::plan::Plan;
use crate::sandbox::ParentGone;
use crate::supervise::{self, Signals, Status};
use crate::sys::process::{self, Forked, Lifeline};

/// Who is pid 1 of a new pid namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidOne {
    /// The program itself (`--pid`).
    Program,
    /// Our init, with the program as its child (`--pid --init`).
    Init,
}

impl PidOne {
    /// The new pid namespace `cfg` asks for, if any, and its pid 1.
    pub fn of(cfg: &RunConfig) -> Option<PidOne> {
        match (cfg.ns.pid, cfg.init) {
            (false, _) => None,
            (true, false) => Some(PidOne::Program),
            (true, true) => Some(PidOne::Init),
        }
    }
}

/// A new or joined pid namespace: forks once more, so that the rest runs inside it, and
/// stays outside relaying signals. Inside, execs the program or becomes its init.
pub fn run<K: Kernel>(
    k: &mut K,
    plan: &Plan,
    argv: &[OsString],
    parent: i32,
    old_mask: &SigSet,
) -> anyhow::Result<i32> {
    let signals = monitor::prepare(k, parent, false)?;
    let mut lifeline = Lifeline::new().context("cannot create a pipe")?;
    match k.fork().context("cannot fork")? {
        Forked::Parent(pid) => {
            // Keep our write end open for as long as we live: it is the child's lifeline.
            let _lifeline = lifeline;
            return relay(&signals, pid, parent, plan.creds.kill_child);
        }
        Forked::Child => {
            drop(signals);
            // Our parent is outside our pid namespace: getppid() says 0, so check the pipe.
            k.set_pdeathsig(Signal::SIGKILL)?;
            if !k.parent_alive(&mut lifeline) {
                return Err(ParentGone.into());
            }
        }
    }
    fsview::prepare_fs(k, &plan.fs)?;
    if plan.pid1 == Some(PidOne::Init) {
        return run_as_init(k, plan, argv, old_mask);
    }
    exec::command(k, argv, &plan.creds, 0, old_mask)
}

/// We are our init, pid 1: run the command as our child and stay as its init.
fn run_as_init<K: Kernel>(
    k: &mut K,
    plan: &Plan,
    argv: &[OsString],
    old_mask: &SigSet,
) -> anyhow::Result<i32> {
    let me = k.pid();
    let signals = Signals::open()?;
    match k.fork().context("cannot fork")? {
        Forked::Parent(cmd) => {
            let st = supervise::supervise(&signals, cmd, true)?;
            // pid 1 cannot die of its own signal; report it as the shell would.
            Ok(st.code())
        }
        Forked::Child => {
            drop(signals);
            exec::command(k, argv, &plan.creds, me, old_mask)
        }
    }
}

/// Forwards signals to `child` and exits as it did (re-raising a fatal signal); if the
/// launcher `parent` dies first, hands `child` the `kill_child` signal and goes with it.
fn relay(signals: &Signals, child: Pid, parent: i32, kill_child: Signal) -> anyhow::Result<i32> {
    let Some(st) = monitor::watch_launcher(signals, child, parent, false)? else {
        tracing::debug!(signal = %kill_child, "launcher gone; ending the pid namespace");
        monitor::signal_and_wait(child, kill_child);
        return Ok(Status::Signaled(kill_child).code());
    };
    if let Status::Signaled(sig) = st {
        process::reraise(sig);
    }
    Ok(st.code())
}
