//! Every `unsafe` block and `libc::` call of the launcher, behind safe functions: fork, exec,
//! signal masks, pidfds, capabilities, and `Linux`, the real `Kernel` (fd passing is rr-ns's).
//! Callers see `OwnedFd`/`BorrowedFd` and typed errors; nothing here decides policy or order.
//! Each function is one syscall (or a tightly coupled pair) with a `// SAFETY:` note.

pub mod caps;
pub mod linux;
pub mod pidfd;
pub mod process;

pub use linux::Linux;
