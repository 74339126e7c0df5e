//! `Helper`: the whole confinement of a network helper, in the order the module header of
//! `confine` gives, as one implementation for both callers: `rr-slirp4netns`
//! (`--enable-sandbox`, `--enable-seccomp`) and `rootless-run`'s stack process (always both).
//! Two calls, because threads split the sequence:
//! - `before_threads`, in a single-threaded process, after everything that needs the host's
//!   filesystem is open: the remover for files to delete at exit (if any), then, for the
//!   sandbox, the user namespace that gives it capabilities to drop and mounts to make (`Userns`:
//!   the target's, entered, as slirp4netns does; or one of its own, as rootless-run's stack
//!   does; the helper's network namespace, and so its host sockets, stay where they are either
//!   way) and `sandbox`;
//! - `after_threads`, once the stack's start-up is done and before it reads any input: the
//!   seccomp allowlist, on every thread at once.
//!
//! Decides nothing about *whether* to confine (the callers' flags) and knows neither binary.

use std::path::Path;

use super::{
    remove_on_exit, sandbox, seccomp, ConfineError, Filesystem, SandboxOptions, SeccompOptions,
};
use crate::enter::Target;

/// Which user namespace the sandbox runs in.
#[derive(Debug, Clone, Copy)]
pub enum Userns<'a> {
    /// The one we are in (real root, or a caller already inside the target's).
    Current,
    /// The target's, entered first (`Target::enter_user`; nothing if it is ours).
    Enter(&'a Target),
    /// A new one of our own (unshared by `sandbox`).
    Own,
}

/// What to confine, and how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Helper {
    /// An empty read-only root in a mount namespace of its own, no capabilities,
    /// no_new_privs (`sandbox`).
    pub sandbox: bool,
    /// The syscall allowlist (`seccomp`).
    pub seccomp: bool,
    /// See `SandboxOptions::keep_net_bind_service`.
    pub keep_net_bind_service: bool,
    /// See `SandboxOptions::filesystem`.
    pub filesystem: Filesystem,
    /// See `SeccompOptions::violation`.
    pub violation: super::Violation,
}

impl Helper {
    /// The steps that need a single-threaded process: the remover for `remove_at_exit` (when
    /// confining at all: the confined process cannot reach those files), then for the sandbox
    /// the user namespace `userns` and `sandbox`.
    pub fn before_threads(
        &self,
        userns: Userns<'_>,
        remove_at_exit: &[&Path],
    ) -> Result<(), ConfineError> {
        if !(self.sandbox || self.seccomp) {
            return Ok(());
        }
        if !remove_at_exit.is_empty() {
            remove_on_exit(remove_at_exit)?;
        }
        if !self.sandbox {
            return Ok(());
        }
        if let Userns::Enter(t) = userns {
            t.enter_user()
                .map_err(|source| ConfineError::EnterUser { source })?;
        }
        sandbox(&SandboxOptions {
            keep_net_bind_service: self.keep_net_bind_service,
            own_user_namespace: matches!(userns, Userns::Own),
            filesystem: self.filesystem,
        })
        .map(drop)
    }

    /// The seccomp allowlist, once the helper's threads run (it covers them all, and every
    /// thread they start later).
    pub fn after_threads(&self) -> Result<(), ConfineError> {
        if !self.seccomp {
            return Ok(());
        }
        seccomp(&SeccompOptions {
            violation: self.violation,
        })
    }
}
