//! The launcher's own run, start to exit: the sequence of one sandbox run as the parent sees it.
//!
//! ```text
//! launcher (parent, host namespaces)          child (new user+net [+mnt,uts,ipc,pid,cgroup,time])
//!   preflight (sysctls, AppArmor, tun)
//!   read resolv.conf; plan; bind --publish
//!   block signals; socketpair; fork  ------->  drop --publish sockets; pdeathsig; unshare;
//!   ['M': newuidmap/newgidmap PID; 'm'] <----  id maps (or ask: 'M')
//!                                              open tap0; netlink config
//!   receive tap fd  <------ 'R' + SCM_RIGHTS --
//!   [fork holder for --persist]
//!   bind --api-socket
//!   [kernel mode: DNS forwarder threads, DNAT]
//!   fork the stack process (rr-netstack:
//!     confines itself, serves tap + API);
//!     watch it from a thread
//!   send 'g' ------------------------------->  --pid: stay as relay -> fork pid 1, which execs
//!                                                the command (--init: forks it, stays init)
//!                                              else: stay as monitor (subreaper) -> fork command
//!   forward signals; reap; stop the stack,     mounts (resolv.conf), hostname, root, wd; creds;
//!     wait for it; exit with status            exec argv
//! ```
//! Called by `main` with a validated `RunConfig`; what the child does is decided before the
//! fork, by `plan`, and done by `child`. This file keeps only the parent's order of steps: the
//! channel protocol is `handshake`'s, the `--persist` holder `holder`'s, `--detach` `detach`'s,
//! the network `network`'s (the stack process's own life `helper`'s). No thread exists before
//! the last fork, the stack process's (the thread watching it starts after). Keep it the
//! sequence plus one short function per step.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::child;
use crate::cli::Caller;
use crate::config::RunConfig;
use crate::detach::detach;
use crate::handshake::{self, await_ready};
use crate::holder::{finish_persist, fork_holder};
use crate::network::{self, Network, Prepared, Serving};
use crate::persist::{self, bind_ns_files, Record};
use crate::plan::{self, Plan};
use crate::preflight;
use crate::resolv;
use crate::supervise::{self, kill_and_reap, Signals, Status};
use crate::sys::process::{self, Forked};
use crate::sys::Linux;
use rr_ns::fdpass::Channel;

/// Runs the sandbox; returns the command's status (or an error already worded for the user).
pub fn run(cfg: &RunConfig, caller: &Caller) -> anyhow::Result<Status> {
    if cfg.join.is_none() {
        // A new sandbox: refuse now, naming the host setting, rather than half-way through.
        let tun = !cfg.net.kernel;
        preflight::check(&preflight::Facts::read(caller.uid, tun))?;
    }
    let host_resolv_conf = if cfg.join.is_none() {
        resolv::read_host_file()
    } else {
        String::new()
    };
    let plan = plan::make_plan(cfg, caller, &host_resolv_conf)?;
    let mut detached = if cfg.detach { Some(detach()?) } else { None };
    // Kernel mode: lease, bridge and rules before the fork; the veth once the child asks.
    let mut kernel_net = if plan.ns.is_some() && cfg.net.kernel {
        Some(crate::kernelnet::prepare(&cfg.net, &host_resolv_conf)?)
    } else {
        None
    };
    let leased_cfg;
    let cfg = match &kernel_net {
        Some(k) => {
            let mut c = cfg.clone();
            c.net.leased = Some(k.addrs());
            leased_cfg = c;
            &leased_cfg
        }
        None => cfg,
    };
    // Only a new sandbox has a network of ours (the userspace stack's, unless kernel mode).
    let prepared = if plan.ns.is_some() && kernel_net.is_none() {
        Some(network::prepare(&cfg.net, &host_resolv_conf)?)
    } else {
        None
    };

    let (ours, child, parent, prepared) = fork_child(cfg, &plan, prepared)?;
    let _span = tracing::debug_span!("sandbox", child = child.as_raw()).entered();

    // Setup handshake. On any failure here the child is killed before we return.
    let attach = |pid: i32| match &kernel_net {
        Some(k) => k.attach(pid),
        None => anyhow::bail!("the child asked for a veth outside kernel mode"),
    };
    let veth: Option<&dyn Fn(i32) -> anyhow::Result<()>> =
        kernel_net.as_ref().map(|_| &attach as _);
    let Some(tap) = await_ready(&ours, child, plan.helper.as_ref(), veth)? else {
        // The child printed its own one-line error; exit 1 without adding to it.
        return Ok(Status::Exited(1));
    };
    let (record, holder) = persist_and_bind(cfg, caller, &plan, parent, child)?;
    // The API socket is bound before the command starts, so the command (or whoever waits for
    // it) can connect at once; the stack process serves it as soon as it is confined.
    let serving = prepared.map(|p| network::bind_api(p, child)).transpose();
    let dns = kernel_net.as_mut().map(|k| k.serve_dns()).transpose();
    let serving = match (serving, dns) {
        (Ok(s), Ok(_)) => s,
        (Err(e), _) | (_, Err(e)) => {
            abandon(child, holder, record);
            return Err(e);
        }
    };

    // The stack process is forked before the command starts, so the launcher has given up its
    // copies of the tap and the host sockets by then; its start-up and confinement run beside
    // the command's (frames wait in the tap's queue, API clients in the backlog: the stack
    // reads nothing the sandbox sends before it is confined).
    let failed = Arc::new(AtomicBool::new(false));
    let net = start_network(serving, tap, child, &failed, detached.is_some())?;
    handshake::send_go(&ours)?;
    drop(ours);
    if let Some(d) = detached.take() {
        d.ready();
    }

    let signals = Signals::open()?;
    let (status, stopping) = supervise_command(cfg, &signals, child)?;
    if failed.load(Ordering::SeqCst) {
        // The stack process died first, and its watcher killed the sandbox: say how it died.
        return Err(match net.map(Network::finish) {
            Some(Err(e)) => anyhow::Error::new(e),
            _ => anyhow::anyhow!("the network stack failed"),
        });
    }
    if let Some(rec) = record {
        finish_persist(rec, holder, stopping, status, &signals, &failed)?;
    }
    if let Some(n) = net {
        n.finish()?;
    }
    Ok(status)
}

