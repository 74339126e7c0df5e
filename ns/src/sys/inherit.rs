//! Taking ownership of fds a process inherited and was told about by number on its command
//! line (slirp4netns's `--ready-fd 3 --exit-fd 4`, `--netns-type=tapfd FD`).
//! Called once by a drop-in's `main`, before it opens anything; no fd number is assumed.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Highest standard stream fd: 0, 1 and 2 belong to std's stdin, stdout and stderr.
const LAST_STDIO_FD: RawFd = 2;

/// Set by the first `take`; a second call could hand out a second owner of the same fd.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Why inherited fds could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InheritError {
    /// The number is negative or a standard stream, which std owns.
    #[error("fd {fd} is {}", if *.fd < 0 { "negative" } else { "a standard stream (0-2)" })]
    Reserved {
        /// The number.
        fd: RawFd,
    },
    /// The same number was given twice.
    #[error("fd {fd} is named twice")]
    Duplicate {
        /// The number.
        fd: RawFd,
    },
    /// Nothing is open at that number.
    #[error("fd {fd} is not open")]
    NotOpen {
        /// The number.
        fd: RawFd,
    },
    /// `take` was called before in this process.
    #[error("inherited fds were already taken")]
    Again,
}

/// Takes ownership of the inherited fds `fds` (each open, distinct and above 2), in order.
/// Callable once per process, first thing in `main`: until then nothing in the process owns
/// them. Close-on-exec is left as inherited.
pub fn take(fds: &[RawFd]) -> Result<Vec<OwnedFd>, InheritError> {
    for (i, &fd) in fds.iter().enumerate() {
        if fd <= LAST_STDIO_FD {
            return Err(InheritError::Reserved { fd });
        }
        if fds.get(..i).is_some_and(|before| before.contains(&fd)) {
            return Err(InheritError::Duplicate { fd });
        }
        // SAFETY: F_GETFD only reads the flags of whatever is at `fd` (EBADF if nothing);
        // it touches no memory of ours and changes nothing.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(InheritError::NotOpen { fd });
        }
    }
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(InheritError::Again);
    }
    Ok(fds
        .iter()
        // SAFETY: each fd is open (F_GETFD succeeded), above the standard streams, named once
        // in `fds`, and `TAKEN` makes this the only call in the process; the caller guarantees
        // (see above) that nothing in the process owned them before, so each OwnedFd is the
        // only owner of its fd.
        .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, IntoRawFd};

    use super::*;

    #[test]
    fn bad_numbers_are_refused_before_anything_is_taken() {
        assert_eq!(take(&[1]).unwrap_err(), InheritError::Reserved { fd: 1 });
        assert_eq!(take(&[-1]).unwrap_err(), InheritError::Reserved { fd: -1 });
        let (r, _w) = nix::unistd::pipe().unwrap();
        let n = r.as_raw_fd();
        assert_eq!(
            take(&[n, n]).unwrap_err(),
            InheritError::Duplicate { fd: n }
        );
        // A number far above anything open here.
        assert_eq!(
            take(&[4000]).unwrap_err(),
            InheritError::NotOpen { fd: 4000 }
        );
    }

    #[test]
    fn open_fds_are_taken_once() {
        let (r, w) = nix::unistd::pipe().unwrap();
        // Give up ownership, as an inherited fd has none in this process.
        let (r, w) = (r.into_raw_fd(), w.into_raw_fd());
        let fds = take(&[w, r]).unwrap();
        assert_eq!(
            fds.iter().map(|f| f.as_raw_fd()).collect::<Vec<_>>(),
            [w, r]
        );
        nix::unistd::write(&fds[0], b"1").unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(nix::unistd::read(&fds[1], &mut buf).unwrap(), 1);
        assert_eq!(take(&[]).unwrap_err(), InheritError::Again);
    }
}
