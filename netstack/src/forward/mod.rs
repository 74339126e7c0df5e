//! Port forwarding host -> sandbox: what a forward is (`ForwardSpec`), the ids that name them
//! at run time, and the seam (`ForwardControl`) through which `--publish` at start and the
//! API socket at run time add, list and remove them.
//! `listen` binds the host side; `publish` parses the launcher's `--publish` values into
//! specs; the flows a forward opens live in the event loop.

use std::io;
use std::net::{IpAddr, SocketAddr};

mod listen;
pub mod publish;

pub use listen::{local_addr, Bound, Listener};

/// Transport protocol of a forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP: a host listener; each accepted connection becomes a flow into the sandbox.
    Tcp,
    /// UDP: a bound host socket; each client address becomes a flow into the sandbox.
    Udp,
}

impl Transport {
    /// "tcp" or "udp", as slirp4netns's API spells it.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// One forward: connections or datagrams to `host` on the host reach `guest` in the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ForwardSpec {
    /// TCP or UDP.
    pub proto: Transport,
    /// Host address and port to listen on (0.0.0.0 or [::] for every host address).
    pub host: SocketAddr,
    /// Sandbox address and port to deliver to; the same family as `host`.
    pub guest: SocketAddr,
}

/// A forward in force, with the id it was given (from 1, never reused in one run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardEntry {
    /// Its id.
    pub id: u32,
    /// What it forwards.
    pub spec: ForwardSpec,
}

/// Why a forward could not be added or removed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The host address and port cannot be bound (in use, below 1024 without privilege, not
    /// an address of this host).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Host and guest addresses are of different families.
    #[error("host address {host} and sandbox address {guest} are of different families")]
    Family {
        /// The host side.
        host: IpAddr,
        /// The sandbox side.
        guest: IpAddr,
    },
    /// The guest address is not one the sandbox holds.
    #[error("{0} is not the sandbox's address")]
    Guest(IpAddr),
    /// A port of zero.
    #[error("port 0 cannot be forwarded")]
    PortZero,
    /// No forward has this id.
    #[error("no forward with id {0}")]
    UnknownId(u32),
    /// The network stack has stopped (or did not answer in time).
    #[error("the network stack is not running")]
    StackGone,
}

/// The operations on forwards, as the API socket and the launcher see them. Implemented over
/// the event loop's command channel (`command::Control`) and by fakes in tests.
pub trait ForwardControl {
    /// Binds the host side and starts forwarding; returns the new id.
    fn add(&self, spec: ForwardSpec) -> Result<u32, ForwardError>;
    /// Stops forward `id` and closes its host socket (flows it opened carry on).
    fn remove(&self, id: u32) -> Result<(), ForwardError>;
    /// The forwards in force, by id.
    fn list(&self) -> Result<Vec<ForwardEntry>, ForwardError>;
}
