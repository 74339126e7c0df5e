//! The command's last steps in its own process: credentials, the signal mask and SIGPIPE as
//! the caller had them, exec.
//! Called by `pidns` and `monitor` once the filesystem view is in place. Returns only on
//! failure. Through `Kernel` only; decides nothing (`plan` chose the credentials).

use std::ffi::OsString;

use anyhow::Context;
use nix::sys::signal::SigSet;

use crate::kernel::Kernel;
use crate::sandbox::{self, CredPlan};

/// Switches to `creds` (checking that `parent` is still there), restores `old_mask`, and
/// execs `argv`. Returns only on failure (an `ExecError` for exec's own).
pub fn command<K: Kernel>(
    k: &mut K,
    argv: &[OsString],
    creds: &CredPlan,
    parent: i32,
    old_mask: &SigSet,
) -> anyhow::Result<i32> {
    sandbox::set_credentials(k, creds, parent)?;
    k.restore_for_exec(old_mask)
        .context("cannot restore the signal mask")?;
    match k.exec(argv) {
        Ok(never) => match never {},
        Err(e) => Err(e.into()),
    }
}
