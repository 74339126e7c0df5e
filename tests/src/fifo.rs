//! Named pipes that a process run as the test user writes a signal into, read by the test with
//! a deadline: slirp4netns's `--ready-fd` byte and bubblewrap's `--info-fd` JSON; and one the
//! test writes, whose closing is the signal: slirp4netns's `--exit-fd`. The writer
//! gets the pipe through a shell redirection (`3>FIFO`), so nothing here passes descriptors.
//! The test opens the read end first (non-blocking, so the writer's open never waits), then
//! waits with poll(2) on the pipe and on the writer's pidfd: an exited writer ends the wait at
//! once instead of at the deadline. Called by the bubblewrap tests; never sleeps.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{chown, mkfifo, read, Gid, Uid};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{pidfd_open, Pid, PidfdFlags};

use crate::sandbox::User;

/// How a wait on a pipe ended without the data it wanted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FifoError {
    /// The writer closed its end (or never wrote and exited).
    #[error("the writer closed the pipe after {got:?}")]
    Closed {
        /// What had arrived by then.
        got: Vec<u8>,
    },
    /// The writer process exited while the pipe was still empty of what we wanted.
    #[error("the writer (pid {pid}) exited after writing {got:?}")]
    WriterExited {
        /// The writer's pid.
        pid: i32,
        /// What had arrived by then.
        got: Vec<u8>,
    },
    /// The deadline passed first.
    #[error("nothing more within {timeout:?} (got {got:?})")]
    Timeout {
        /// The bound that expired.
        timeout: Duration,
        /// What had arrived by then.
        got: Vec<u8>,
    },
}

/// A FIFO in a test directory, with its read end open.
pub struct Fifo {
    path: PathBuf,
    read_end: OwnedFd,
}

impl Fifo {
    /// Creates `dir/name` (mode 0600, owned by `user`, who opens it for writing) and opens its
    /// read end.
    pub fn create(dir: &Path, name: &str, user: &User) -> Fifo {
        let path = make(dir, name, user);
        let read_end = open(
            &path,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap_or_else(|e| panic!("open {} for reading: {e}", path.display()));
        Fifo { path, read_end }
    }

    /// The FIFO's path, for the writer's redirection.
    pub fn path(&self) -> &str {
        self.path.to_str().expect("temp dir paths are UTF-8")
    }

    /// Waits for the first byte the writer `pid` sends.
    pub fn first_byte(&self, pid: i32, timeout: Duration) -> Result<u8, FifoError> {
        let got = self.read_until(pid, timeout, |got| !got.is_empty())?;
        Ok(got[0])
    }

    /// Reads until the writer closes its end; `pid` is the writer.
    pub fn to_eof(&self, pid: i32, timeout: Duration) -> Result<Vec<u8>, FifoError> {
        match self.read_until(pid, timeout, |_| false) {
            Err(FifoError::Closed { got }) => Ok(got),
            Err(e) => Err(e),
            Ok(got) => Ok(got),
        }
    }

    /// Reads whatever arrives until `done(got)` holds, the writer closes or exits, or the
    /// deadline passes.
    fn read_until(
        &self,
        pid: i32,
        timeout: Duration,
        done: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<u8>, FifoError> {
        let deadline = Instant::now() + timeout;
        let pidfd = Pid::from_raw(pid)
            .and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok())
            .unwrap_or_else(|| panic!("pidfd_open({pid}): the writer is not a live process"));
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Once the writer has connected and gone, the pipe polls as HUP; before any writer
        // connected it polls as nothing, so the pidfd is what ends a wait for a writer that
        // never opened it.
        let mut writer_exited = false;
        loop {
            match read(&self.read_end, &mut buf) {
                Ok(0) if writer_exited || saw_hup(&self.read_end) => {
                    return Err(FifoError::Closed { got })
                }
                Ok(0) => {}
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if done(&got) {
                        return Ok(got);
                    }
                    continue;
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => panic!("read {}: {e}", self.path.display()),
            }
            if writer_exited {
                return Err(FifoError::WriterExited { pid, got });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(FifoError::Timeout { timeout, got });
            }
            let ts = Timespec::try_from(left).expect("timeouts here are far below i64 seconds");
            let mut fds = [
                PollFd::new(&self.read_end, PollFlags::IN),
                PollFd::new(&pidfd, PollFlags::IN),
            ];
            match poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => panic!("poll on {} and a pidfd: {e}", self.path.display()),
            }
            // The writer's last bytes may be in the pipe: read once more before giving up.
            writer_exited = !fds[1].revents().is_empty();
        }
    }
}

/// A FIFO the test holds open for writing and the test user's process reads: slirp4netns's
/// `--exit-fd`, whose peer closing is the signal to exit. The test's end is opened O_RDWR,
/// which never blocks on a FIFO (fifo(7)), so the reader's open finds a writer at once;
/// dropping `ExitPipe` closes the only writer and the reader sees HUP.
pub struct ExitPipe {
    path: PathBuf,
    _write_end: OwnedFd,
}

impl ExitPipe {
    /// Creates `dir/name` (mode 0600, owned by `user`) and opens the test's end.
    pub fn create(dir: &Path, name: &str, user: &User) -> ExitPipe {
        let path = make(dir, name, user);
        let write_end = open(&path, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
            .unwrap_or_else(|e| panic!("open {} read-write: {e}", path.display()));
        ExitPipe {
            path,
            _write_end: write_end,
        }
    }

    /// The FIFO's path, for the reader's redirection.
    pub fn path(&self) -> &str {
        self.path.to_str().expect("temp dir paths are UTF-8")
    }
}

/// mkfifo `dir/name`, mode 0600, owned by `user`.
fn make(dir: &Path, name: &str, user: &User) -> PathBuf {
    let path = dir.join(name);
    mkfifo(&path, Mode::from_bits_truncate(0o600))
        .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
    chown(
        &path,
        Some(Uid::from_raw(user.uid)),
        Some(Gid::from_raw(user.gid)),
    )
    .unwrap_or_else(|e| panic!("chown {} to {}: {e}", path.display(), user.name));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod 0600 {}: {e}", path.display()));
    path
}

/// True if the pipe reports HUP now: a writer connected and every writer has closed.
fn saw_hup(fd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
        && fds[0].revents().contains(PollFlags::HUP)
}
