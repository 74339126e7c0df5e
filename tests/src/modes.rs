//! The two network modes as one test fixture, so a workload written once is held to the same
//! behaviour in both: `Userspace` runs the launcher as the unprivileged test user in the sealed
//! namespace (the userspace stack), `Kernel` runs it as root with `--net-mode=kernel` inside the
//! outer namespace of a fresh `topology::Internet` (veth, bridge, nftables; never the sealed
//! namespace's own links or tables). `host` runs server set-up where the launcher's host side
//! is, so 10.0.2.2 reaches those servers in either mode. Used by tests/tests/network.rs.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use crate::addrs::SANDBOX_V4;
use crate::sandbox::{command, Harness};
use crate::topology::Internet;

/// How the sandbox's packets reach the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The userspace stack, as the test user.
    Userspace,
    /// `--net-mode=kernel`, as root in an outer namespace.
    Kernel,
}

/// A harness, and for kernel mode the namespaces it runs in.
pub struct Fixture {
    /// The copied binaries and the test user.
    pub h: Harness,
    /// The mode.
    pub mode: Mode,
    /// The outer and server namespaces: always in kernel mode, in userspace mode only from
    /// `with_internet` (the launcher then runs in the outer namespace as the test user).
    pub net: Option<Internet>,
}

impl Fixture {
    /// Sets up `mode`.
    pub fn new(mode: Mode) -> Fixture {
        let h = Harness::new();
        let net = (mode == Mode::Kernel).then(|| Internet::build(&h));
        Fixture { h, mode, net }
    }

    /// Sets up `mode` with a `topology::Internet` in either mode, for workloads that reach
    /// the server at 198.51.100.1.
    pub fn with_internet(mode: Mode) -> Fixture {
        let h = Harness::new();
        let net = Some(Internet::build(&h));
        Fixture { h, mode, net }
    }

    /// The address the host's servers see a sandbox connection to 10.0.2.2 come from: the
    /// userspace stack connects from the host's loopback; kernel mode's DNAT keeps the
    /// sandbox's own (first leased) address.
    pub fn gateway_peer(&self) -> IpAddr {
        match self.mode {
            Mode::Userspace => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Mode::Kernel => IpAddr::V4(SANDBOX_V4),
        }
    }

    /// The sandbox's interface: the userspace stack's tap, or kernel mode's veth end.
    pub fn ifname(&self) -> &'static str {
        match self.mode {
            Mode::Userspace => "tap0",
            Mode::Kernel => "eth0",
        }
    }

    /// A Command running `rootless-run FLAGS... -- PROGRAM...` in this mode.
    pub fn rootless_run(&self, flags: &[&str], program: &[String]) -> Command {
        command(&self.argv(flags, program))
    }

    /// The argv of `rootless_run`.
    pub fn argv(&self, flags: &[&str], program: &[String]) -> Vec<String> {
        let argv = match self.mode {
            Mode::Userspace => self
                .h
                .as_user_argv(&self.h.rootless_run_with(flags, program)),
            Mode::Kernel => {
                let mut all = vec!["--net-mode=kernel"];
                all.extend_from_slice(flags);
                self.h.rootless_run_with(&all, program)
            }
        };
        match &self.net {
            Some(net) => net.in_outer(&argv),
            None => argv,
        }
    }

    /// Runs `f` where the launcher runs: here, or inside the outer namespace.
    pub fn host<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        match &self.net {
            None => f(),
            Some(net) => net.within(f),
        }
    }
}
