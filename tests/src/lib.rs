//! Harness for rootless-run's integration tests: checks the machine is set up, copies the built
//! binaries where the unprivileged test user can run them, runs them as that user (setpriv), builds
//! the namespaces and servers a test talks to, and waits on events with timeouts.
//! Used by `tests/tests/*.rs`; `rr-probe` (the in-sandbox helper) uses only `pattern`,
//! `dns_wire`, `frames` and `peer_echo`, the pieces shared by both ends of a test.
//! Must not sleep, skip a test, or send traffic beyond loopback and namespaces the tests create.
//! `RR_TEST_LAUNCHER=PATH` runs the suite against another launcher (e.g. a rootlesskit +
//! slirp4netns wrapper), to tell the tests' own failures from the launcher's.
#![deny(unsafe_code)]

pub mod addrs;
pub mod api_client;
pub mod bait;
pub mod bwrap;
pub mod child;
pub mod dns_wire;
pub mod dropin;
pub mod egress_net;
pub mod fifo;
pub mod frames;
pub mod host_client;
pub mod hostile;
pub mod modes;
pub mod pasta;
pub mod pattern;
pub mod peer_echo;
pub mod podman;
pub mod ports;
pub mod preflight;
pub mod procs;
pub mod resolver;
pub mod rootlesskit;
pub mod sandbox;
pub mod scripted;
pub mod servers;
pub mod steps;
#[allow(unsafe_code)]
mod sys;
pub mod topology;
pub mod trixie;
