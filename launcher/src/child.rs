//! The sandbox's first process, from the fork to the command: tie to the launcher, enter the
//! namespaces (new: unshare, id maps, tap0 and its configuration; or joined), hand the tap over
//! with READY, wait for "go", then start the command in a pid namespace (`pidns`: the program
//! or, with `--init`, our init is its pid 1) or under the monitor (`monitor`).
//! Called by `launch::fork_child` in the forked child; never returns there (exits with the
//! command's status). The order of kernel calls inside each phase is `sandbox`'s and
//! `fsview`'s; the channel protocol is `handshake`'s. Every kernel call whose order matters
//! goes through `Kernel` (tests: `child/tests.rs`); only `main` names `sys::Linux`. Each step
//! is a small function taking what it uses, so it can move to a library as it is.

use std::os::fd::{AsFd, OwnedFd};

use anyhow::Context;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};

use crate::config::{NetConfig, RunConfig};
use crate::handshake;
use crate::kernel::{Kernel, TapConfig};
use crate::monitor;
use crate::pidns;
use crate::plan::Plan;
use crate::sandbox::{self, JoinPlan, NsPlan};
use crate::sys::process::ProcDir;
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
pub fn run<K: Kernel>(
    k: &mut K,
    cfg: &RunConfig,
    plan: &Plan,
    chan: Channel,
    parent: i32,
    old_mask: &SigSet,
) -> anyhow::Result<i32> {
    sandbox::tie_to_parent(k, Signal::SIGKILL, parent)?;
    // The monitor lists processes through the caller's /proc, whatever the command's mount
    // namespace and root become.
    let in_pid_ns = plan.pid1.is_some() || plan.relay;
    let proc = if in_pid_ns {
        None
    } else {
        Some(ProcDir::open().context("cannot open /proc")?)
    };
    if let Some(ns) = &plan.ns {
        enter_new(k, ns, &tap_config(&cfg.net), &chan, parent)?;
    } else if let Some(j) = &plan.join {
        enter_joined(k, j, plan.join_unshare, &chan, parent)?;
    }
    handshake::wait_for_go(k, &chan)?;
    drop(chan);
    if cfg.detach {
        k.stdio_to_devnull()
            .context("--detach: cannot redirect stdio")?;
    }

    if in_pid_ns {
        return pidns::run(k, plan, &cfg.argv, parent, old_mask);
    }
    let proc = proc.context("no /proc handle for the monitor")?;
    monitor::run(k, plan, &cfg.argv, proc, parent, old_mask)
}

/// tap0's configuration from the network options.
pub fn tap_config(net: &NetConfig) -> TapConfig {
    TapConfig {
        name: if net.kernel {
            crate::kernelnet::links::SANDBOX_IFNAME.into()
        } else {
            netstack::config::TAP_NAME.into()
        },
        mtu: net.mtu,
        addr: net.addr,
        ipv6: net.ipv6,
        mac: net.mac,
        sandbox: net
            .leased
            .unwrap_or_else(|| netstack::netconf::SandboxAddrs::of(&net.addr)),
        veth: net.kernel,
    }
}

/// A new sandbox: unshares and gets the id maps written (asking the parent over `chan` when
/// the helpers must write them), then creates and configures the tap and hands it over with
/// READY.
pub fn enter_new<K: Kernel>(
    k: &mut K,
    ns: &NsPlan,
    tap: &TapConfig,
    chan: &Channel,
    parent: i32,
) -> anyhow::Result<()> {
    sandbox::enter(k, ns, parent, &mut |k| handshake::request_maps(k, chan))?;
    if tap.veth {
        handshake::request_veth(k, chan)?;
        k.configure_tap(tap)
            .context("cannot configure the sandbox's network")?;
        handshake::send_ready(k, chan, None).context("setup channel")?;
        return Ok(());
    }
    let tap = create_tap(k, tap)?;
    handshake::send_ready(k, chan, Some(tap.as_fd()))
        .context("cannot hand the tap device to the launcher")?;
    Ok(())
}

/// Creates the tap device in our network namespace, configures it (and loopback) and marks it
/// persistent; returns its fd.
pub fn create_tap<K: Kernel>(k: &mut K, c: &TapConfig) -> anyhow::Result<OwnedFd> {
    let tap = k
        .open_tap(&c.name)
        .context("cannot create the sandbox's tap device")?;
    k.configure_tap(c)
        .context("cannot configure the sandbox's network")?;
    if let Err(e) = k.persist_tap(tap.as_fd()) {
        // Only the launcher's exit gets slower; the device still dies with the namespace.
        tracing::debug!(error = %e, "TUNSETPERSIST failed");
    }
    Ok(tap)
}

/// An existing sandbox: enters its namespaces, unshares the new ones on top, then READY.
pub fn enter_joined<K: Kernel>(
    k: &mut K,
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
    handshake::send_ready(k, chan, None).context("setup channel")?;
    Ok(())
}

#[cfg(test)]
mod tests;
