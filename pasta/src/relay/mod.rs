//! Carries `-T`/`-U` traffic from the namespace's loopback sockets (`nsfwd`) to the host's
//! loopback, as pasta's spliced connections do: TCP connections byte for byte with
//! half-close (`tcp`), UDP datagrams per client flow (`udp`).
//!
//! Why not netstack's forward machinery: netstack `forward` turns what a host socket accepts
//! into a flow over the tap device into the sandbox; here both ends are kernel sockets, one in
//! each namespace, so there is no tap, no smoltcp and no NAT on the path, only a copy between
//! two fds. Doing that in the event loop would mean a socket-to-socket flow kind there (owned
//! by netstack). A relay of plain threads is some 400 lines here, blocks nothing of the
//! stack's loop, and copies through one fixed buffer per direction.
//!
//! Threads: one acceptor per protocol polls all of its namespace sockets; each TCP
//! connection has two copy threads, each UDP flow one reply thread. Bounds: `MAX_TCP`
//! connections and `MAX_UDP` flows at once, beyond which new ones are refused (TCP: closed at
//! once) or their datagrams dropped; buffers are `BUF` bytes per direction.
//! Called by `run` in the daemon, after the fork (threads do not survive a fork).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use anyhow::Context;
use netstack::forward::Transport;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::nsfwd::NsForward;

mod tcp;
mod udp;

/// Copy buffer per TCP direction and UDP receive buffer: the largest UDP payload fits.
const BUF: usize = 64 * 1024;

/// Starts the relays for the namespace sockets `socks`.
pub fn start(socks: Vec<(NsForward, OwnedFd)>) -> anyhow::Result<()> {
    let (tcp, udp): (Vec<_>, Vec<_>) = socks
        .into_iter()
        .partition(|(f, _)| f.proto == Transport::Tcp);
    if !tcp.is_empty() {
        tcp::start(tcp).context("cannot start the -T relay")?;
    }
    if !udp.is_empty() {
        udp::start(udp).context("cannot start the -U relay")?;
    }
    Ok(())
}

/// Waits until some of `socks` are readable and calls `ready` with the index of each.
/// Returns only if polling fails.
fn poll_forever<T: AsFd>(socks: &[T], mut ready: impl FnMut(usize)) -> io::Error {
    let mut fds: Vec<PollFd> = socks
        .iter()
        .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
        .collect();
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return e.into(),
        }
        for (i, fd) in fds.iter().enumerate() {
            if fd.any().unwrap_or(false) {
                ready(i);
            }
        }
    }
}

#[cfg(test)]
mod tests;
