//! The command channel into the event loop: runtime changes (add, list and remove port
//! forwards; list, add and remove egress rules) sent from other threads (the API socket's, the launcher's) to the one thread
//! that owns the flow table.
//!
//! A bounded queue (`std::sync::mpsc::sync_channel`, `QUEUE` commands) carries the commands
//! and an eventfd, registered with the loop's epoll, wakes the loop; the loop drains the queue
//! once per turn. Each command carries its own reply channel, and the sender waits for the
//! reply at most `REPLY_TIMEOUT`, so a stopped loop is an error, never a hang.
//! Host sockets are bound by the sender (`Control::add` calls `forward::Listener::bind`), so a
//! port in use is reported before the loop sees anything and the loop never blocks on it.
//! Nothing here runs on the data path: one allocation per command is fine.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::forward::{ForwardControl, ForwardEntry, ForwardError, ForwardSpec, Listener};
use crate::policy::{EgressControl, EgressError, EgressReply, EgressRequest};

/// Commands the queue holds before senders wait: far more than one API client (served one at
/// a time) can have in flight.
const QUEUE: usize = 16;
/// Longest wait for the loop's answer; the loop drains commands every turn, so only a
/// stopped (or wedged) loop ever takes this long.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A runtime change for the event loop, with the channel its answer goes back on.
#[derive(Debug)]
pub enum Command {
    /// Start forwarding on an already bound host socket; answers the new id.
    Add(Listener, SyncSender<u32>),
    /// Stop forward `id`; answers whether it existed.
    Remove(u32, SyncSender<bool>),
    /// Answers the forwards in force.
    List(SyncSender<Vec<ForwardEntry>>),
    /// Lists or changes the egress policy (closing open flows a change denies).
    Egress(EgressRequest, SyncSender<Result<EgressReply, EgressError>>),
}

/// The sending side: cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct Control {
    queue: SyncSender<Command>,
    wake: Arc<EventFd>,
}

/// The receiving side, owned by the event loop.
#[derive(Debug)]
pub struct Commands {
    queue: Receiver<Command>,
    wake: Arc<EventFd>,
}

/// A connected pair: hand `Commands` to `Stack::new`, keep `Control` (and its clones) for
/// the API socket and the launcher.
pub fn channel() -> io::Result<(Control, Commands)> {
    let wake = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .map_err(io::Error::from)?;
    let wake = Arc::new(wake);
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    Ok((
        Control {
            queue: tx,
            wake: wake.clone(),
        },
        Commands { queue: rx, wake },
    ))
}

impl Control {
    /// Queues `cmd` and wakes the loop; a full queue waits (the loop drains it every turn).
    fn send(&self, cmd: Command) -> Result<(), ForwardError> {
        match self.queue.try_send(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(cmd)) => {
                self.wake_loop();
                self.queue.send(cmd).map_err(|_| ForwardError::StackGone)?;
            }
            Err(TrySendError::Disconnected(_)) => return Err(ForwardError::StackGone),
        }
        self.wake_loop();
        Ok(())
    }

    fn wake_loop(&self) {
        if let Err(error) = self.wake.write(1) {
            tracing::debug!(%error, "cannot wake the event loop");
        }
    }

    /// Sends `make(reply)` and waits for the answer.
    fn ask<T>(&self, make: impl FnOnce(SyncSender<T>) -> Command) -> Result<T, ForwardError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(make(tx))?;
        rx.recv_timeout(REPLY_TIMEOUT)
            .map_err(|_| ForwardError::StackGone)
    }

    /// Hands an already bound listener to the loop; returns its id.
    pub fn add_bound(&self, listener: Listener) -> Result<u32, ForwardError> {
        self.ask(|tx| Command::Add(listener, tx))
    }
}

impl ForwardControl for Control {
    fn add(&self, spec: ForwardSpec) -> Result<u32, ForwardError> {
        self.add_bound(Listener::bind(spec)?)
    }

    fn remove(&self, id: u32) -> Result<(), ForwardError> {
        if self.ask(|tx| Command::Remove(id, tx))? {
            Ok(())
        } else {
            Err(ForwardError::UnknownId(id))
        }
    }

    fn list(&self) -> Result<Vec<ForwardEntry>, ForwardError> {
        self.ask(Command::List)
    }
}

impl EgressControl for Control {
    fn egress(&self, req: EgressRequest) -> Result<EgressReply, EgressError> {
        self.ask(|tx| Command::Egress(req, tx))
            .map_err(|_| EgressError::StackGone)?
    }
}

impl Commands {
    /// The fd to register for readability: it becomes readable when commands are queued.
    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Takes the next queued command, if any. The first call after a wake-up also resets
    /// the eventfd, so the next `send` raises a fresh edge.
    pub fn next(&self) -> Option<Command> {
        let _ = self.wake.read(); // EAGAIN when already reset: nothing to do
        self.queue.try_recv().ok()
    }
}

impl AsFd for Commands {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn list_waits_for_the_loops_answer() {
        let (control, commands) = channel().expect("eventfd");
        let server = thread::spawn(move || {
            // A loop would wait on the eventfd; the test polls the queue directly.
            loop {
                if let Some(Command::List(reply)) = commands.next() {
                    reply.send(Vec::new()).expect("reply");
                    return commands;
                }
                thread::yield_now();
            }
        });
        assert_eq!(control.list().expect("answered").len(), 0);
        drop(server.join().expect("loop thread"));
    }

    #[test]
    fn a_stopped_loop_is_an_error_not_a_hang() {
        let (control, commands) = channel().expect("eventfd");
        drop(commands);
        assert!(matches!(control.list(), Err(ForwardError::StackGone)));
        assert!(matches!(control.remove(3), Err(ForwardError::StackGone)));
    }

    #[test]
    fn sending_a_command_makes_the_wake_fd_readable() {
        let (control, commands) = channel().expect("eventfd");
        let (tx, _rx) = mpsc::sync_channel(1);
        control.send(Command::Remove(1, tx)).expect("queued");
        let n = commands.wake.read().expect("eventfd readable after a send");
        assert_eq!(n, 1, "one wake-up per command");
        assert!(matches!(commands.next(), Some(Command::Remove(1, _))));
        assert!(commands.next().is_none());
    }
}
