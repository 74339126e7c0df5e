//! `-T`: accepts connections on the namespace's listeners, connects each to its target on the
//! host's loopback and copies both ways until both sides have closed; a half-close (EOF) is
//! passed on as `shutdown(SHUT_WR)`, an error resets both. See `relay` for threads and bounds.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{poll_forever, BUF};
use crate::nsfwd::NsForward;

/// Connections relayed at once (each holds two threads and two fds).
const MAX_TCP: usize = 1024;
/// Pause after an accept failure that leaves the connection queued (out of fds or memory).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Starts the acceptor thread for `listeners`.
pub(super) fn start(listeners: Vec<(NsForward, OwnedFd)>) -> io::Result<()> {
    let listeners: Vec<(TcpListener, SocketAddr)> = listeners
        .into_iter()
        .map(|(f, fd)| (TcpListener::from(fd), f.target))
        .collect();
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("ns-tcp-accept".into())
        .spawn(move || {
            let socks: Vec<&TcpListener> = listeners.iter().map(|(l, _)| l).collect();
            let error = poll_forever(&socks, |i| {
                let (listener, target) = &listeners[i];
                accept_all(listener, *target, &active);
            });
            tracing::error!(%error, "-T relay stopped");
        })
        .map(drop)
}

/// Accepts until the backlog is empty.
fn accept_all(listener: &TcpListener, target: SocketAddr, active: &Arc<AtomicUsize>) {
    loop {
        let (conn, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(error) => {
                // EMFILE, ENFILE, ENOBUFS: the connection stays queued and the listener
                // readable; pause rather than spin on it.
                tracing::warn!(%error, "-T: accept failed; pausing");
                std::thread::sleep(ACCEPT_BACKOFF);
                return;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_TCP {
            active.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%peer, limit = MAX_TCP, "-T: too many connections; refused");
            continue;
        }
        let active = Arc::clone(active);
        let spawned = std::thread::Builder::new()
            .name("ns-tcp".into())
            .spawn(move || {
                connection(conn, target);
                active.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "-T: cannot start a relay thread");
        }
    }
}

/// Relays one accepted connection (a blocking socket: accept does not inherit O_NONBLOCK).
fn connection(inside: TcpStream, target: SocketAddr) {
    let outside = match TcpStream::connect(target) {
        Ok(s) => s,
        Err(error) => {
            tracing::debug!(%target, %error, "-T: host connect failed; closing");
            return;
        }
    };
    tracing::debug!(%target, "-T: connection relayed");
    let pair = inside
        .try_clone()
        .and_then(|i| Ok((i, outside.try_clone()?)));
    let Ok((inside2, outside2)) = pair else {
        tracing::warn!("-T: cannot duplicate a socket; closing");
        return;
    };
    let up = std::thread::Builder::new()
        .name("ns-tcp-up".into())
        .spawn(move || copy(inside2, outside2));
    copy(outside, inside);
    if let Ok(up) = up {
        let _ = up.join();
    }
}

/// Copies `from` to `to` until EOF (then half-closes `to`) or an error (then resets both).
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