/// Blocks the supervised signals and forks the child (which runs `child::main` and never
/// returns here; it drops its copy of `net`). Returns our end of the setup channel, the child,
/// our own pid, and `net`.
fn fork_child(
    cfg: &RunConfig,
    plan: &Plan,
    net: Option<Prepared>,
) -> anyhow::Result<(Channel, Pid, i32, Option<Prepared>)> {
    let old_mask = process::block_supervised().context("cannot block signals")?;
    let (ours, theirs) = Channel::pair().context("cannot create the setup channel")?;
    let parent = nix::unistd::getpid().as_raw();
    let child = match process::fork().context("cannot fork")? {
        Forked::Child => {
            drop(ours);
            drop(net);
            child::main(cfg, plan, theirs, parent, &old_mask)
        }
        Forked::Parent(pid) => pid,
    };
    drop(theirs);
    Ok((ours, child, parent, net))
}

/// Between READY and GO: the `--persist` holder and record, and the `--ns-file` binds.
/// On failure the child and the holder are killed and the record removed.
fn persist_and_bind(
    cfg: &RunConfig,
    caller: &Caller,
    plan: &Plan,
    parent: i32,
    child: Pid,
) -> anyhow::Result<(Option<Record>, Option<Pid>)> {
    let mut record = None;
    let mut holder = None;
    let after_ready = (|| -> anyhow::Result<()> {
        let mut k = Linux;
        if let Some(dir) = &cfg.persist {
            let mut rec = Record::claim(dir)?;
            let h = fork_holder(parent, child.as_raw(), &plan.holder_types, cfg.ns.time)?;
            holder = Some(h);
            rec.write_pids(h.as_raw(), parent)?;
            if caller.uid == 0 {
                let files = rec.dir_ns_files(&plan.holder_types);
                rec.bind_ns_files(&mut k, child.as_raw(), &files)?;
            }
            record = Some(rec);
        }
        if !cfg.ns_files.is_empty() {
            bind_ns_files(&mut k, child.as_raw(), &cfg.ns_files)?;
        }
        Ok(())
    })();
    if let Err(e) = after_ready {
        abandon(child, holder, record);
        return Err(e);
    }
    Ok((record, holder))
}

/// Setup failed after READY: kills the child and the `--persist` holder, removes the record.
fn abandon(child: Pid, holder: Option<Pid>, record: Option<Record>) {
    for pid in [Some(child), holder].into_iter().flatten() {
        kill_and_reap(pid);
    }
    if let Some(r) = record {
        r.remove(&mut Linux);
    }
}

/// Starts the stack process on the sandbox's tap (there is none when joining); if it cannot
/// start, the child is killed.
fn start_network(
    serving: Option<Serving>,
    tap: Option<OwnedFd>,
    child: Pid,
    failed: &Arc<AtomicBool>,
    detached: bool,
) -> anyhow::Result<Option<Network>> {
    let (Some(tap), Some(serving)) = (tap, serving) else {
        return Ok(None);
    };
    match network::start(serving, tap, child, failed.clone(), detached) {
        Ok(n) => Ok(Some(n)),
        Err(e) => {
            kill_and_reap(child);
            Err(e)
        }
    }
}

/// Forwards signals to the child until it exits. Also says whether `--stop` asked for the end.
fn supervise_command(
    cfg: &RunConfig,
    signals: &Signals,
    child: Pid,
) -> anyhow::Result<(Status, bool)> {
    let stop_file = cfg.persist.as_ref().map(|d| d.join(persist::STOP_FILE));
    let mut stopping = false;
    let status = supervise::supervise_until(signals, child, false, &mut |sig| {
        // `--stop` leaves DIR/stop and sends SIGTERM: the command gets the SIGTERM (forwarded
        // as usual) and, once it exits, the sandbox goes too.
        if sig == Signal::SIGTERM && stop_file.as_ref().is_some_and(|f| f.exists()) {
            stopping = true;
        }
    })?;
    Ok((status, stopping))
}
