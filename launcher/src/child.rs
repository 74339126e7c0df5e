//! The sandbox's first process, from the fork to the command: tie to the launcher, enter the
//! namespaces (new: unshare, id maps, tap0 and its configuration; or joined), hand the tap over
//! with READY, wait for "go", then start the command in a pid namespace (`pidns`) or under
//! the monitor (`monitor`).
//! Called by `launch::fork_child` in the forked child; never returns there (exits with the
//! command's status). The order of kernel calls inside each phase is `sandbox`'s and
//! `fsview`'s; the channel protocol is `handshake`'s.

use std::os::fd::AsFd;

use anyhow::{bail, Context};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};

use crate::config::RunConfig;
use crate::handshake::tag;
use crate::kernel::Kernel;
use crate::monitor;
use crate::pidns;
use crate::plan::Plan;
use crate::sandbox::{self, JoinPlan, NsPlan, ParentGone};
use crate::sys::process::{self, ProcDir};
use crate::sys::Linux;
use rr_ns::fdpass::Channel;

/// The child's main: runs `run` and exits with its status, printing a setup error first.
pub fn main(cfg: &RunConfig, plan: &Plan, chan: Channel, parent: i32, old_mask: &SigSet) -> ! {
    let mut k = Linux;
    let code = match run(&mut k, cfg, plan, chan, parent, old_mask) {
        Ok(code) => code,
        Err(e) => crate::report_child_error(&e),
    };
    std::process::exit(code)
}

/// Ties to `parent`, enters the namespaces `plan` names, hands over READY, waits for "go" on
/// `chan`, then starts the command; returns the exit status to leave with.
pub fn run(
    k: &mut Linux,
    cfg: &RunConfig,
    plan: &Plan,
    chan: Channel,
    parent: i32,
    old_mask: &SigSet,
) -> anyhow::Result<i32> {
    sandbox::tie_to_parent(k, Signal::SIGKILL, parent)?;
    // The monitor lists processes through the caller's /proc, whatever the command's mount
    // namespace and root become.
    let proc = if plan.init || plan.relay {
        None
    } else {
        Some(ProcDir::open().context("cannot open /proc")?)
    };
    if let Some(ns) = &plan.ns {
        enter_new(k, cfg, ns, &chan, parent)?;
    } else if let Some(j) = &plan.join {
        enter_joined(k, j, plan.join_unshare, &chan, parent)?;
    }
    match chan.recv() {
        Ok(Some(m)) if m.tag == tag::GO => {}
        _ => return Err(ParentGone.into()),
    }
    drop(chan);
    if cfg.detach {
        process::stdio_to_devnull().context("--detach: cannot redirect stdio")?;
    }

    if plan.init || plan.relay {
        return pidns::run(k, plan, &cfg.argv, old_mask);
    }
    let proc = proc.context("no /proc handle for the monitor")?;
    monitor::run(k, plan, &cfg.argv, proc, parent, old_mask)
}

/// A new sandbox: unshares and gets the id maps written (asking the parent when the helpers
/// must write them), then creates and configures the tap and hands it over with READY.
fn enter_new(
    k: &mut Linux,
    cfg: &RunConfig,
    ns: &NsPlan,
    chan: &Channel,
    parent: i32,
) -> anyhow::Result<()> {
    sandbox::enter(k, ns, parent, &mut || {
        chan.send(tag::MAPS, &[], &[]).context("setup channel")?;
        match chan.recv().context("setup channel")? {
            Some(m) if m.tag == tag::MAPS_DONE => Ok(()),
            Some(m) => bail!("unexpected setup message {:#x}", m.tag),
            None => Err(ParentGone.into()),
        }
    })?;
    let tap = netstack::tap::open(netstack::config::TAP_NAME)
        .context("cannot create the sandbox's tap device")?;
    netstack::netconf::configure(
        netstack::config::TAP_NAME,
        cfg.net.mtu,
        &cfg.net.addr,
        cfg.net.ipv6,
        cfg.net.mac,
    )
    .context("cannot configure the sandbox's network")?;
    if let Err(e) = process::tap_set_persist(tap.as_fd()) {
        // Only the launcher's exit gets slower; the device still dies with the namespace.
        tracing::debug!(error = %e, "TUNSETPERSIST failed");
    }
    chan.send(tag::READY, &[], &[tap.as_fd()])
        .context("cannot hand the tap device to the launcher")?;
    Ok(())
}

/// An existing sandbox: enters its namespaces, unshares the new ones on top, then READY.
fn enter_joined(
    k: &mut Linux,
    join: &JoinPlan,
    unshare: CloneFlags,
    chan: &Channel,
    parent: i32,
) -> anyhow::Result<()> {
    sandbox::join(k, join)?;
    if !unshare.is_empty() {
        k.unshare(unshare).map_err(sandbox::unshare_error)?;
    }
    // Entering a user namespace changes credentials, which clears the death signal.
    sandbox::tie_to_parent(k, Signal::SIGKILL, parent)?;
    chan.send(tag::READY, &[], &[]).context("setup channel")?;
    Ok(())
}
