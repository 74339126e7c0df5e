//! `--detach`: the original process waits for "ready" and exits with 0 (or with the setup's
//! failure status); the launcher runs on in a new session, and says "ready" once the command
//! has started.
//! Called by `launch` before any thread exists (it forks). Knows nothing of the sandbox; stays
//! this one fork and one pipe.

use std::os::fd::AsFd;

use anyhow::Context;

use crate::sys::process::{self, Forked};

/// `--detach`: the original process waits for "ready" and exits; the rest runs on in a new
/// session. Must run before any thread exists.
pub struct Detached {
    notify: std::os::fd::OwnedFd,
}

impl Detached {
    pub fn ready(self) {
        let _ = nix::unistd::write(&self.notify, b"r");
        drop(self.notify);
        if let Err(e) = process::stdio_to_devnull() {
            tracing::warn!(error = %e, "cannot detach stdio");
        }
    }
}

pub fn detach() -> anyhow::Result<Detached> {
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot create a pipe")?;
    match process::fork().context("cannot fork")? {
        Forked::Parent(pid) => {
            drop(w);
            let mut b = [0u8; 1];
            let n = loop {
                match nix::unistd::read(r.as_fd(), &mut b) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other.unwrap_or(0),
                }
            };
            if n == 1 {
                std::process::exit(0);
            }
            // Setup failed; the launcher printed why. Pass its status on.
            let code = match nix::sys::wait::waitpid(pid, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, c)) if c != 0 => c,
                _ => 1,
            };
            std::process::exit(code);
        }
        Forked::Child => {
            drop(r);
            let _ = nix::unistd::setsid();
            Ok(Detached { notify: w })
        }
    }
}
