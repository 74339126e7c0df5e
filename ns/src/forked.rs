//! The life of a drop-in's forked namespace child after `process::fork`: it dies with its
//! parent (a parent killed now leaves nobody to serve the namespace, so configuring it would be
//! for nothing), runs its work, prints the work's error as "PROG: error" and exits 0 or 1.
//! Called by rr-slirp4netns's and rr-pasta's `attach`; never returns.

use std::fmt::Display;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Runs `work` in the child forked by `parent` and exits: 0 when it succeeded, 1 when it
/// failed (its error printed with `{:#}`, so anyhow shows its chain) or the parent is gone.
pub fn child_main<E: Display>(prog: &str, parent: Pid, work: impl FnOnce() -> Result<(), E>) -> ! {
    let orphaned = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err()
        || nix::unistd::getppid() != parent;
    let status = match orphaned {
        true => 1,
        false => match work() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("{prog}: {e:#}");
                1
            }
        },
    };
    std::process::exit(status)
}
