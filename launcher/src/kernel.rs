//! The narrow seam between launcher logic and the kernel: namespaces, id maps, mounts (and the
//! one file written for a mount, the generated resolv.conf), credentials. `sys::Linux`
//! implements it with real syscalls; `fake::Recorder` (tests only) records each call so unit
//! tests can assert the exact order without privilege.
//! Keep it to operations whose order matters; fd passing, fork and exec live in `sys` directly.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;

/// A file under /proc/self that setup writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcFile {
    /// /proc/self/setgroups
    Setgroups,
    /// /proc/self/uid_map
    UidMap,
    /// /proc/self/gid_map
    GidMap,
    /// /proc/self/timens_offsets
    TimensOffsets,
}

impl ProcFile {
    /// Its path.
    pub fn path(self) -> &'static str {
        match self {
            ProcFile::Setgroups => "/proc/self/setgroups",
            ProcFile::UidMap => "/proc/self/uid_map",
            ProcFile::GidMap => "/proc/self/gid_map",
            ProcFile::TimensOffsets => "/proc/self/timens_offsets",
        }
    }
}

/// One mount(2) call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Source (device, directory for a bind, or the fs name).
    pub source: Option<PathBuf>,
    /// Mount point.
    pub target: PathBuf,
    /// Filesystem type.
    pub fstype: Option<&'static str>,
    /// MS_* flags.
    pub flags: MsFlags,
}

/// A failed kernel call, naming it and its argument.
#[derive(Debug, thiserror::Error)]
#[error("{call}{}{arg}", if arg.is_empty() { "" } else { " " })]
pub struct KernelError {
    /// The syscall or action.
    pub call: &'static str,
    /// Its main argument, for the message.
    pub arg: String,
    /// The errno.
    #[source]
    pub errno: Errno,
}

impl KernelError {
    /// Builds an error for `call` on `arg`.
    pub fn new(call: &'static str, arg: impl Into<String>, errno: Errno) -> KernelError {
        KernelError {
            call,
            arg: arg.into(),
            errno,
        }
    }
}

/// Kernel operations whose order the launcher's logic decides.
pub trait Kernel {
    /// unshare(2).
    fn unshare(&mut self, flags: CloneFlags) -> Result<(), KernelError>;
    /// Writes a /proc/self file in one write(2).
    fn write_proc(&mut self, file: ProcFile, contents: &str) -> Result<(), KernelError>;
    /// prctl(PR_SET_PDEATHSIG).
    fn set_pdeathsig(&mut self, sig: Signal) -> Result<(), KernelError>;
    /// getppid(2).
    fn parent_pid(&mut self) -> i32;
    /// setns(2) on a pidfd of `pid` with several flags at once.
    fn setns_pid(&mut self, pid: i32, flags: CloneFlags) -> Result<(), KernelError>;
    /// setns(2) on a namespace file.
    fn setns_file(&mut self, path: &Path, flag: CloneFlags) -> Result<(), KernelError>;
    /// mount(2).
    fn mount(&mut self, m: &Mount) -> Result<(), KernelError>;
    /// Creates the file `path` (it must not exist) with mode 0644 whatever the umask, and
    /// writes `contents` to it.
    fn write_file(&mut self, path: &Path, contents: &str) -> Result<(), KernelError>;
    /// umount2(MNT_DETACH).
    fn umount_detach(&mut self, target: &Path) -> Result<(), KernelError>;
    /// pivot_root(2).
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> Result<(), KernelError>;
    /// chroot(2).
    fn chroot(&mut self, dir: &Path) -> Result<(), KernelError>;
    /// chdir(2).
    fn chdir(&mut self, dir: &Path) -> Result<(), KernelError>;
    /// sethostname(2).
    fn sethostname(&mut self, name: &str) -> Result<(), KernelError>;
    /// setgroups(0, NULL).
    fn clear_groups(&mut self) -> Result<(), KernelError>;
    /// setresgid(gid, gid, gid).
    fn setgid(&mut self, gid: u32) -> Result<(), KernelError>;
    /// setresuid(uid, uid, uid).
    fn setuid(&mut self, uid: u32) -> Result<(), KernelError>;
    /// Makes every permitted capability inheritable and ambient, so exec keeps them.
    fn keep_caps(&mut self) -> Result<(), KernelError>;
}

#[cfg(test)]
pub mod fake {
    //! A `Kernel` that records calls and fails where told.

