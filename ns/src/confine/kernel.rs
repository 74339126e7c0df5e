//! The narrow seam between `sandbox`'s logic and the kernel: the calls whose order makes the
//! sandbox (namespaces, mounts, pivot_root, capabilities, no_new_privs, Landlock). `sys::linux::Linux`
//! implements it with real syscalls; `fake::Recorder` (tests only) records each call so unit
//! tests assert the exact sequence without privilege. Every call returns the bare `Errno`;
//! `sandbox` names the step. Only calls whose order matters belong here.

use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;

/// One mount(2) call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Source: the filesystem's name for a new mount; `None` for a propagation change or a
    /// remount.
    pub source: Option<&'static str>,
    /// Mount point.
    pub target: &'static str,
    /// Filesystem type for a new mount.
    pub fstype: Option<&'static str>,
    /// MS_* flags.
    pub flags: MsFlags,
    /// Filesystem options.
    pub data: Option<&'static str>,
}

/// Kernel calls whose order `sandbox` decides.
pub trait SandboxKernel {
    /// How many threads this process has (mount namespaces and capabilities are per thread).
    fn threads(&mut self) -> std::io::Result<usize>;
    /// unshare(2).
    fn unshare(&mut self, flags: CloneFlags) -> Result<(), Errno>;
    /// mount(2).
    fn mount(&mut self, m: &Mount) -> Result<(), Errno>;
    /// chdir(2).
    fn chdir(&mut self, dir: &Path) -> Result<(), Errno>;
    /// pivot_root(new_root, put_old).
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> Result<(), Errno>;
    /// umount2(target, MNT_DETACH).
    fn umount_detach(&mut self, target: &Path) -> Result<(), Errno>;
    /// prctl(PR_SET_SECUREBITS).
    fn set_securebits(&mut self, bits: i32) -> Result<(), Errno>;
    /// prctl(PR_CAPBSET_DROP); EINVAL when the kernel has no such capability.
    fn drop_bounding(&mut self, cap: u32) -> Result<(), Errno>;
    /// prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL).
    fn clear_ambient(&mut self) -> Result<(), Errno>;
    /// capset(2): effective = permitted = `caps`, inheritable empty.
    fn capset(&mut self, caps: u64) -> Result<(), Errno>;
    /// prctl(PR_SET_NO_NEW_PRIVS, 1).
    fn set_no_new_privs(&mut self) -> Result<(), Errno>;
    /// The Landlock ABI version (ENOSYS or EOPNOTSUPP: none).
    fn landlock_abi(&mut self) -> Result<u32, Errno>;
    /// A Landlock domain that denies every filesystem access (`sys::landlock`).
    fn landlock_deny_filesystem(&mut self, abi: u32) -> Result<(), Errno>;
}

#[cfg(test)]
pub mod fake {
    //! A `SandboxKernel` that records calls and fails the ones it is told to.

    use std::path::Path;

    use nix::errno::Errno;
    use nix::sched::CloneFlags;

    use super::{Mount, SandboxKernel};

    /// One recorded call.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        Threads,
        Unshare(CloneFlags),
        Mount(Mount),
        Chdir(String),
        PivotRoot(String, String),
        UmountDetach(String),
        Securebits(libc::c_int),
        DropBounding(u32),
        ClearAmbient,
        Capset(u64),
        NoNewPrivs,
        LandlockAbi,
        Landlock(u32),
    }

    /// Records every call; `threads` is what `threads()` answers; the first call equal to
    /// `fail.0` fails with `fail.1`. `last_cap` plays the kernel's CAP_LAST_CAP, `landlock`
    /// its Landlock ABI (or why there is none).
    pub struct Recorder {
        pub calls: Vec<Call>,
        pub threads: usize,
        pub last_cap: u32,
        pub landlock: Result<u32, Errno>,
        pub fail: Option<(Call, Errno)>,
    }

    impl Default for Recorder {
        fn default() -> Self {
            Recorder {
                calls: Vec::new(),
                threads: 1,
                last_cap: 40,
                landlock: Err(Errno::ENOSYS),
                fail: None,
            }
        }
    }

    impl Recorder {
        fn record(&mut self, call: Call) -> Result<(), Errno> {
            let failing = match &self.fail {
                Some((c, errno)) if *c == call => Some(*errno),
                _ => None,
            };
            self.calls.push(call);
            failing.map_or(Ok(()), Err)
        }
    }

    fn show(p: &Path) -> String {
        p.display().to_string()
    }

    impl SandboxKernel for Recorder {
        fn threads(&mut self) -> std::io::Result<usize> {
            self.calls.push(Call::Threads);
            Ok(self.threads)
        }
        fn unshare(&mut self, flags: CloneFlags) -> Result<(), Errno> {
            self.record(Call::Unshare(flags))
        }
        fn mount(&mut self, m: &Mount) -> Result<(), Errno> {
            self.record(Call::Mount(m.clone()))
        }
        fn chdir(&mut self, dir: &Path) -> Result<(), Errno> {
            self.record(Call::Chdir(show(dir)))
        }
        fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> Result<(), Errno> {
            self.record(Call::PivotRoot(show(new_root), show(put_old)))
        }
        fn umount_detach(&mut self, target: &Path) -> Result<(), Errno> {
            self.record(Call::UmountDetach(show(target)))
        }
        fn set_securebits(&mut self, bits: libc::c_int) -> Result<(), Errno> {
            self.record(Call::Securebits(bits))
        }
        fn drop_bounding(&mut self, cap: u32) -> Result<(), Errno> {
            if cap > self.last_cap {
                self.calls.push(Call::DropBounding(cap));
                return Err(Errno::EINVAL);
            }
            self.record(Call::DropBounding(cap))
        }
        fn clear_ambient(&mut self) -> Result<(), Errno> {
            self.record(Call::ClearAmbient)
        }
        fn capset(&mut self, caps: u64) -> Result<(), Errno> {
            self.record(Call::Capset(caps))
        }
        fn set_no_new_privs(&mut self) -> Result<(), Errno> {
            self.record(Call::NoNewPrivs)
        }
        fn landlock_abi(&mut self) -> Result<u32, Errno> {
            self.calls.push(Call::LandlockAbi);
            self.landlock
        }
        fn landlock_deny_filesystem(&mut self, abi: u32) -> Result<(), Errno> {
            self.record(Call::Landlock(abi))
        }
    }
}
