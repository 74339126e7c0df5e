//! pasta's readiness contract: the process podman started exits 0 once the namespace is
//! configured and the stack is about to serve it, while the stack goes on in a detached
//! child (new session, stdin/stdout/stderr on /dev/null: podman reads the helper's output
//! until the pipe closes, with no timeout). A failure in the child before it is ready is
//! sent back through the ready pipe and printed by the parent, which exits 1.
//! ```text
//! parent: pipe; fork ----------------------> daemon: setsid
//!         read the pipe until EOF             build the stack, write --pid
//!         "\0": exit 0                        stdio -> /dev/null; write "\0"; serve
//!         text: print it, exit 1              (or write the error text; exit 1)
//!         nothing: exit 1
//! ```
//! Called by `run` after the tap fd arrived; the parent never returns from `detach`.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use anyhow::Context;
use nix::fcntl::OFlag;
use rr_ns::process::{fork, Forked};

/// What the daemon writes when it is ready.
const READY: &[u8] = b"\0";

/// The daemon's end of the ready pipe.
#[derive(Debug)]
pub struct Ready(OwnedFd);

impl Ready {
    /// Detaches from the caller's output and tells the parent to exit 0.
    pub fn done(self) -> anyhow::Result<()> {
        to_dev_null().context("cannot redirect stdin, stdout and stderr to /dev/null")?;
        std::fs::File::from(self.0)
            .write_all(READY)
            .context("cannot tell the parent we are ready")
    }

    /// Hands `error` to the parent, which prints it and exits 1.
    pub fn fail(self, error: &anyhow::Error) {
        let _ = std::fs::File::from(self.0).write_all(format!("{error:#}").as_bytes());
    }
}

/// Forks the daemon. In the parent: waits for its word and exits (0 ready, 1 failed); in the
/// daemon: returns its end of the pipe.
pub fn detach(prog: &str) -> anyhow::Result<Ready> {
    let (rx, tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("cannot create the ready pipe")?;
    match fork().context("cannot fork the background process")? {
        Forked::Child => {
            drop(rx);
            nix::unistd::setsid().context("cannot start a new session")?;
            Ok(Ready(tx))
        }
        Forked::Parent(_) => {
            drop(tx);
            let mut word = Vec::new();
            let read = std::fs::File::from(rx).read_to_end(&mut word);
            match (read, word.as_slice()) {
                (Ok(_), READY) => std::process::exit(0),
                (Ok(_), []) | (Err(_), _) => {
                    eprintln!("{prog}: the background process ended before it was ready");
                }
                (Ok(_), text) => eprintln!("{prog}: {}", String::from_utf8_lossy(text)),
            }
            std::process::exit(1)
        }
    }
}

/// stdin, stdout and stderr on /dev/null.
fn to_dev_null() -> nix::Result<()> {
    let null = nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(&null)?;
    nix::unistd::dup2_stderr(&null)
}
