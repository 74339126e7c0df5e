//! Process plumbing a drop-in needs around its namespace child: fork (refused unless the
//! process is single-threaded, which makes the safe wrapper sound), and dying of a signal the
//! way an unhandled one would kill us, after cleaning up.
//! Called by the drop-ins' `main`; decides nothing about what the child does.

use std::io;

use nix::errno::Errno;
use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::{ForkResult, Pid};

/// Which side of a fork we are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The parent, with the child's pid.
    Parent(Pid),
    /// The child.
    Child,
}

/// Why `fork` did not fork.
#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    /// Other threads run: the child could deadlock on a lock one of them held.
    #[error("cannot fork: {threads} threads are running (fork needs a single-threaded process)")]
    Threaded {
        /// Threads counted in /proc/self/task.
        threads: usize,
    },
    /// /proc/self/task could not be read.
    #[error("cannot count our threads in /proc/self/task")]
    Count(#[source] io::Error),
    /// fork(2) failed.
    #[error("fork failed")]
    Fork(#[source] Errno),
}

/// Threads of this process, from /proc/self/task.
fn threads() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// fork(2), only while this process has a single thread; then the child may run any code
/// (allocate, lock) because no other thread can have held a lock at the fork.
pub fn fork() -> Result<Forked, ForkError> {
    let threads = threads().map_err(ForkError::Count)?;
    if threads != 1 {
        return Err(ForkError::Threaded { threads });
    }
    // SAFETY: the process has exactly one thread (checked just above; only this thread could
    // start another), so the child inherits no lock held by a thread that does not exist there.
    match unsafe { nix::unistd::fork() }.map_err(ForkError::Fork)? {
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        ForkResult::Child => Ok(Forked::Child),
    }
}

/// Dies of `sig` as if it had never been caught: default disposition, unblocked in this
/// thread, raised. A waiting parent sees "killed by `sig`" (a shell's 128 + N). Exits with
/// 128 + N should the signal not be fatal (it always is for SIGTERM, SIGINT, SIGHUP).
pub fn die_by_signal(sig: Signal) -> ! {
    // SAFETY: SIG_DFL runs no code of ours in signal context, so no handler can observe a
    // half-updated state.
    let _ = unsafe { signal::signal(sig, SigHandler::SigDfl) };
    let mut set = SigSet::empty();
    set.add(sig);
    let _ = signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
    // raise(3) sends to this thread, where the signal is now unblocked: delivered (and fatal)
    // before raise returns.
    let _ = signal::raise(sig);
    std::process::exit(128 + sig as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_is_refused_while_other_threads_run() {
        // A second thread, alive until fork has answered (the harness may run us on main).
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || wait.recv());
        let result = fork();
        drop(release);
        let _ = other.join();
        match result {
            Err(ForkError::Threaded { threads }) => assert!(threads >= 2, "{threads}"),
            Ok(Forked::Child) => std::process::exit(0),
            other => panic!("expected Threaded, got {other:?}"),
        }
    }
}
