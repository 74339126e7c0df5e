//! The command's last steps in its own process: credentials, the signal mask and SIGPIPE as
//! the caller had them, exec.
//! Called by `pidns` and `monitor` once the filesystem view is in place. Returns only on
//! failure.

use anyhow::Context;
use nix::sys::signal::SigSet;

use std::ffi::OsString;

use crate::sandbox::{self, CredPlan};
use crate::sys::process;
use crate::sys::Linux;

/// Switches to `creds` (checking that `parent` is still there), restores `old_mask`, and
/// execs `argv`. Returns only on failure (an `ExecError` for exec's own).
pub fn command(
    k: &mut Linux,
    argv: &[OsString],
    creds: &CredPlan,
    parent: i32,
    old_mask: &SigSet,
) -> anyhow::Result<i32> {
    sandbox::set_credentials(k, creds, parent)?;
    process::restore_for_exec(old_mask).context("cannot restore the signal mask")?;
    match process::exec(argv) {
        Ok(never) => match never {},
        Err(e) => Err(e.into()),
    }
}
