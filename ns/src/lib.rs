//! What the `rootless-run` launcher and the drop-in binaries share below the network stack:
//! passing fds between a process inside a sandbox's namespaces and one outside (`fdpass`).
//! Library only; no policy, no CLI. Grows by one module per shared concern (entering
//! namespaces, confinement), each moved here from the launcher rather than copied.
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[allow(unsafe_code)]
pub mod sys;

pub use sys::fdpass;
