//! What the `rootless-run` launcher and the drop-in binaries share below the network stack:
//! passing fds between a process inside a sandbox's namespaces and one outside (`fdpass`),
//! joining an existing sandbox's network namespace (`enter`), taking fds inherited by number
//! (`inherit`), forking or dying of a signal safely (`process`), and confining the helper
//! after setup (`confine`: sandbox, seccomp, removal of files on exit, and `Helper`, the
//! sequence rootless-run's stack process and rr-slirp4netns both run), the binaries'
//! logging set-up (`logging`), and the forked namespace child's life (`forked`).
//! Library only; no policy, no CLI. Grows by one module per shared concern, each moved here
//! from the launcher rather than copied.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod confine;
pub mod enter;
pub mod forked;
pub mod logging;
#[allow(unsafe_code)]
pub mod sys;

pub use sys::{fdpass, inherit, process};
