//! Confines the network helper after setup, as pasta always confines itself and slirp4netns does
//! with `--enable-sandbox` / `--enable-seccomp`: a bug reachable from the sandbox should gain an
//! attacker nothing on the host. `helper::Helper` runs the whole sequence below for both
//! callers; it is made of three calls, each in its own file:
//! - `sandbox`: no filesystem (a mount namespace of its own with an empty read-only root, the
//!   host's filesystem detached, or a Landlock domain denying every access), no capabilities,
//!   locked securebits, no_new_privs;
//! - `seccomp`: a syscall allowlist for the running stack; anything else kills the process;
//! - `remove_on_exit`: a tiny process, forked before confinement, that removes the API socket
//!   file after the helper has exited (the confined helper cannot reach it any more).
//!
//! Used by `rr-slirp4netns` for `--enable-sandbox` and `--enable-seccomp`, and by
//! `rootless-run`'s stack process (always), so nothing here knows either binary; no CLI,
//! and no policy on *whether* to confine. `kernel` is the seam that lets the sandbox's step
//! order be tested without privilege.
//!
//! How a caller orders things, and why:
//! ```text
//! enter the target's user namespace, be root there   (caller; `sandbox` needs CAP_SYS_ADMIN)
//! read configuration files (resolv.conf), open the tap, bind + listen the API socket
//!                                                     (all need the host's filesystem)
//! remove_on_exit(&[api socket path])                 (sees the host's filesystem; forks)
//! sandbox(&SandboxOptions)                           (no other thread may exist yet:
//!                                                     mount namespace and capabilities are
//!                                                     per thread)
//! build the stack; start its threads (API, DNS relay)   (sockets, epoll, eventfd, pipes)
//! seccomp(&SeccompOptions)                           (TSYNC: also covers those threads)
//! write the ready byte; run
//! ```
//! `seccomp` without `sandbox` is fine (its order is the same, minus the sandbox line); the
//! reverse order is not: the sandbox's mount and unshare calls are not in the allowlist.
//! The ready byte comes last so that a client never talks to an unconfined helper.
//!
//! For rootless-run's helper (issue 14), the same order in the forked stack process: a user
//! namespace of its own (so it has capabilities to drop; its host sockets stay in the host's
//! network namespace), `sandbox` with Landlock where the kernel has it, the stack's start-up,
//! and `seccomp` before the API thread starts and the first frame is read. The launcher, which
//! keeps supervising unconfined, binds and removes its API socket itself, so it needs no
//! `remove_on_exit`.

mod helper;
pub(crate) mod kernel;
mod remove;
mod sandbox;
mod seccomp;

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

pub use helper::{Helper, Userns};
pub use remove::remove_on_exit;
pub use sandbox::{sandbox, Confined, Filesystem, SandboxOptions};
pub use seccomp::{seccomp, SeccompOptions, Violation};

/// A confinement step that failed. Each names its step; the process may be half confined
/// after one (e.g. in its own mount namespace with capabilities left), so callers exit.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The thread count could not be read.
    #[error("cannot count this process's threads in /proc/self/task")]
    ListThreads {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Entering the sandbox's user namespace (to be root there for `sandbox`) failed.
    #[error("cannot enter the target's user namespace (to be root there for the sandbox)")]
    EnterUser {
        /// Why.
        #[source]
        source: crate::enter::EnterError,
    },
    /// unshare(CLONE_NEWUSER) for a user namespace of our own failed.
    #[error("cannot create a user namespace of its own (are unprivileged user namespaces off?)")]
    OwnUserns {
        /// The errno.
        #[source]
        source: Errno,
    },
    /// The Landlock domain could not be made or applied.
    #[error("cannot restrict the filesystem with Landlock")]
    Landlock {
        /// The errno.
        #[source]
        source: Errno,
    },
    /// Threads were running; `sandbox` would confine only the calling one.
    #[error(
        "{count} threads are running: sandbox() must run before any thread is started \
         (mount namespaces and capabilities are per thread)"
    )]
    Threads {
        /// How many.
        count: usize,
    },
    /// unshare(CLONE_NEWNS | CLONE_NEWIPC) failed, usually EPERM for want of CAP_SYS_ADMIN.
    #[error(
        "cannot create a mount namespace (needs CAP_SYS_ADMIN: enter the target's user \
         namespace as its root first)"
    )]
    Unshare {
        /// The errno.
        #[source]
        source: Errno,
    },
    /// Making every mount private failed.
    #[error("cannot make / private (mount --make-rprivate /)")]
    MakePrivate {
        /// The errno.
        #[source]
        source: Errno,
    },
    /// Mounting the new root's tmpfs failed.
    #[error("cannot mount the sandbox's root (a tmpfs) on {target}")]
    MountRoot {
        /// Where.
        target: &'static str,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// chdir failed.
    #[error("cannot change directory to {dir}")]
    Chdir {
        /// Where to.
        dir: &'static str,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// pivot_root failed.
    #[error("cannot pivot_root into the sandbox's root")]
    PivotRoot {
        /// The errno.
        #[source]
        source: Errno,
    },
    /// Detaching the old root failed.
    #[error("cannot detach the host's filesystem (umount2 MNT_DETACH)")]
    DetachOldRoot {
        /// The errno.
        #[source]
        source: Errno,
    },
    /// The read-only remount of the new root failed.
    #[error("cannot remount the sandbox's root read-only")]
    RemountReadOnly {
        /// The errno.
        #[source]
        source: Errno,
    },
    /// PR_SET_SECUREBITS failed.
    #[error("cannot lock the securebits")]
    Securebits {
        /// The errno.
        #[source]
        source: Errno,
    },
    /// Dropping a capability from the bounding set failed.
    #[error("cannot drop capability {cap} from the bounding set")]
    DropBounding {
        /// The capability's number.
        cap: u32,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// Clearing the ambient set failed.
    #[error("cannot clear the ambient capabilities")]
    ClearAmbient {
        /// The errno.
        #[source]
        source: Errno,
    },
    /// capset failed.
    #[error("cannot drop the effective and permitted capabilities (capset)")]
    Capset {
        /// The errno.
        #[source]
        source: Errno,
    },
    /// PR_SET_NO_NEW_PRIVS failed.
    #[error("cannot set no_new_privs")]
    NoNewPrivs {
        /// The errno.
        #[source]
        source: Errno,
    },
    /// seccompiler has no filter support for this CPU architecture.
    #[error("seccomp filters are not supported on {arch}")]
    Arch {
        /// `std::env::consts::ARCH`.
        arch: &'static str,
    },
    /// Building a BPF program failed (a bug in the allowlist).
    #[error("cannot compile the seccomp filter")]
    CompileFilter {
        /// seccompiler's reason.
        #[source]
        source: seccompiler::BackendError,
    },
    /// Installing a filter failed (no_new_privs, seccomp(2), or TSYNC naming a thread).
    #[error("cannot install the seccomp filter")]
    InstallFilter {
        /// seccompiler's reason.
        #[source]
        source: seccompiler::Error,
    },
    /// A file to remove on exit could not be examined.
    #[error("cannot examine {path} (to remove it on exit)")]
    StatRemovable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A path to remove on exit contains a NUL byte.
    #[error("{path}: a path with a NUL byte cannot be removed on exit")]
    NulInPath {
        /// The path.
        path: PathBuf,
    },
    /// Starting the remover process failed.
    #[error("cannot start the process that removes files on exit")]
    SpawnRemover {
        /// Why (pipe2 or fork).
        #[source]
        source: io::Error,
    },
}
