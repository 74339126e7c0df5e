//! `sandbox`: what slirp4netns's `--enable-sandbox` does, for our helper. In the calling
//! process, after setup: no filesystem, no capabilities (optionally but CAP_NET_BIND_SERVICE),
//! securebits locked so that root gains nothing, and no_new_privs. No filesystem is, by
//! `Filesystem`, either a mount namespace of its own whose root is an empty, read-only tmpfs
//! (the host's filesystem detached) with a private IPC namespace, or, where the kernel has it,
//! a Landlock domain that denies every filesystem access (the empty root's detach waits for an
//! RCU grace period, ~5 ms here, and its namespace's teardown at exit another; Landlock costs
//! microseconds, which matters to a helper whose start and exit a short command waits for).
//! With `own_user_namespace` it first unshares a user namespace of its own, so that a process
//! without capabilities can still drop its bounding set and build the empty root.
//! Called once by the binaries, on the main thread before any other thread exists; the step
//! order lives in `run` and is tested against the recording `SandboxKernel`.
//!
//! The filesystem view, decided: **nothing**. The stack reads /etc/resolv.conf once, while its
//! configuration is built (netstack `config::host_resolvers`), and opens no file after that;
//! its host sockets need no path. So, unlike slirp4netns (which binds /etc and /run read-only
//! because libslirp re-reads resolv.conf), no host path is bound in. A feature that re-reads a
//! file at run time must bind that one file here, read-only, and say so.
//! The root is a tmpfs first mounted on /tmp (any existing directory would do; the host's /tmp
//! is unaffected, this is our own mount namespace), made the root with `pivot_root(".", ".")`,
//! the old root then detached, and the new root remounted read-only, nosuid, nodev, noexec.
//!
//! Capabilities, decided: all dropped by default. CAP_NET_BIND_SERVICE is kept only on request
//! (`keep_net_bind_service`, what slirp4netns does): it lets `add_hostfwd` bind a host port
//! below 1024 at run time, but only where the process's user namespace owns the host's network
//! namespace, i.e. when run as real root. A rootless helper sits in a child user namespace, so
//! the capability would buy nothing there.
//!
//! Not done here: entering the target's user namespace (the caller's job: after setns the
//! process is root there, which is all this needs); the API socket's removal (see
//! `remove_on_exit`); seccomp (`seccomp`). Without seccomp a sandboxed process could still
//! create a new user namespace, though it finds nothing there to mount or reveal.

use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;

use super::kernel::{Mount, SandboxKernel};
use super::ConfineError;

/// How the sandbox takes the filesystem away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Filesystem {
    /// A mount namespace whose root is an empty read-only tmpfs (slirp4netns's way).
    #[default]
    EmptyRoot,
    /// A Landlock domain denying every filesystem access; `EmptyRoot` where the kernel has no
    /// Landlock.
    LandlockOrEmptyRoot,
}

/// What `sandbox` keeps, and how it confines.
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// Keep CAP_NET_BIND_SERVICE (effective, permitted and bounding), as slirp4netns does, so
    /// forwards may bind host ports below 1024 when the process runs as real root.
    pub keep_net_bind_service: bool,
    /// Unshare a user namespace of its own first (the caller holds no capability otherwise).
    pub own_user_namespace: bool,
    /// How the filesystem goes.
    pub filesystem: Filesystem,
}

/// What `sandbox` did to the filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confined {
    /// The empty root.
    EmptyRoot,
    /// Landlock, at this ABI version.
    Landlock(u32),
}

/// CAP_NET_BIND_SERVICE (linux/capability.h).
const CAP_NET_BIND_SERVICE: u32 = 10;
/// Capabilities are numbered below 64 (two 32-bit words in capset's version 3).
const CAP_LIMIT: u32 = 64;

