//! Process plumbing: fork, exec, signal masks and dispositions, re-raising a child's fatal
//! signal, stdio redirection for `--detach`, closing inherited fds (the persist holder, the
//! stack process), and listing /proc for the monitor.
//! Called by the launcher's process code (`launch`, `child`, `pidns`, `monitor`, `holder`,
//! `detach`), `supervise` and `persist`; decides nothing.

use std::convert::Infallible;
use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::{ForkResult, Pid};

/// Signals the launcher forwards to the command (issue 3): the terminal and job-control set.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Which side of a fork we are on.
pub enum Forked {
    /// The parent, with the child's pid.
    Parent(Pid),
    /// The child.
    Child,
}

/// fork(2). Callers must hold no threads (the launcher forks before starting any).
pub fn fork() -> nix::Result<Forked> {
    // SAFETY: the launcher is single-threaded whenever it forks (the netstack thread starts
    // only after the last fork), so the child may allocate and run arbitrary Rust code.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        ForkResult::Child => Ok(Forked::Child),
    }
}

/// The set of forwarded signals plus SIGCHLD, which supervisors wait on.
pub fn supervised_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Blocks the supervised signals and returns the previous mask (restored before exec).
pub fn block_supervised() -> nix::Result<SigSet> {
    let mut old = SigSet::empty();
    signal::sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&supervised_set()),
        Some(&mut old),
    )?;
    Ok(old)
}

/// Undoes what the launcher changed before exec: SIGPIPE back to default (Rust's runtime sets it
/// to SIG_IGN, which exec would keep) and the signal mask back to `old`.
pub fn restore_for_exec(old: &SigSet) -> nix::Result<()> {
    // SAFETY: installing SIG_DFL runs no handler code of ours; no other thread exists here.
    unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(old), None)
}

/// Why exec failed, with the exit status the shell convention gives it.
#[derive(Debug, thiserror::Error)]
#[error("cannot execute '{program}': {}", errno.desc())]
pub struct ExecError {
    /// The program as given.
    pub program: String,
    /// 127 (not found) or 126 (not executable).
    pub status: i32,
    /// Why exec failed.
    pub errno: Errno,
}

/// execvp(3) semantics with the shell's exit statuses: `argv[0]` with a slash is run as is,
/// otherwise each $PATH directory is tried in turn. Not found anywhere gives 127; found but
/// not executable (EACCES on an existing file, or any other error) gives 126. Unlike glibc's
/// execvp, an unreadable PATH directory does not turn "not found" into "permission denied".
/// A file without a `#!` line (ENOEXEC) is run by /bin/sh, as execvp does.
/// Returns only on failure.
pub fn exec(argv: &[OsString]) -> Result<Infallible, ExecError> {
    let program = argv
        .first()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fail = |errno: Errno, status: i32| ExecError {
        program: program.clone(),
        status,
        errno,
    };
    let cargs: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| fail(Errno::EINVAL, 126))?;
    let Some(first) = argv.first().filter(|p| !p.is_empty()) else {
        return Err(fail(Errno::ENOENT, 127));
    };
    let candidates: Vec<std::path::PathBuf> = if first.as_bytes().contains(&b'/') {
        vec![first.into()]
    } else {
        let path =
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        std::env::split_paths(&path)
            .map(|d| {
                if d.as_os_str().is_empty() {
                    ".".into()
                } else {
                    d
                }
            })
            .map(|d| d.join(first))
            .collect()
    };
    let mut denied = None;
    for c in candidates {
        let Ok(cpath) = CString::new(c.as_os_str().as_bytes()) else {
            continue;
        };
        let errno = match nix::unistd::execv(&cpath, &cargs) {
            Err(e) => e,
            Ok(never) => match never {},
        };
        match errno {
            Errno::ENOENT | Errno::ENOTDIR | Errno::ENAMETOOLONG | Errno::ELOOP => {}
            Errno::EACCES if c.metadata().is_err() => {}
            Errno::ENOEXEC => {
                let mut sh_args = vec![CString::from(c"/bin/sh"), cpath.clone()];
                sh_args.extend(cargs.iter().skip(1).cloned());
                let e = match nix::unistd::execv(c"/bin/sh", &sh_args) {
                    Err(e) => e,
                    Ok(never) => match never {},
                };
                return Err(fail(e, 126));
            }
            Errno::EACCES => denied = Some(Errno::EACCES),
            other => return Err(fail(other, 126)),
        }
    }
    Err(match denied {
        Some(e) => fail(e, 126),
        None => fail(Errno::ENOENT, 127),
    })
}

/// Kills ourselves with `sig` the way the shell expects from a child that died of it:
/// default disposition, unblocked, then raised. Returns only if we survived it.
pub fn reraise(sig: Signal) {
    // SAFETY: installing SIG_DFL runs no handler code of ours.
    let _ = unsafe { signal::signal(sig, SigHandler::SigDfl) };
    let mut set = SigSet::empty();
    set.add(sig);
    let _ = signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
    let _ = signal::raise(sig);
}

