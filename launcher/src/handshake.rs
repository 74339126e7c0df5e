//! The parent <-> child setup protocol over the seqpacket channel (`rr_ns::fdpass::Channel`):
//! one-byte tags, the parent's side up to READY (writing helper id maps on request), and the
//! tags both sides use.
//!
//! ```text
//! child                         parent
//!   ['M' ask for helper maps] -> newuidmap/newgidmap PID -> ['m']
//!   'R' [+ tap fd]            ->
//!                             <- 'g' (after the persist holder and the API socket)
//! ```
//! EOF on the channel means the other side is gone. Called by `launch` (parent) and `child`.
//! Knows nothing of namespaces or the network beyond passing the tap fd.

use std::os::fd::OwnedFd;

use anyhow::{anyhow, bail, Context};
use nix::unistd::Pid;

use crate::idmap::{self, Setgroups};
use crate::plan::HelperMaps;
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
) -> anyhow::Result<Option<Option<OwnedFd>>> {
    match handshake(chan, child, helper) {
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

/// Parent side of the setup protocol. `Ok(None)`: the child gave up (and said why).
fn handshake(
    chan: &Channel,
    child: Pid,
    helper: Option<&HelperMaps>,
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
