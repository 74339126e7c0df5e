//! Process file descriptors (pidfd_open(2), pidfd_send_signal(2)): a handle on one process
//! that never comes to name another, even after its pid is reused. Signalling through it is
//! how the launcher kills what it did not fork itself (`descendants`, `persist::stop`).
//! Called by `descendants`, `persist` and `sys::linux`; decides nothing.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;

/// An open pidfd.
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    /// pidfd_open(2): a handle on the process that has `pid` now.
    pub fn open(pid: i32) -> nix::Result<PidFd> {
        // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: the kernel just returned this fd to us; nothing else owns it.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// pidfd_send_signal(2) of `sig`; ESRCH once the process has been reaped.
    pub fn signal(&self, sig: Signal) -> nix::Result<()> {
        send(self.0.as_fd(), sig as libc::c_int)
    }

    /// Whether the process has not been reaped yet (a zombie still counts): while it holds,
    /// its pid names this process and no other. Signal 0 checks without sending anything.
    pub fn is_alive(&self) -> bool {
        send(self.0.as_fd(), 0).is_ok()
    }

    /// Waits until the process exits; false on timeout.
    pub fn wait(&self, timeout: Duration) -> nix::Result<bool> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        loop {
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(n) => return Ok(n > 0),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// pidfd_send_signal(pidfd, sig, NULL, 0).
fn send(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> nix::Result<()> {
    // SAFETY: a NULL siginfo means "as kill(2) would"; no memory is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reaped_process_refuses_every_signal_through_its_pidfd() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = i32::try_from(child.id()).expect("pid fits");
        let fd = PidFd::open(pid).expect("pidfd_open of our child");
        assert!(
            fd.wait(Duration::from_secs(30)).expect("poll"),
            "true did not exit"
        );
        assert!(
            fd.is_alive(),
            "an exited, unreaped child still holds its pid"
        );
        child.wait().expect("reap");
        // From here its pid may be handed to any new process; the pidfd never follows it.
        assert!(!fd.is_alive());
        assert_eq!(fd.signal(Signal::SIGKILL), Err(Errno::ESRCH));
    }
}
