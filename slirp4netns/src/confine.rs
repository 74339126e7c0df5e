//! `--enable-sandbox` and `--enable-seccomp`: the drop-in's flags mapped onto
//! `rr_ns::confine::Helper`, the one confinement sequence it shares with rootless-run's stack
//! process (the order, and why, are in that module's header). Called by `run` at two points:
//! - `before_threads`, after the API socket is bound and before any thread starts: the remover
//!   that unlinks the API socket at exit; for the sandbox, the target's user namespace (root
//!   there, its sockets staying in the host's network namespace, as slirp4netns does) and a
//!   mount namespace with an empty read-only root, no capabilities but CAP_NET_BIND_SERVICE
//!   (as slirp4netns keeps), no_new_privs;
//! - `after_threads`, once the stack and the API thread run: the seccomp allowlist, on every
//!   thread at once, before the ready byte, so a client never talks to an unconfined helper.
//!
//! With `--netns-type=tapfd` there is no user namespace to join: the sandbox then works only
//! for a caller that holds CAP_SYS_ADMIN already (real root), and fails with a clear error
//! otherwise. Only the flag names live here; keep it that small.

use std::path::Path;

use rr_ns::confine::{Filesystem, Helper, Userns, Violation};
use rr_ns::enter::Target;

/// What to confine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Plan {
    /// `--enable-sandbox` (or `--create-sandbox`).
    pub sandbox: bool,
    /// `--enable-seccomp`.
    pub seccomp: bool,
}

/// A confinement step that failed; the process may be half confined, so the caller exits.
#[derive(Debug, thiserror::Error)]
#[error("{flag}")]
pub struct ConfineError {
    /// The flag whose confinement failed.
    flag: &'static str,
    /// Why.
    #[source]
    source: rr_ns::confine::ConfineError,
}

impl Plan {
    fn helper(&self) -> Helper {
        Helper {
            sandbox: self.sandbox,
            seccomp: self.seccomp,
            keep_net_bind_service: true,
            filesystem: Filesystem::EmptyRoot,
            violation: Violation::KillProcess,
        }
    }
}

/// The steps that need a single-threaded process: the remover, the user namespace, the sandbox.
pub fn before_threads(
    plan: &Plan,
    target: Option<&Target>,
    api_socket: Option<&Path>,
) -> Result<(), ConfineError> {
    let flag = if plan.sandbox {
        "--enable-sandbox"
    } else {
        "--enable-seccomp"
    };
    let remove: Vec<&Path> = api_socket.into_iter().collect();
    let userns = target.map_or(Userns::Current, Userns::Enter);
    plan.helper()
        .before_threads(userns, &remove)
        .map_err(|source| ConfineError { flag, source })
}

/// The seccomp allowlist, once every thread of the helper runs.
pub fn after_threads(plan: &Plan) -> Result<(), ConfineError> {
    plan.helper()
        .after_threads()
        .map_err(|source| ConfineError {
            flag: "--enable-seccomp",
            source,
        })
}
