//! rootless-run's userspace network stack: carries a sandbox's TCP, UDP and ICMP, read as
//! Ethernet frames from its tap device, over ordinary host sockets (NAT, no privilege).
//! Used by the `rootless-run` launcher (in its parent process) and by the slirp4netns-compatible
//! binary. See docs/architecture.md for the processes, fds and the path of a packet.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod alias;
pub mod api;
pub mod config;
pub mod netconf;
#[allow(unsafe_code)]
pub mod sys;
pub mod tap;
pub mod wire;

pub mod command;
mod control;
pub mod dhcp;
pub mod dns;
pub mod egress;
mod event_loop;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod fd_budget;
mod flows;
pub mod forward;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod host;
pub mod hostaddr;
mod icmp;
pub mod nat;
pub mod policy;
mod ra;
mod stack;
pub mod tcp;
mod udp;

pub use config::StackConfig;
pub use stack::{Stack, StackError};
