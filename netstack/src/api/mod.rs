//! slirp4netns's API socket (`--api-socket PATH`): add, list and remove port forwards at run
//! time by JSON over a UNIX socket, byte-compatible with what rootlesskit and podman send,
//! plus IPv6 forwards.
//! `protocol` turns request bytes into a `Request` and a `Reply` into bytes (pure);
//! `server` owns the thread and calls `ForwardControl`; `socket_file` binds and removes the
//! socket file. None touches the data path: the forwards themselves live in the event loop
//! behind `ForwardControl`.

use std::io;
use std::path::PathBuf;

pub mod protocol;
mod server;
mod socket_file;

pub use server::{bind, serve, ApiSocket, ArmedApi, BoundApi, REQUEST_TIMEOUT};

/// Why the API socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The path does not fit in `sockaddr_un`.
    #[error("API socket path {path} is {len} bytes; it must be shorter than 108")]
    PathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// Something other than a socket is at the path; we do not remove it.
    #[error("{path} exists and is not a socket; not replacing it")]
    NotSocket {
        /// The path.
        path: PathBuf,
    },
    /// The path could not be examined.
    #[error("cannot examine {path}")]
    Stat {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A stale socket at the path could not be removed.
    #[error("cannot remove the stale socket {path}")]
    RemoveStale {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// socket(2) failed.
    #[error("cannot create the socket for {path}")]
    Socket {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// bind(2) failed (no such directory, no permission, ...).
    #[error("cannot bind {path}")]
    Bind {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The socket file's mode could not be set to 0600.
    #[error("cannot make {path} mode 0600")]
    Chmod {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// listen(2) failed.
    #[error("cannot listen on {path}")]
    Listen {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The pipe that stops the thread could not be made.
    #[error("cannot create the stop pipe for {path}")]
    Pipe {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The "api" thread could not be started.
    #[error("cannot start the thread serving {path}")]
    Spawn {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}
