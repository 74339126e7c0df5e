//! Every `unsafe` block of the rr-ns crate, behind safe functions taking `OwnedFd`/`BorrowedFd`.
//! Each function is one syscall (or a tightly coupled pair) with a `// SAFETY:` note.

pub mod fdpass;
pub mod inherit;
pub mod nsfs;
pub mod process;