/// Where the new root is mounted before it becomes the root.
const STAGING: &str = "/tmp";
/// The new root: empty, tiny, and read-only once in place.
const ROOT_OPTIONS: &str = "size=4k,nr_inodes=16,mode=0555";
/// Flags every mount of the new root has.
const ROOT_FLAGS: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Securebits (capabilities(7)): root gains no capability by uid 0 or by execve
/// (NOROOT), changing uids changes no capability (NO_SETUID_FIXUP), no ambient capability can be
/// raised, and each of these is locked, as is KEEP_CAPS (off).
const SECUREBITS: libc::c_int = libc::SECBIT_NOROOT
    | libc::SECBIT_NOROOT_LOCKED
    | libc::SECBIT_NO_SETUID_FIXUP
    | libc::SECBIT_NO_SETUID_FIXUP_LOCKED
    | libc::SECBIT_KEEP_CAPS_LOCKED
    | libc::SECBIT_NO_CAP_AMBIENT_RAISE
    | libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;

/// Confines the calling process (see the module header). Must run while the process has a
/// single thread, with CAP_SYS_ADMIN in its user namespace (real root, or root of a user
/// namespace it entered), after the API socket is bound and before `seccomp`.
pub fn sandbox(opts: &SandboxOptions) -> Result<Confined, ConfineError> {
    let confined = run(&mut crate::sys::linux::Linux, opts)?;
    tracing::info!(
        keep_net_bind_service = opts.keep_net_bind_service,
        filesystem = ?confined,
        "sandboxed: no filesystem, no capabilities, no_new_privs"
    );
    Ok(confined)
}

/// The steps, in order; each failure names its step.
pub(crate) fn run(
    k: &mut impl SandboxKernel,
    opts: &SandboxOptions,
) -> Result<Confined, ConfineError> {
    let threads = k
        .threads()
        .map_err(|source| ConfineError::ListThreads { source })?;
    if threads != 1 {
        return Err(ConfineError::Threads { count: threads });
    }
    if opts.own_user_namespace {
        k.unshare(CloneFlags::CLONE_NEWUSER)
            .map_err(|source| ConfineError::OwnUserns { source })?;
    }
    let landlock = match opts.filesystem {
        Filesystem::EmptyRoot => None,
        // ENOSYS (not built), EOPNOTSUPP (not enabled at boot): the empty root instead.
        Filesystem::LandlockOrEmptyRoot => k.landlock_abi().ok(),
    };
    if landlock.is_none() {
        empty_root(k)?;
    }
    drop_capabilities(k, opts.keep_net_bind_service)?;
    k.set_no_new_privs()
        .map_err(|source| ConfineError::NoNewPrivs { source })?;
    match landlock {
        Some(abi) => {
            k.landlock_deny_filesystem(abi)
                .map_err(|source| ConfineError::Landlock { source })?;
            Ok(Confined::Landlock(abi))
        }
        None => Ok(Confined::EmptyRoot),
    }
}

/// A mount and IPC namespace of our own with an empty read-only root; needs CAP_SYS_ADMIN.
fn empty_root(k: &mut impl SandboxKernel) -> Result<(), ConfineError> {
    k.unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC)
        .map_err(|source| ConfineError::Unshare { source })?;
    k.mount(&Mount {
        source: None,
        target: "/",
        fstype: None,
        flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        data: None,
    })
    .map_err(|source| ConfineError::MakePrivate { source })?;
    k.mount(&Mount {
        source: Some("tmpfs"),
        target: STAGING,
        fstype: Some("tmpfs"),
        flags: ROOT_FLAGS,
        data: Some(ROOT_OPTIONS),
    })
    .map_err(|source| ConfineError::MountRoot {
        target: STAGING,
        source,
    })?;
    chdir(k, STAGING)?;
    // pivot_root(".", "."): the old root ends up stacked on the new one at "/", and the
    // umount of "." below takes it away (pivot_root(2), NOTES); no directory for it needed.
    k.pivot_root(Path::new("."), Path::new("."))
        .map_err(|source| ConfineError::PivotRoot { source })?;
    k.umount_detach(Path::new("."))
        .map_err(|source| ConfineError::DetachOldRoot { source })?;
    chdir(k, "/")?;
    k.mount(&Mount {
        source: None,
        target: "/",
        fstype: None,
        flags: MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | ROOT_FLAGS,
        data: None,
    })
    .map_err(|source| ConfineError::RemountReadOnly { source })
}

