//! Every `unsafe` block of the netstack crate: tap ioctls, the few socket calls nix does not wrap,
//! and `pages::ZeroedBuf` (buffers straight from mmap).
//! Callers see safe functions taking `BorrowedFd`/`OwnedFd`; nothing here keeps state or decides policy.
//! Each function is one syscall (or one tightly coupled pair) with a `// SAFETY:` note.

pub mod pages;
pub mod socket;
pub mod tap;

use std::io;

/// A failed system call, naming the call.
#[derive(Debug, thiserror::Error)]
#[error("{call} failed")]
pub struct SysError {
    /// Name of the syscall or ioctl that failed.
    pub call: &'static str,
    /// The errno it returned.
    #[source]
    pub source: io::Error,
}

impl SysError {
    /// Captures `errno` right after a failing call.
    pub fn last(call: &'static str) -> SysError {
        SysError {
            call,
            source: io::Error::last_os_error(),
        }
    }
}

#[cfg(test)]
pub mod alloc_count;
