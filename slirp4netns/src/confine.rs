//! `--enable-sandbox` and `--enable-seccomp`: confine this process with `rr_ns::confine`, in the
//! order that module's header gives. Called by `run` at two points:
//! - `before_threads`, after the API socket is bound and before any thread starts: the remover
//!   that unlinks the API socket at exit is forked (the confined helper cannot reach the file
//!   any more); for the sandbox, the process joins the target's user namespace (root there,
//!   its sockets staying in the host's network namespace, as slirp4netns does) and takes a
//!   mount namespace with an empty read-only root, no capabilities but CAP_NET_BIND_SERVICE
//!   (as slirp4netns keeps), no_new_privs;
//! - `after_threads`, once the stack and the API thread run: the seccomp allowlist, on every
//!   thread at once, before the ready byte, so a client never talks to an unconfined helper.
//!
//! With `--netns-type=tapfd` there is no user namespace to join: the sandbox then works only
//! for a caller that holds CAP_SYS_ADMIN already (real root), and fails with a clear error
//! otherwise.

use std::path::Path;

use rr_ns::confine::{SandboxOptions, SeccompOptions, Violation};
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
pub enum ConfineError {
    /// Joining the target's user namespace for the sandbox failed.
    #[error("--enable-sandbox: cannot enter the target's user namespace")]
    Enter(#[source] rr_ns::enter::EnterError),
    /// A step of `rr_ns::confine` failed.
    #[error("{flag}")]
    Step {
        /// The flag whose confinement failed.
        flag: &'static str,
        /// Why.
        #[source]
        source: rr_ns::confine::ConfineError,
    },
}

/// The steps that need a single-threaded process: the remover, the user namespace, the sandbox.
pub fn before_threads(
    plan: &Plan,
    target: Option<&Target>,
    api_socket: Option<&Path>,
) -> Result<(), ConfineError> {
    if !(plan.sandbox || plan.seccomp) {
        return Ok(());
    }
    let flag = if plan.sandbox {
        "--enable-sandbox"
    } else {
        "--enable-seccomp"
    };
    if let Some(path) = api_socket {
        rr_ns::confine::remove_on_exit(&[path])
            .map_err(|source| ConfineError::Step { flag, source })?;
    }
    if !plan.sandbox {
        return Ok(());
    }
    if let Some(t) = target {
        t.enter_user().map_err(ConfineError::Enter)?;
    }
    let opts = SandboxOptions {
        keep_net_bind_service: true,
    };
    rr_ns::confine::sandbox(&opts).map_err(|source| ConfineError::Step {
        flag: "--enable-sandbox",
        source,
    })
}

/// The seccomp allowlist, once every thread of the helper runs.
pub fn after_threads(plan: &Plan) -> Result<(), ConfineError> {
    if !plan.seccomp {
        return Ok(());
    }
    let opts = SeccompOptions {
        violation: Violation::KillProcess,
    };
    rr_ns::confine::seccomp(&opts).map_err(|source| ConfineError::Step {
        flag: "--enable-seccomp",
        source,
    })
}