fn chdir(k: &mut impl SandboxKernel, dir: &'static str) -> Result<(), ConfineError> {
    k.chdir(Path::new(dir))
        .map_err(|source| ConfineError::Chdir { dir, source })
}

/// Securebits, then the bounding set, ambient set and finally the thread's own sets (the
/// first two need CAP_SETPCAP, which the last step gives up).
fn drop_capabilities(k: &mut impl SandboxKernel, keep_bind: bool) -> Result<(), ConfineError> {
    k.set_securebits(SECUREBITS)
        .map_err(|source| ConfineError::Securebits { source })?;
    for cap in 0..CAP_LIMIT {
        if keep_bind && cap == CAP_NET_BIND_SERVICE {
            continue;
        }
        match k.drop_bounding(cap) {
            Ok(()) => {}
            // Past CAP_LAST_CAP: every capability the kernel has is gone.
            Err(Errno::EINVAL) => break,
            Err(source) => return Err(ConfineError::DropBounding { cap, source }),
        }
    }
    match k.clear_ambient() {
        // EINVAL: a kernel before 4.3, which has no ambient set to clear.
        Ok(()) | Err(Errno::EINVAL) => {}
        Err(source) => return Err(ConfineError::ClearAmbient { source }),
    }
    let kept = if keep_bind {
        1 << CAP_NET_BIND_SERVICE
    } else {
        0
    };
    k.capset(kept)
        .map_err(|source| ConfineError::Capset { source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confine::kernel::fake::{Call, Recorder};

    fn mount(source: Option<&'static str>, target: &'static str, flags: MsFlags) -> Call {
        Call::Mount(Mount {
            source,
            target,
            fstype: source,
            flags,
            data: source.map(|_| ROOT_OPTIONS),
        })
    }

    /// The whole sequence up to the capability steps.
    fn filesystem_steps() -> Vec<Call> {
        vec![
            Call::Threads,
            Call::Unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC),
            mount(None, "/", MsFlags::MS_REC | MsFlags::MS_PRIVATE),
            mount(Some("tmpfs"), "/tmp", ROOT_FLAGS),
            Call::Chdir("/tmp".into()),
            Call::PivotRoot(".".into(), ".".into()),
            Call::UmountDetach(".".into()),
            Call::Chdir("/".into()),
            mount(
                None,
                "/",
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | ROOT_FLAGS,
            ),
        ]
    }

    #[test]
    fn steps_run_in_order_and_drop_every_capability_the_kernel_has() {
        let mut k = Recorder::default();
        run(&mut k, &SandboxOptions::default()).expect("sandbox");
        let mut want = filesystem_steps();
        want.push(Call::Securebits(SECUREBITS));
        want.extend((0..=41).map(Call::DropBounding));
        want.extend([Call::ClearAmbient, Call::Capset(0), Call::NoNewPrivs]);
        assert_eq!(k.calls, want);
    }

    #[test]
    fn keeping_net_bind_service_skips_it_in_the_bounding_set_and_keeps_it_effective() {
        let mut k = Recorder::default();
        let opts = SandboxOptions {
            keep_net_bind_service: true,
            ..SandboxOptions::default()
        };
        run(&mut k, &opts).expect("sandbox");
        let dropped: Vec<u32> = k
            .calls
            .iter()
            .filter_map(|c| match c {
                Call::DropBounding(cap) => Some(*cap),
                _ => None,
            })
            .collect();
        assert!(!dropped.contains(&10), "{dropped:?}");
        assert_eq!(dropped.len(), 41, "0..=40 but 10, then 41 (EINVAL)");
        assert!(k.calls.contains(&Call::Capset(1 << 10)));
        assert_eq!(k.calls.last(), Some(&Call::NoNewPrivs));
    }

    #[test]
    fn a_second_thread_stops_it_before_any_change() {
        let mut k = Recorder {
            threads: 3,
            ..Recorder::default()
        };
        let err = run(&mut k, &SandboxOptions::default()).expect_err("threads");
        assert!(matches!(err, ConfineError::Threads { count: 3 }), "{err:?}");
        assert_eq!(k.calls, vec![Call::Threads]);
    }

    #[test]
    fn an_unprivileged_unshare_fails_naming_the_step_and_goes_no_further() {
        let flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC;
        let mut k = Recorder {
            fail: Some((Call::Unshare(flags), Errno::EPERM)),
            ..Recorder::default()
        };
        let err = run(&mut k, &SandboxOptions::default()).expect_err("EPERM");
        assert!(
            matches!(
                err,
                ConfineError::Unshare {
                    source: Errno::EPERM
                }
            ),
            "{err:?}"
        );
        assert_eq!(k.calls.len(), 2);
    }

    #[test]
    fn a_failed_pivot_root_leaves_capabilities_alone() {
        let mut k = Recorder {
            fail: Some((Call::PivotRoot(".".into(), ".".into()), Errno::EINVAL)),
            ..Recorder::default()
        };
        let err = run(&mut k, &SandboxOptions::default()).expect_err("EINVAL");
        assert!(matches!(err, ConfineError::PivotRoot { .. }), "{err:?}");
        assert!(!k.calls.iter().any(|c| matches!(c, Call::Securebits(_))));
    }

    #[test]
    fn a_bounding_drop_failing_other_than_einval_is_an_error() {
        let mut k = Recorder {
            fail: Some((Call::DropBounding(7), Errno::EPERM)),
            ..Recorder::default()
        };
        let err = run(&mut k, &SandboxOptions::default()).expect_err("EPERM");
        assert!(
            matches!(err, ConfineError::DropBounding { cap: 7, .. }),
            "{err:?}"
        );
        assert!(!k.calls.contains(&Call::Capset(0)));
    }

    #[test]
    fn landlock_replaces_the_empty_root_in_our_own_user_namespace() {
        let mut k = Recorder {
            landlock: Ok(7),
            ..Recorder::default()
        };
        let opts = SandboxOptions {
            own_user_namespace: true,
            filesystem: Filesystem::LandlockOrEmptyRoot,
            ..SandboxOptions::default()
        };
        assert_eq!(run(&mut k, &opts).expect("sandbox"), Confined::Landlock(7));
        let mut want = vec![
            Call::Threads,
            Call::Unshare(CloneFlags::CLONE_NEWUSER),
            Call::LandlockAbi,
            Call::Securebits(SECUREBITS),
        ];
        want.extend((0..=41).map(Call::DropBounding));
        want.extend([
            Call::ClearAmbient,
            Call::Capset(0),
            Call::NoNewPrivs,
            Call::Landlock(7),
        ]);
        assert_eq!(k.calls, want);
    }

    #[test]
    fn without_landlock_the_empty_root_is_built_instead() {
        let mut k = Recorder {
            landlock: Err(Errno::EOPNOTSUPP),
            ..Recorder::default()
        };
        let opts = SandboxOptions {
            filesystem: Filesystem::LandlockOrEmptyRoot,
            ..SandboxOptions::default()
        };
        assert_eq!(run(&mut k, &opts).expect("sandbox"), Confined::EmptyRoot);
        let mut want = filesystem_steps();
        want.insert(1, Call::LandlockAbi);
        assert_eq!(k.calls[..want.len()], want[..]);
        assert_eq!(k.calls.last(), Some(&Call::NoNewPrivs));
    }

    #[test]
    fn a_kernel_without_ambient_capabilities_is_not_an_error() {
        let mut k = Recorder {
            fail: Some((Call::ClearAmbient, Errno::EINVAL)),
            ..Recorder::default()
        };
        run(&mut k, &SandboxOptions::default()).expect("EINVAL is no ambient set");
        assert_eq!(k.calls.last(), Some(&Call::NoNewPrivs));
    }
}
