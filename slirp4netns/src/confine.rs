//! The hook where `--enable-sandbox` and `--enable-seccomp` confine this process: `apply` runs
//! after the API socket is bound (so its file lives on the host's filesystem) and before the
//! ready byte, as in slirp4netns. `check` runs at start-up, before anything happens.
//! Called by `config` (check) and `run` (apply). The confinement itself belongs in
//! `rr_ns::confine` (a new mount namespace, capabilities dropped, no_new_privs; a seccomp
//! allowlist); until that module is on main, `check` refuses both flags with one line naming
//! the flag, so no flag is accepted and then ignored.
//!
//! Wiring it in (the `confine` branch documents its order): the sandbox must come before any
//! thread starts, but `netstack::api::serve` binds the socket and starts its thread in one call,
//! and the stack starts its DNS relay thread; so `run` will need the API socket bound first and
//! served after the sandbox (a split in `netstack::api`), the stack's threads started after it,
//! and seccomp (TSYNC) last, before the ready byte. The sandboxed helper cannot unlink the API
//! socket, so `rr_ns::confine::remove_on_exit` takes over that part of `lifecycle`, and the
//! allowlist must admit what `rr_ns::process::die_by_signal` calls (rt_sigaction,
//! rt_sigprocmask, tgkill).

/// What to confine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Plan {
    /// `--enable-sandbox` (or `--create-sandbox`).
    pub sandbox: bool,
    /// `--enable-seccomp`.
    pub seccomp: bool,
}

/// Why confinement is refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The flag is parsed but this build cannot honour it yet.
    #[error(
        "{flag}: not available yet in rr-slirp4netns (it needs rr_ns::confine); run without \
         {flag}"
    )]
    Unavailable {
        /// The flag.
        flag: &'static str,
    },
}

/// Refuses what this build cannot do; called before the first fork.
pub fn check(plan: &Plan) -> Result<(), ConfineError> {
    if plan.sandbox {
        return Err(ConfineError::Unavailable {
            flag: "--enable-sandbox",
        });
    }
    if plan.seccomp {
        return Err(ConfineError::Unavailable {
            flag: "--enable-seccomp",
        });
    }
    Ok(())
}

/// Confines the running helper as `plan` says: the place where `rr_ns::confine` will be called
/// (sandbox first, then seccomp, whose allowlist must admit the sandbox's own calls). Today
/// `check` has refused both flags, so there is nothing to do.
pub fn apply(plan: &Plan) -> Result<(), ConfineError> {
    check(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_unavailable_flag_is_refused_by_name() {
        assert!(check(&Plan::default()).is_ok());
        let e = check(&Plan {
            sandbox: true,
            seccomp: false,
        })
        .unwrap_err();
        assert!(
            e.to_string().starts_with("--enable-sandbox: not available"),
            "{e}"
        );
        let e = check(&Plan {
            sandbox: false,
            seccomp: true,
        })
        .unwrap_err();
        assert!(
            e.to_string().starts_with("--enable-seccomp: not available"),
            "{e}"
        );
    }
}
