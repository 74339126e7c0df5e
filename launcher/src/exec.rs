//! The command's last steps in its own process: credentials, the signal mask and SIGPIPE as
//! the caller had them, exec.
//! Called by `pidns` and `monitor` once the filesystem view is in place. Returns only on
//! failure.

use anyhow::Context;
use nix::sys::signal::SigSet;

use crate::config::RunConfig;
use crate::plan::Plan;
use crate::sandbox;
use crate::sys::process;
use crate::sys::Linux;

pub fn exec_command(
    k: &mut Linux,
    cfg: &RunConfig,
    plan: &Plan,
    parent: i32,
    old_mask: &SigSet,
) -> anyhow::Result<i32> {
    sandbox::set_credentials(k, &plan.creds, parent)?;
    process::restore_for_exec(old_mask).context("cannot restore the signal mask")?;
    match process::exec(&cfg.argv) {
        Ok(never) => match never {},
        Err(e) => Err(e.into()),
    }
}