    use super::*;

    /// One recorded call.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        Unshare(CloneFlags),
        Write(ProcFile, String),
        Pdeathsig(Signal),
        Getppid,
        SetnsPid(i32, CloneFlags),
        SetnsFile(PathBuf, CloneFlags),
        Mount(Mount),
        WriteFile(PathBuf, String),
        Umount(PathBuf),
        PivotRoot(PathBuf, PathBuf),
        Chroot(PathBuf),
        Chdir(PathBuf),
        Hostname(String),
        ClearGroups,
        Setgid(u32),
        Setuid(u32),
        KeepCaps,
    }

    /// Records every call; `ppid` is what getppid returns; `fail_unshare` makes unshare fail.
    #[derive(Debug, Default)]
    pub struct Recorder {
        pub calls: Vec<Call>,
        pub ppid: i32,
        pub fail_unshare: Option<Errno>,
        pub fail_clear_groups: Option<Errno>,
        pub fail_setns_pid: Option<Errno>,
    }

    impl Recorder {
        pub fn with_ppid(ppid: i32) -> Recorder {
            Recorder {
                ppid,
                ..Default::default()
            }
        }
    }

    impl Kernel for Recorder {
        fn unshare(&mut self, flags: CloneFlags) -> Result<(), KernelError> {
            self.calls.push(Call::Unshare(flags));
            match self.fail_unshare {
                Some(e) => Err(KernelError::new("unshare", "", e)),
                None => Ok(()),
            }
        }
        fn write_proc(&mut self, file: ProcFile, contents: &str) -> Result<(), KernelError> {
            self.calls.push(Call::Write(file, contents.into()));
            Ok(())
        }
        fn set_pdeathsig(&mut self, sig: Signal) -> Result<(), KernelError> {
            self.calls.push(Call::Pdeathsig(sig));
            Ok(())
        }
        fn parent_pid(&mut self) -> i32 {
            self.calls.push(Call::Getppid);
            self.ppid
        }
        fn setns_pid(&mut self, pid: i32, flags: CloneFlags) -> Result<(), KernelError> {
            self.calls.push(Call::SetnsPid(pid, flags));
            match self.fail_setns_pid {
                Some(e) => Err(KernelError::new("setns", pid.to_string(), e)),
                None => Ok(()),
            }
        }
        fn setns_file(&mut self, path: &Path, flag: CloneFlags) -> Result<(), KernelError> {
            self.calls.push(Call::SetnsFile(path.into(), flag));
            Ok(())
        }
        fn mount(&mut self, m: &Mount) -> Result<(), KernelError> {
            self.calls.push(Call::Mount(m.clone()));
            Ok(())
        }
        fn write_file(&mut self, path: &Path, contents: &str) -> Result<(), KernelError> {
            self.calls
                .push(Call::WriteFile(path.into(), contents.into()));
            Ok(())
        }
        fn umount_detach(&mut self, target: &Path) -> Result<(), KernelError> {
            self.calls.push(Call::Umount(target.into()));
            Ok(())
        }
        fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> Result<(), KernelError> {
            self.calls
                .push(Call::PivotRoot(new_root.into(), put_old.into()));
            Ok(())
        }
        fn chroot(&mut self, dir: &Path) -> Result<(), KernelError> {
            self.calls.push(Call::Chroot(dir.into()));
            Ok(())
        }
        fn chdir(&mut self, dir: &Path) -> Result<(), KernelError> {
            self.calls.push(Call::Chdir(dir.into()));
            Ok(())
        }
        fn sethostname(&mut self, name: &str) -> Result<(), KernelError> {
            self.calls.push(Call::Hostname(name.into()));
            Ok(())
        }
        fn clear_groups(&mut self) -> Result<(), KernelError> {
            self.calls.push(Call::ClearGroups);
            match self.fail_clear_groups {
                Some(e) => Err(KernelError::new("setgroups", "[]", e)),
                None => Ok(()),
            }
        }
        fn setgid(&mut self, gid: u32) -> Result<(), KernelError> {
            self.calls.push(Call::Setgid(gid));
            Ok(())
        }
        fn setuid(&mut self, uid: u32) -> Result<(), KernelError> {
            self.calls.push(Call::Setuid(uid));
            Ok(())
        }
        fn keep_caps(&mut self) -> Result<(), KernelError> {
            self.calls.push(Call::KeepCaps);
            Ok(())
        }
    }
}
