//! The parent <-> child setup protocol over the seqpacket channel (`rr_ns::fdpass::Channel`):
//! the one-byte tags and both sides' steps. The parent's go through `Channel` directly (it
//! also writes helper id maps on request); the child's go through `Kernel`, so the recording
//! fake sees each message in the order of the child's other calls.
//!
//! ```text
//! child                         parent
//!   ['M' ask for helper maps] -> newuidmap/newgidmap PID -> ['m']
//!   'R' [+ tap fd]            ->
//!                             <- 'g' (after the persist holder and the API socket)
//! ```
//! EOF on the channel means the other side is gone. Called by `launch` (parent) and `child`.
//! Knows nothing of namespaces or the network beyond passing the tap fd.

use std::os::fd::{BorrowedFd, OwnedFd};

use anyhow::{anyhow, bail, Context};
use nix::unistd::Pid;

use crate::idmap::{self, Setgroups};
use crate::kernel::{Kernel, KernelError};
use crate::plan::HelperMaps;
use crate::sandbox::ParentGone;
use crate::supervise::kill_and_reap;
use rr_ns::fdpass::Channel;

/// Channel message tags.
pub mod tag {
    /// child -> parent: write my id maps with newuidmap/newgidmap.
    pub const MAPS: u8 = b'M';
    /// parent -> child: maps written.
    pub const MAPS_DONE: u8 = b'm';
    /// child -> parent: namespaces ready (with the tap fd for a new sandbox).
    pub const READY: u8 = b'R';
    /// child -> parent (kernel mode): my network namespace is ready, create my veth.
    pub const VETH: u8 = b'V';
    /// parent -> child: eth0 is in your namespace.
    pub const VETH_DONE: u8 = b'v';
    /// parent -> child: go ahead and exec.
    pub const GO: u8 = b'g';
}

/// Runs the parent's side of the handshake up to READY and returns the tap fd, if the child
/// passed one. `Ok(None)`: the child gave up (and said why); it is reaped. On an error the
/// child is killed.
pub fn await_ready(
    chan: &Channel,
    child: Pid,
    helper: Option<&HelperMaps>,
    veth: Option<&dyn Fn(i32) -> anyhow::Result<()>>,
) -> anyhow::Result<Option<Option<OwnedFd>>> {
    match handshake(chan, child, helper, veth) {
        Ok(Some(tap)) => Ok(Some(tap)),
        Ok(None) => {
            let _ = nix::sys::wait::waitpid(child, None);
            Ok(None)
        }
        Err(e) => {
            kill_and_reap(child);
            Err(e)
        }
    }
}

/// Parent: tells the child to go ahead and start the command.
pub fn send_go(chan: &Channel) -> anyhow::Result<()> {
    chan.send(tag::GO, &[], &[])
        .context("cannot tell the sandbox to start")
}

/// Child: asks the parent to write our id maps with newuidmap/newgidmap and waits until it
/// has.
pub fn request_maps<K: Kernel>(k: &mut K, chan: &Channel) -> anyhow::Result<()> {
    k.send(chan, tag::MAPS, &[]).context("setup channel")?;
    match k.recv(chan).context("setup channel")? {
        Some(tag::MAPS_DONE) => Ok(()),
        Some(other) => bail!("unexpected setup message {other:#x}"),
        None => Err(ParentGone.into()),
    }
}

/// Child (kernel mode): asks the parent for the veth peer `eth0` and waits until it is here.
pub fn request_veth<K: Kernel>(k: &mut K, chan: &Channel) -> anyhow::Result<()> {
    k.send(chan, tag::VETH, &[]).context("setup channel")?;
    match k.recv(chan).context("setup channel")? {
        Some(tag::VETH_DONE) => Ok(()),
        Some(other) => bail!("unexpected setup message {other:#x}"),
        None => Err(ParentGone.into()),
    }
}

/// Child: our namespaces are ready; a new sandbox passes its `tap` along.
pub fn send_ready<K: Kernel>(
    k: &mut K,
    chan: &Channel,
    tap: Option<BorrowedFd<'_>>,
) -> Result<(), KernelError> {
    let fds: Vec<BorrowedFd<'_>> = tap.into_iter().collect();
    k.send(chan, tag::READY, &fds)
}

/// Child: waits for "go". Anything else (EOF, a failed read, another tag) means the parent is
/// gone or gave up: the child leaves quietly.
pub fn wait_for_go<K: Kernel>(k: &mut K, chan: &Channel) -> Result<(), ParentGone> {
    match k.recv(chan) {
        Ok(Some(tag::GO)) => Ok(()),
        _ => Err(ParentGone),
    }
}

/// Parent side of the setup protocol. `Ok(None)`: the child gave up (and said why).
fn handshake(
    chan: &Channel,
    child: Pid,
    helper: Option<&HelperMaps>,
    veth: Option<&dyn Fn(i32) -> anyhow::Result<()>>,
) -> anyhow::Result<Option<Option<std::os::fd::OwnedFd>>> {
    loop {
        let Some(msg) = chan.recv().context("setup channel")? else {
            return Ok(None);
        };
        match msg.tag {
            tag::MAPS => {
                let maps = helper.ok_or_else(|| anyhow!("child asked for helper maps"))?;
                write_helper_maps(child.as_raw(), maps)?;
                chan.send(tag::MAPS_DONE, &[], &[])
                    .context("setup channel")?;
            }
            tag::VETH => {
                let attach = veth.ok_or_else(|| anyhow!("child asked for a veth"))?;
                attach(child.as_raw())?;
                chan.send(tag::VETH_DONE, &[], &[])
                    .context("setup channel")?;
            }
            tag::READY => return Ok(Some(msg.fds.into_iter().next())),
            other => bail!("unexpected setup message {other:#x}"),
        }
    }
}

fn write_helper_maps(pid: i32, m: &HelperMaps) -> anyhow::Result<()> {
    // Deny must be in place before gid_map is written; newgidmap leaves setgroups alone.
    if m.setgroups == Setgroups::Deny {
        let path = format!("/proc/{pid}/setgroups");
        std::fs::write(&path, "deny").with_context(|| format!("cannot write {path}"))?;
    }
    for (tool, map, flag) in [
        (&m.newuidmap, &m.uid, "--map-users"),
        (&m.newgidmap, &m.gid, "--map-groups"),
    ] {
        let out = std::process::Command::new(tool)
            .arg(pid.to_string())
            .args(idmap::helper_args(map))
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("{flag}: cannot run {}", tool.display()))?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            bail!(
                "{flag}: {} {} failed: {} (check /etc/subuid and /etc/subgid)",
                tool.display(),
                idmap::helper_args(map).join(" "),
                why.trim()
            );
        }
    }
    Ok(())
}
