//! The `--persist` holder: a child of the launcher that enters the sandbox's namespaces (the
//! new time namespace included; never the pid namespace, which ends with its pid 1) and
//! sleeps, keeping them alive after the command exits; and the launcher's wait for `--stop`
//! that ends it.
//! Called by `launch`. The record directory and the namespace comparison are `persist`'s; this
//! file only forks, waits and kills.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::config::JoinNsType;
use crate::kernel::Kernel;
use crate::persist::Record;
use crate::sandbox::{self, JoinPlan};
use crate::supervise::{self, kill_and_reap, Signals, Status};
use crate::sys::process::{self, Forked};
use crate::sys::Linux;

/// The `--persist` holder: a child of ours that enters the sandbox's namespaces and sleeps,
/// keeping them alive after the command exits. Dies with us (PR_SET_PDEATHSIG).
/// `sandbox`'s pid namespace is never among `types`: it ends with its pid 1 whatever holds
/// it. With `time`, the holder also enters the new time namespace, which the sandbox's first
/// process created for its children only (its ns/time_for_children).
pub fn fork_holder(
    parent: i32,
    sandbox: i32,
    types: &[JoinNsType],
    time: bool,
) -> anyhow::Result<Pid> {
    let (ready_r, ready_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot create a pipe")?;
    match process::fork().context("cannot fork the persist holder")? {
        Forked::Parent(pid) => {
            drop(ready_w);
            // One byte once it is inside; EOF if it could not get there.
            let mut b = [0u8; 1];
            let n = loop {
                match nix::unistd::read(ready_r.as_fd(), &mut b) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other.unwrap_or(0),
                }
            };
            if n != 1 {
                let _ = nix::sys::wait::waitpid(pid, None);
                bail!("--persist: the holder process could not enter the sandbox's namespaces");
            }
            Ok(pid)
        }
        Forked::Child => {
            drop(ready_r);
            let mut k = Linux;
            let r = sandbox::tie_to_parent(&mut k, Signal::SIGKILL, parent)
                .and_then(|()| enter(&mut k, sandbox, types, time));
            if let Err(e) = r {
                tracing::error!(error = %format!("{e:#}"), "persist holder cannot enter the sandbox");
                std::process::exit(1);
            }
            let _ = nix::unistd::write(&ready_w, b"h");
            // Keep nothing of the launcher's: not its fds (the tap, the setup channel), not the
            // host's working directory (and any mount it pins), not the caller's terminal or
            // pipes (a pipe held open would keep a reader waiting for EOF).
            process::close_fds_from(3);
            let _ = nix::unistd::chdir("/");
            let _ = process::stdio_to_devnull();
            process::wait_forever(&process::supervised_set())
        }
    }
}

/// The holder's way in: the namespaces `types` of process `sandbox`, then (`time`) the time
/// namespace its children get.
fn enter(k: &mut Linux, sandbox: i32, types: &[JoinNsType], time: bool) -> anyhow::Result<()> {
    let plan = JoinPlan::Pid {
        pid: sandbox,
        types: types.to_vec(),
    };
    sandbox::join(k, &plan)?;
    if time {
        let path = PathBuf::from(format!("/proc/{sandbox}/ns/time_for_children"));
        k.setns_file(&path, JoinNsType::Time.flag())
            .context("cannot enter the sandbox's time namespace")?;
    }
    Ok(())
}

/// `--persist`, once the command has exited: unless `--stop` ended it, keeps the sandbox
/// until told to stop; then kills the holder and removes the record.
pub fn finish_persist(
    rec: Record,
    holder: Option<Pid>,
    stopping: bool,
    status: Status,
    signals: &Signals,
    failed: &AtomicBool,
) -> anyhow::Result<()> {
    if !stopping {
        tracing::info!(?status, "command exited; sandbox persists until --stop");
        wait_for_stop(signals, failed, holder)?;
    }
    if let Some(h) = holder {
        kill_and_reap(h);
    }
    rec.remove(&mut Linux);
    Ok(())
}

/// Waits for SIGTERM/SIGINT/SIGHUP/SIGQUIT (from `--stop` or the terminal), a stack failure,
/// or the holder's death (then nothing keeps the namespaces any more).
fn wait_for_stop(
    signals: &Signals,
    failed: &AtomicBool,
    holder: Option<Pid>,
) -> anyhow::Result<()> {
    loop {
        let (sig, _) = signals.next()?;
        if failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        if sig == Signal::SIGCHLD {
            if let Some(h) = holder {
                if supervise::reap(h, false)?.is_some() {
                    tracing::warn!("the persist holder died; stopping the sandbox");
                    return Ok(());
                }
            }
            continue;
        }
        if matches!(
            sig,
            Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP | Signal::SIGQUIT
        ) {
            tracing::info!(signal = %sig, "stopping persisted sandbox");
            return Ok(());
        }
    }
}
