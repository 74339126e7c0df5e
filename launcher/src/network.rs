//! The parent's side of the sandbox network: runs `netstack::Stack` on its own thread over the
//! tap fd the child handed over, and when the command exits lets the stack deliver what the
//! sandbox sent last (its final bytes and FINs) before the launcher exits.
//! Called by `launch` after the last fork (threads are safe then). Owns the stop pipe and a
//! handle on the sandbox's network namespace; knows nothing of signals or id maps.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long after the command exits we keep carrying its connections' last bytes. Flows the
/// sandbox closed end sooner; flows still open then are reset toward the host.
const LINGER: Duration = Duration::from_secs(1);

/// A running network stack.
pub struct Network {
    stop: OwnedFd,
    thread: JoinHandle<()>,
    /// Keeps the sandbox's netns (and the sockets in it) alive after the command exits, so its
    /// kernel can still send what the command wrote just before exiting.
    _netns: Option<OwnedFd>,
}

/// Starts the stack for `child`'s sandbox on a thread named "netstack". A failure of the stack
/// (at construction or later) is logged, sets `failed`, and kills the sandbox.
pub fn start(
    tap: OwnedFd,
    mtu: u32,
    busy_poll: Duration,
    child: Pid,
    failed: Arc<AtomicBool>,
) -> anyhow::Result<Network> {
    let netns = File::open(format!("/proc/{child}/ns/net"))
        .map(OwnedFd::from)
        .map_err(|error| tracing::debug!(%error, "cannot hold the sandbox's netns"))
        .ok();
    let cfg = netstack::StackConfig {
        mtu,
        busy_poll,
        dns_upstreams: netstack::config::host_resolvers(),
        ..Default::default()
    };
    let (stop_rx, stop) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).context("cannot create the stack's stop pipe")?;
    // The stack is built on its thread (it need not be Send). The command may start before
    // the stack is up: frames wait in the tap queue.
    let thread = std::thread::Builder::new()
        .name("netstack".into())
        .spawn(move || {
            let result = netstack::command::channel()
                .map_err(netstack::StackError::Setup)
                .and_then(|(_control, commands)| netstack::Stack::new(tap, cfg, commands))
                .and_then(|stack| stack.run_until(stop_rx.as_fd(), LINGER));
            if let Err(e) = result {
                tracing::error!(error = %anyhow::Error::new(e), "network stack failed; killing the sandbox");
                failed.store(true, Ordering::SeqCst);
                let _ = kill(child, Signal::SIGKILL);
                // Wake a persisted launcher waiting for --stop.
                let _ = kill(nix::unistd::getpid(), Signal::SIGTERM);
            }
        })
        .context("cannot start the network stack thread")?;
    Ok(Network {
        stop,
        thread,
        _netns: netns,
    })
}

impl Network {
    /// The command is gone: lets the stack finish the sandbox's flows (at most `LINGER`),
    /// then returns.
    pub fn finish(self) {
        if let Err(error) = nix::unistd::write(&self.stop, b"x") {
            tracing::debug!(%error, "cannot signal the stack to stop");
            return;
        }
        if self.thread.join().is_err() {
            tracing::error!("the network stack thread panicked");
        }
    }
}