/// Points stdin, stdout and stderr at /dev/null (for `--detach`).
pub fn stdio_to_devnull() -> std::io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    nix::unistd::dup2_stdin(null.as_fd())?;
    nix::unistd::dup2_stdout(null.as_fd())?;
    nix::unistd::dup2_stderr(null.as_fd())?;
    Ok(())
}

/// Blocks until any signal in `set` arrives (they must be blocked); for the persist holder.
pub fn wait_forever(set: &SigSet) -> ! {
    loop {
        let _ = set.wait();
    }
}

/// A pipe whose write end a parent keeps open for as long as it lives: the child checks it
/// after setting its death signal, where getppid() cannot name a parent in an outer pid
/// namespace.
pub struct Lifeline {
    read: OwnedFd,
    write: Option<OwnedFd>,
}

impl Lifeline {
    /// A new pipe, both ends close-on-exec.
    pub fn new() -> nix::Result<Lifeline> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        Ok(Lifeline {
            read,
            write: Some(write),
        })
    }

    /// In the child: drop our copy of the write end, then report whether the parent's is open.
    pub fn parent_alive(&mut self) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        self.write = None;
        let mut fds = [PollFd::new(self.read.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(0) => true,
            Ok(_) => !fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLHUP)),
            Err(_) => false,
        }
    }
}

/// TUNSETPERSIST from <linux/if_tun.h>: _IOW('T', 203, int).
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;

/// Marks the tap device persistent, so closing its last fd does not unregister it there and
/// then: the unregistration (an RCU grace period, ~10-15 ms) would otherwise run inside the
/// launcher's exit. The device still goes away with its network namespace, which the kernel
/// tears down asynchronously once the last process and fd referring to it are gone.
pub fn tap_set_persist(tap: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: TUNSETPERSIST takes its argument by value; no memory is shared.
    let rc = unsafe { libc::ioctl(tap.as_raw_fd(), TUNSETPERSIST, 1 as libc::c_ulong) };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Closes every fd from `first` up (close_range(2)); for a process that will never return to
/// code owning those fds (the persist holder).
pub fn close_fds_from(first: u32) {
    // SAFETY: close_range takes integers only. The caller never touches the closed fds again:
    // it parks in `wait_forever` for the rest of its life.
    let _ = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) };
}

/// Closes every fd from 3 up except those in `keep` (close_range(2) over the gaps between
/// them); for a freshly forked process that never returns to code owning the closed fds (the
/// stack process, whose `helper::main` ends in exit).
pub fn close_fds_except(keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .filter(|&fd| fd >= 3)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first = 3u32;
    for fd in keep {
        if fd > first {
            close_range(first, fd - 1);
        }
        first = fd + 1;
    }
    close_range(first, u32::MAX);
}

fn close_range(first: u32, last: u32) {
    // SAFETY: close_range takes integers only. The fds closed belong to objects of the process
    // we forked from, which this process never drops or uses (see `close_fds_except`).
    let _ = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
}

/// Blocks `sig` too (on top of the supervised set), so it can be read from a signalfd.
pub fn block(sig: Signal) -> nix::Result<()> {
    let mut set = SigSet::empty();
    set.add(sig);
    signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
}

/// prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are reparented to us, not to init.
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// The /proc that was visible when it was opened. Held by the monitor so it can still list
/// processes after the command pivot_root()s away from it or joins another mount namespace.
pub struct ProcDir(OwnedFd);

impl ProcDir {
    /// Opens /proc (close-on-exec).
    pub fn open() -> nix::Result<ProcDir> {
        use nix::fcntl::OFlag;
        nix::fcntl::open(
            "/proc",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map(ProcDir)
    }

    /// The contents of /proc/PID/stat, if that process is visible.
    pub fn stat(&self, pid: i32) -> Option<String> {
        use nix::fcntl::OFlag;
        use std::io::Read;
        let path = format!("{pid}/stat");
        let fd = nix::fcntl::openat(
            self.0.as_fd(),
            path.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()?;
        let mut text = String::new();
        std::fs::File::from(fd).read_to_string(&mut text).ok()?;
        Some(text)
    }

    /// `(pid, contents of /proc/PID/stat)` of every process visible; processes that exit
    /// during the scan are left out.
    pub fn stats(&self) -> nix::Result<Vec<(i32, String)>> {
        use nix::fcntl::OFlag;
        let mut dir = nix::dir::Dir::openat(
            self.0.as_fd(),
            ".",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )?;
        let mut out = Vec::new();
        for entry in dir.iter() {
            let entry = entry?;
            let pid = entry
                .file_name()
                .to_str()
                .ok()
                .and_then(|n| n.parse::<i32>().ok());
            if let Some((pid, text)) = pid.and_then(|p| Some((p, self.stat(p)?))) {
                out.push((pid, text));
            }
        }
        Ok(out)
    }
}
