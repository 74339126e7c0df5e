//! The remover process behind `confine::remove_on_exit`: forked before confinement, it waits
//! for the confined process to end (EOF on a pipe whose only write end that process holds),
//! then unlinks each target that is still the same file (device and inode), and exits.
//! After fork the child makes only async-signal-safe calls on memory prepared before it
//! (no allocation, no lock, no Rust I/O), so forking a process with threads is sound.
//! It takes no input but the EOF, so a compromised helper cannot steer it.

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;
use nix::unistd::{ForkResult, Pid};

/// The remover's name in `ps` (at most 15 bytes, TASK_COMM_LEN - 1).
const NAME: &std::ffi::CStr = c"rr-remove-exit";

/// Signals a terminal or a group kill may send that the remover ignores, so that it outlives
/// the helper long enough to clean up (SIGKILL still ends it).
const IGNORED: [libc::c_int; 8] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGPIPE,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

/// A file to remove, known by path and by identity.
#[derive(Debug)]
pub struct Target {
    /// Its path (relative paths resolve against the working directory at fork time).
    pub path: CString,
    /// `st_dev` when it was registered.
    pub dev: u64,
    /// `st_ino` when it was registered.
    pub ino: u64,
}

/// Forks the remover. Returns its pid and the pipe's write end: the remover acts once every
/// copy of that fd is closed, so the caller keeps it open exactly as long as it lives.
pub fn spawn(targets: &[Target]) -> io::Result<(Pid, OwnedFd)> {
    let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // SAFETY: the child runs only `remover`, which makes async-signal-safe syscalls on memory
    // that existed before the fork and ends in _exit, so it is sound even if other threads
    // held locks at the time of the fork.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => remover(read_end.as_raw_fd(), write_end.as_raw_fd(), targets),
        ForkResult::Parent { child } => Ok((child, write_end)),
    }
}

/// The child's whole life. Never returns and never unwinds.
fn remover(read_end: RawFd, write_end: RawFd, targets: &[Target]) -> ! {
    // SAFETY: closing our copy of the write end; nothing in this process uses it again.
    unsafe { libc::close(write_end) };
    for sig in IGNORED {
        ignore(sig);
    }
    // SAFETY: setsid takes no arguments; failing (already a group leader) is harmless. It keeps
    // a kill of the helper's process group from ending the remover before it cleans up.
    unsafe { libc::setsid() };
    // SAFETY: NAME is a NUL-terminated string that outlives the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, NAME.as_ptr()) };
    let fd = keep_only(read_end);
    wait_for_eof(fd);
    for target in targets {
        remove_if_same(target);
    }
    // SAFETY: _exit ends the process without running Rust or libc exit handlers, which
    // belong to the parent.
    unsafe { libc::_exit(0) }
}

/// sigaction(sig, SIG_IGN).
fn ignore(sig: libc::c_int) {
    // SAFETY: all-zero is a valid `sigaction`: empty mask, no flags, SIG_DFL.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = libc::SIG_IGN;
    // SAFETY: `action` is initialised and outlives the call; we do not ask for the old one.
    unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) };
}

/// Moves `read_end` to fd 0 and closes every other fd (stdio, the ready pipe, the tap...), so
/// the remover holds nothing that anyone waits on. Returns the fd to read.
fn keep_only(read_end: RawFd) -> RawFd {
    let mut fd = read_end;
    if read_end != 0 {
        // SAFETY: dup2 onto fd 0 replaces stdin, which the remover does not use.
        if unsafe { libc::dup2(read_end, 0) } == 0 {
            fd = 0;
        }
    }
    if fd == 0 {
        // SAFETY: close_range(1, ~0U, 0) closes fds this process no longer needs; nothing
        // refers to them after this point. Failure (ENOSYS before Linux 5.9) leaves them open.
        unsafe {
            libc::syscall(
                libc::SYS_close_range,
                1 as libc::c_uint,
                libc::c_uint::MAX,
                0,
            )
        };
    }
    fd
}

/// Reads `fd` until EOF (or an error other than EINTR); data, if any, is ignored.
fn wait_for_eof(fd: RawFd) {
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: `byte` is a writable buffer of exactly the length passed.
        let n = unsafe { libc::read(fd, byte.as_mut_ptr().cast(), byte.len()) };
        if n > 0 {
            continue;
        }
        if n < 0 && nix::errno::Errno::last() == nix::errno::Errno::EINTR {
            continue;
        }
        return;
    }
}

/// Unlinks `target` if the path still names the same file (it may have been replaced).
fn remove_if_same(target: &Target) {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `target.path` is NUL-terminated; `st` is writable storage for one `stat`.
    if unsafe { libc::lstat(target.path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return;
    }
    // SAFETY: lstat returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    if st.st_dev == target.dev && st.st_ino == target.ino {
        // SAFETY: `target.path` is NUL-terminated and outlives the call.
        unsafe { libc::unlink(target.path.as_ptr()) };
    }
}
