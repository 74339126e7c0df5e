//! Every `unsafe` block of the rr-ns crate, behind safe functions taking `OwnedFd`/`BorrowedFd`.
//! Each function is one syscall (or a tightly coupled pair) with a `// SAFETY:` note.

pub(crate) mod caps;
pub mod fdpass;
pub mod inherit;
pub(crate) mod landlock;
pub(crate) mod linux;
pub mod nsfs;
pub mod process;
pub(crate) mod remover;
