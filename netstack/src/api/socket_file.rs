//! The API socket's file: checks the path, replaces a stale socket (and nothing else), binds,
//! sets mode 0600 and then listens, so nobody can connect before the mode is set; and removes
//! the file again when done, only if it is still ours.
//! Called by `server::serve_with` once; no thread, no protocol.

use std::fs::{self, Permissions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};

use super::ApiError;

/// Size of `sockaddr_un.sun_path` on Linux (unix(7)); a path needs room for its NUL too.
const SUN_PATH_LEN: usize = 108;
/// Mode of the socket file: only our user may connect (connect(2) needs write permission).
const SOCKET_MODE: u32 = 0o600;
/// Clients that may wait in the kernel's queue while one is served (slirp4netns: 0).
const BACKLOG: i32 = 8;

/// The socket file we bound, known by device and inode so that we remove only our own.
#[derive(Debug)]
pub(super) struct SocketFile {
    /// The path it was bound at.
    pub path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.dev() == self.dev && meta.ino() == self.ino => {
                if let Err(error) = fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), %error, "cannot remove the API socket");
                }
            }
            Ok(_) => {
                tracing::debug!(path = %self.path.display(), "API socket was replaced; leaving it")
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "cannot examine the API socket")
            }
        }
    }
}

/// Removes a stale socket at `path`, then binds, sets mode 0600 and listens, in that order.
pub(super) fn listen(path: &Path) -> Result<(UnixListener, SocketFile), ApiError> {
    let len = path.as_os_str().len();
    if len >= SUN_PATH_LEN {
        return Err(ApiError::PathTooLong {
            path: path.to_owned(),
            len,
        });
    }
    remove_stale(path)?;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| ApiError::Socket {
        path: path.to_owned(),
        source: e.into(),
    })?;
    UnixAddr::new(path)
        .and_then(|sa| socket::bind(fd.as_raw_fd(), &sa))
        .map_err(|e| ApiError::Bind {
            path: path.to_owned(),
            source: e.into(),
        })?;
    let meta = fs::symlink_metadata(path).map_err(|source| ApiError::Stat {
        path: path.to_owned(),
        source,
    })?;
    // From here on, an early return removes the file again.
    let file = SocketFile {
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    fs::set_permissions(path, Permissions::from_mode(SOCKET_MODE)).map_err(|source| {
        ApiError::Chmod {
            path: path.to_owned(),
            source,
        }
    })?;
    Backlog::new(BACKLOG)
        .and_then(|backlog| socket::listen(&fd, backlog))
        .map_err(|e| ApiError::Listen {
            path: path.to_owned(),
            source: e.into(),
        })?;
    Ok((UnixListener::from(fd), file))
}

/// Unlinks `path` if it is a socket (left by an earlier run); refuses any other file.
fn remove_stale(path: &Path) -> Result<(), ApiError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            tracing::debug!(path = %path.display(), "removing a stale API socket");
            fs::remove_file(path).map_err(|source| ApiError::RemoveStale {
                path: path.to_owned(),
                source,
            })
        }
        Ok(_) => Err(ApiError::NotSocket {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ApiError::Stat {
            path: path.to_owned(),
            source,
        }),
    }
}
