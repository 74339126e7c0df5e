//! The narrow seam between launcher logic and the kernel, covering the sandbox child's whole
//! path from fork to exec: namespaces, id maps, tap0 and its configuration, the setup
//! channel's messages, mounts (and the one file written for a mount, the generated
//! resolv.conf), credentials, and the forks, signal-mask changes and exec around them.
//! `sys::Linux` implements it with real syscalls; `fake::Recorder` (tests only) records each
//! call, and answers as the kernel would where later calls depend on it (pids after a fork,
//! the parent's messages), so unit tests can assert the exact order without privilege.
//! Keep it to operations whose order the launcher decides. Creating an fd that changes no
//! process state (the monitor's /proc handle, a signalfd, the lifeline pipe) stays outside,
//! and so does everything the parent does after the fork (the parent's side is not faked).

use std::convert::Infallible;
use std::ffi::OsString;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use netstack::config::Addressing;
use netstack::netconf::NetconfError;
use netstack::tap::TapError;
use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use rr_ns::fdpass::Channel;

use crate::sys::process::{ExecError, Forked, Lifeline};

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

/// How tap0 is configured inside a new sandbox (`netstack::netconf::configure`'s inputs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapConfig {
    /// Interface name.
    pub name: String,
    /// MTU.
    pub mtu: u32,
    /// The sandbox's addresses and routes.
    pub addr: Addressing,
    /// Configure IPv6 too.
    pub ipv6: bool,
    /// MAC address; the kernel's random one if unset.
    pub mac: Option<[u8; 6]>,
    /// The sandbox's own addresses (kernel mode: leased).
    pub sandbox: netstack::netconf::SandboxAddrs,
    /// Kernel mode: the parent creates the interface (a veth peer) instead of a tap.
    pub veth: bool,
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
    /// poll(2) on `lifeline` (after dropping our copy of its write end): whether the parent
    /// still holds its end. For a child whose parent is outside its pid namespace.
    fn parent_alive(&mut self, lifeline: &mut Lifeline) -> bool;
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

    /// Creates the tap device `name` in our network namespace and opens it.
    fn open_tap(&mut self, name: &str) -> Result<OwnedFd, TapError>;
    /// Configures the tap device and loopback over netlink (link, addresses, routes).
    fn configure_tap(&mut self, tap: &TapConfig) -> Result<(), NetconfError>;
    /// ioctl(TUNSETPERSIST): the device outlives its last fd (until its namespace goes).
    fn persist_tap(&mut self, tap: BorrowedFd<'_>) -> Result<(), KernelError>;

    /// sendmsg(2) of a one-byte `tag` with `fds` on the setup channel.
    fn send(&mut self, chan: &Channel, tag: u8, fds: &[BorrowedFd<'_>]) -> Result<(), KernelError>;
    /// recvmsg(2) of one message's tag from the setup channel; `None` when the other end is
    /// closed. Fds that come with it are closed.
    fn recv(&mut self, chan: &Channel) -> Result<Option<u8>, KernelError>;

    /// fork(2); the caller holds no threads.
    fn fork(&mut self) -> Result<Forked, KernelError>;
    /// getpid(2).
    fn pid(&mut self) -> i32;
    /// sigprocmask(SIG_BLOCK) of `sig`, on top of what is blocked.
    fn block_signal(&mut self, sig: Signal) -> Result<(), KernelError>;
    /// prctl(PR_SET_CHILD_SUBREAPER, 1).
    fn set_child_subreaper(&mut self) -> Result<(), KernelError>;
    /// Points stdin, stdout and stderr at /dev/null (dup2(2) three times).
    fn stdio_to_devnull(&mut self) -> Result<(), KernelError>;
    /// SIGPIPE back to its default and the signal mask back to `mask`, for exec.
    fn restore_for_exec(&mut self, mask: &SigSet) -> Result<(), KernelError>;
    /// execve(2) of `argv` with execvp's PATH search; returns only on failure.
    fn exec(&mut self, argv: &[OsString]) -> Result<Infallible, ExecError>;
}

#[cfg(test)]
pub mod fake {
    //! A `Kernel` that records calls and fails where told. It keeps the little state later
    //! calls depend on: its own pid and its parent's, which a fork changes (the caller always
    //! goes on as the child), and the parent's replies on the setup channel.

    use std::collections::VecDeque;

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
        LifelineCheck,
        OpenTap(String),
        ConfigureTap(TapConfig),
        PersistTap,
        /// A tag and how many fds went with it.
        Send(u8, usize),
        Recv,
        Fork,
        Getpid,
        Block(Signal),
        Subreaper,
        StdioToDevnull,
        RestoreMask,
        Exec(Vec<OsString>),
    }

    /// Where the next fork's child lands after unshare or setns with CLONE_NEWPID.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum PidNs {
        /// A new namespace: the child is its pid 1.
        New,
        /// An existing one: the child gets some pid there.
        Joined,
    }

    /// Records every call; `pid` and `ppid` are what getpid and getppid return (a fork
    /// moves both on); `replies` are the tags recv returns, in order, then EOF; `fail_*`
    /// make that call fail; `lifeline_cut` says the parent outside our pid namespace is gone.
    #[derive(Debug, Default)]
    pub struct Recorder {
        pub calls: Vec<Call>,
        pub pid: i32,
        pub ppid: i32,
        pub replies: VecDeque<u8>,
        pub fail_unshare: Option<Errno>,
        pub fail_clear_groups: Option<Errno>,
        pub fail_setns_pid: Option<Errno>,
        pub lifeline_cut: bool,
        pub pid_ns: Option<PidNs>,
    }

    impl Recorder {
        pub fn with_ppid(ppid: i32) -> Recorder {
            Recorder {
                ppid,
                ..Default::default()
            }
        }

        /// Notes that children forked from now on land in a pid namespace.
        fn note_pid_ns(&mut self, flags: CloneFlags, ns: PidNs) {
            if flags.contains(CloneFlags::CLONE_NEWPID) {
                self.pid_ns = Some(ns);
            }
        }
    }

    impl Kernel for Recorder {
        fn unshare(&mut self, flags: CloneFlags) -> Result<(), KernelError> {
            self.calls.push(Call::Unshare(flags));
            self.note_pid_ns(flags, PidNs::New);
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
            self.note_pid_ns(flags, PidNs::Joined);
            match self.fail_setns_pid {
                Some(e) => Err(KernelError::new("setns", pid.to_string(), e)),
                None => Ok(()),
            }
        }
        fn setns_file(&mut self, path: &Path, flag: CloneFlags) -> Result<(), KernelError> {
            self.calls.push(Call::SetnsFile(path.into(), flag));
            self.note_pid_ns(flag, PidNs::Joined);
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
        fn parent_alive(&mut self, _lifeline: &mut Lifeline) -> bool {
            self.calls.push(Call::LifelineCheck);
            !self.lifeline_cut
        }
        fn open_tap(&mut self, name: &str) -> Result<OwnedFd, TapError> {
            self.calls.push(Call::OpenTap(name.into()));
            // Any fd will do: the fake sends it nowhere.
            let null = std::fs::File::open("/dev/null").expect("/dev/null opens");
            Ok(null.into())
        }
        fn configure_tap(&mut self, tap: &TapConfig) -> Result<(), NetconfError> {
            self.calls.push(Call::ConfigureTap(tap.clone()));
            Ok(())
        }
        fn persist_tap(&mut self, _tap: BorrowedFd<'_>) -> Result<(), KernelError> {
            self.calls.push(Call::PersistTap);
            Ok(())
        }
        fn send(
            &mut self,
            _chan: &Channel,
            tag: u8,
            fds: &[BorrowedFd<'_>],
        ) -> Result<(), KernelError> {
            self.calls.push(Call::Send(tag, fds.len()));
            Ok(())
        }
        fn recv(&mut self, _chan: &Channel) -> Result<Option<u8>, KernelError> {
            self.calls.push(Call::Recv);
            Ok(self.replies.pop_front())
        }
        fn fork(&mut self) -> Result<Forked, KernelError> {
            self.calls.push(Call::Fork);
            // In a pid namespace the child's parent is outside it: getppid() says 0.
            (self.pid, self.ppid) = match self.pid_ns.take() {
                Some(PidNs::New) => (1, 0),
                Some(PidNs::Joined) => (self.pid + 1, 0),
                None => (self.pid + 1, self.pid),
            };
            Ok(Forked::Child)
        }
        fn pid(&mut self) -> i32 {
            self.calls.push(Call::Getpid);
            self.pid
        }
        fn block_signal(&mut self, sig: Signal) -> Result<(), KernelError> {
            self.calls.push(Call::Block(sig));
            Ok(())
        }
        fn set_child_subreaper(&mut self) -> Result<(), KernelError> {
            self.calls.push(Call::Subreaper);
            Ok(())
        }
        fn stdio_to_devnull(&mut self) -> Result<(), KernelError> {
            self.calls.push(Call::StdioToDevnull);
            Ok(())
        }
        fn restore_for_exec(&mut self, _mask: &SigSet) -> Result<(), KernelError> {
            self.calls.push(Call::RestoreMask);
            Ok(())
        }
        fn exec(&mut self, argv: &[OsString]) -> Result<Infallible, ExecError> {
            self.calls.push(Call::Exec(argv.to_vec()));
            // There is nothing to run: exec "fails" as for a missing program, so the path
            // returns to the test.
            Err(ExecError {
                program: argv
                    .first()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                status: 127,
                errno: Errno::ENOENT,
            })
        }
    }
}
