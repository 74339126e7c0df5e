//! A client of the API socket (`--api-socket`, slirp4netns's JSON protocol): one request per
//! connection, the reply read to EOF, as raw text so that tests compare it byte for byte. The
//! request may be followed by a half-close (as podman and rootlesskit do) or not (the server
//! must answer anyway). Also the request bodies the tests send, and a directory the test
//! user can create the socket in. Called by the API tests as root; every wait is bounded.

use std::fs;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{chown, Gid, Uid};

use crate::sandbox::User;

/// Bound for connect, the request and the reply: liveness only.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the client half-closes after its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// shutdown(SHUT_WR) after the request, as slirp4netns's documentation asks.
    HalfClose,
    /// Keep the write side open and wait for the reply.
    KeepOpen,
}

/// Sends `request` on a new connection to `path` and returns the reply (read to EOF).
pub fn request(path: &Path, request: &[u8], close: Close) -> io::Result<String> {
    let mut s = UnixStream::connect(path)
        .map_err(|e| io::Error::new(e.kind(), format!("connect {}: {e}", path.display())))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.write_all(request)?;
    if close == Close::HalfClose {
        s.shutdown(std::net::Shutdown::Write)?;
    }
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "read the reply to {:?}: {e} (after {} bytes: {:?})",
                String::from_utf8_lossy(request),
                reply.len(),
                String::from_utf8_lossy(&reply)
            ),
        )
    })?;
    String::from_utf8(reply).map_err(|e| io::Error::other(format!("reply is not UTF-8: {e}")))
}

/// `request` with a half-close, panicking with the request on an I/O error.
pub fn call(path: &Path, body: &str) -> String {
    request(path, body.as_bytes(), Close::HalfClose)
        .unwrap_or_else(|e| panic!("API request {body:?} on {}: {e}", path.display()))
}

/// The body of an add_hostfwd request, with the address fields as given.
pub fn add_body(
    proto: &str,
    host_addr: &str,
    host_port: u16,
    guest_addr: &str,
    guest_port: u16,
) -> String {
    format!(
        r#"{{"execute":"add_hostfwd","arguments":{{"proto":"{proto}","host_addr":"{host_addr}","host_port":{host_port},"guest_addr":"{guest_addr}","guest_port":{guest_port}}}}}"#
    )
}

/// The body of a remove_hostfwd request.
pub fn remove_body(id: u32) -> String {
    format!(r#"{{"execute":"remove_hostfwd","arguments":{{"id":{id}}}}}"#)
}

/// The body of a list_hostfwd request.
pub const LIST: &str = r#"{"execute":"list_hostfwd"}"#;

/// One entry of a list_hostfwd reply, as slirp4netns writes it (keys in its order).
pub fn entry(id: u32, proto: &str, host: SocketAddr, guest: SocketAddr) -> String {
    format!(
        r#"{{"id":{id},"proto":"{proto}","host_addr":"{}","host_port":{},"guest_addr":"{}","guest_port":{}}}"#,
        host.ip(),
        host.port(),
        guest.ip(),
        guest.port()
    )
}

/// The list_hostfwd reply for `entries` (slirp4netns's: no "return" wrapper).
pub fn list_reply(entries: &[String]) -> String {
    format!(r#"{{"entries":[{}]}}"#, entries.join(","))
}

/// The add_hostfwd reply for id `id`.
pub fn added(id: u32) -> String {
    format!(r#"{{"return":{{"id":{id}}}}}"#)
}

/// The reply to a successful remove_hostfwd.
pub const REMOVED: &str = r#"{"return":{}}"#;

/// The error reply with `desc`.
pub fn error(desc: &str) -> String {
    format!(r#"{{"error":{{"desc":"{desc}"}}}}"#)
}

/// A fresh directory (0700) under `parent` owned by `user`, for the socket the launcher
/// creates as that user.
pub fn user_dir(parent: &Path, name: &str, user: &User) -> PathBuf {
    let dir = parent.join(name);
    fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    chown(
        &dir,
        Some(Uid::from_raw(user.uid)),
        Some(Gid::from_raw(user.gid)),
    )
    .unwrap_or_else(|e| panic!("chown {} to {}: {e}", dir.display(), user.name));
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("chmod 0700 {}: {e}", dir.display()));
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_replies_match_slirp4netns_bytes() {
        assert_eq!(
            add_body("tcp", "0.0.0.0", 8080, "10.0.2.100", 80),
            r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}}"#
        );
        // The list reply as slirp4netns 1.2.0 wrote it (research/anchors-features.md §1.3).
        let one = entry(
            1,
            "tcp",
            "0.0.0.0:18080".parse().expect("addr"),
            "10.0.2.100:80".parse().expect("addr"),
        );
        assert_eq!(
            list_reply(&[one]),
            r#"{"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":18080,"guest_addr":"10.0.2.100","guest_port":80}]}"#
        );
        assert_eq!(list_reply(&[]), r#"{"entries":[]}"#);
        assert_eq!(added(7), r#"{"return":{"id":7}}"#);
        assert_eq!(
            error("bad request: unknown execute"),
            r#"{"error":{"desc":"bad request: unknown execute"}}"#
        );
    }
}
