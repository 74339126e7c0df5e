//! A new or joined pid namespace: the sandbox's first process forks once more, so that the rest
//! runs inside it, and stays outside relaying signals; inside, the first process becomes the
//! init (`--pid`: mounts proc from inside, forks the command, reaps) or execs the command.
//! Called by `child` after "go". Does no namespace setup of its own; the side inside goes
//! through `Kernel`, the relaying and reaping side (never faked) through `supervise`.

use std::ffi::OsString;

use anyhow::Context;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

use crate::exec;
use crate::fsview;
use crate::kernel::Kernel;
use crate::plan::Plan;
use crate::sandbox::ParentGone;
use crate::supervise::{self, Signals, Status};
use crate::sys::process::{self, Forked, Lifeline};

/// A new or joined pid namespace: forks once more, so that the rest runs inside it, and
/// stays outside relaying signals. Inside, becomes the init (`--pid`) or execs the command.
pub fn run<K: Kernel>(
    k: &mut K,
    plan: &Plan,
    argv: &[OsString],
    old_mask: &SigSet,
) -> anyhow::Result<i32> {
    let mut lifeline = Lifeline::new().context("cannot create a pipe")?;
    match k.fork().context("cannot fork")? {
        Forked::Parent(pid) => {
            // Keep our write end open for as long as we live: it is the child's lifeline.
            let _lifeline = lifeline;
            return relay(pid);
        }
        Forked::Child => {
            // Our parent is outside our pid namespace: getppid() says 0, so check the pipe.
            k.set_pdeathsig(Signal::SIGKILL)?;
            if !k.parent_alive(&mut lifeline) {
                return Err(ParentGone.into());
            }
        }
    }
    if plan.init {
        return run_as_init(k, plan, argv, old_mask);
    }
    fsview::prepare_fs(k, &plan.fs)?;
    exec::command(k, argv, &plan.creds, 0, old_mask)
}

/// We are pid 1: mount proc from inside the namespace, then run the command as our child and
/// stay as its init.
fn run_as_init<K: Kernel>(
    k: &mut K,
    plan: &Plan,
    argv: &[OsString],
    old_mask: &SigSet,
) -> anyhow::Result<i32> {
    fsview::prepare_fs(k, &plan.fs)?;
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

/// Forwards signals to `child` and exits as it did (re-raising a fatal signal).
fn relay(child: Pid) -> anyhow::Result<i32> {
    let signals = Signals::open()?;
    let st = supervise::supervise(&signals, child, false)?;
    if let Status::Signaled(sig) = st {
        process::reraise(sig);
    }
    Ok(st.code())
}
