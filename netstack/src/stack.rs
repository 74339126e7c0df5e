//! Public entry point: owns the tap fd and runs the event loop until a fatal error; takes the
//! forwards bound at start (`publish`) and the command channel for runtime changes.
//! Called by the launcher's parent (on a thread of its own, after fork) and by the
//! slirp4netns-compatible binary; everything else in the crate is reached from here.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::command::Commands;
use crate::config::StackConfig;
use crate::event_loop::EventLoop;
use crate::forward::Listener;

/// A fatal error of the stack (the per-packet path never returns errors).
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// Setting up the event loop failed.
    #[error("cannot set up the event loop")]
    Setup(#[source] std::io::Error),
    /// The event loop stopped: epoll or the tap device failed.
    #[error("event loop failed")]
    Loop(#[source] std::io::Error),
    /// The MTU is outside what a tap device carries.
    #[error("MTU {0} out of range (68..=65521)")]
    Mtu(u32),
}

/// Smallest MTU IPv4 allows (RFC 791).
const MIN_MTU: u32 = 68;

/// The network stack serving one tap device.
pub struct Stack {
    event_loop: EventLoop,
}

impl Stack {
    /// Takes ownership of the tap fd (as passed from the sandbox) and prepares the stack;
    /// runtime changes arrive on `commands` (see `command::channel`).
    pub fn new(tap: OwnedFd, config: StackConfig, commands: Commands) -> Result<Stack, StackError> {
        if !(MIN_MTU..=crate::config::MAX_MTU).contains(&config.mtu) {
            return Err(StackError::Mtu(config.mtu));
        }
        let event_loop = EventLoop::new(tap, config, Some(commands)).map_err(StackError::Setup)?;
        Ok(Stack { event_loop })
    }

    /// Starts forwarding on a bound host socket (`--publish`, before `run`); returns its id
    /// (1, 2, ... in call order, shared with ids the API hands out later).
    pub fn publish(&mut self, listener: Listener) -> Result<u32, StackError> {
        self.event_loop.publish(listener).map_err(StackError::Setup)
    }

    /// Serves the sandbox until a fatal error; returns only on error.
    pub fn run(mut self) -> Result<(), StackError> {
        self.event_loop.run().map_err(StackError::Loop)
    }

    /// Serves the sandbox until `stop` becomes readable (e.g. the launcher writes to a pipe
    /// once its command exited), then goes on until every TCP flow has carried the sandbox's
    /// last bytes and FIN (or `linger` passed), so a command that exits right after writing
    /// loses nothing. Keep the sandbox's network namespace alive meanwhile (hold its ns fd).
    pub fn run_until(mut self, stop: BorrowedFd<'_>, linger: Duration) -> Result<(), StackError> {
        self.event_loop
            .run_until(stop, linger)
            .map_err(StackError::Loop)
    }
}
