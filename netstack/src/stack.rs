//! Public entry point: owns the tap fd and runs the event loop until a fatal error.

use std::os::fd::OwnedFd;

use crate::config::StackConfig;

/// A fatal error of the stack (the per-packet path never returns errors).
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// Setting up the event loop failed.
    #[error("cannot set up the event loop")]
    Setup(#[source] std::io::Error),
}

/// The network stack serving one tap device.
pub struct Stack {
    _tap: OwnedFd,
    _config: StackConfig,
}

impl Stack {
    /// Takes ownership of the tap fd (as passed from the sandbox) and prepares the stack.
    pub fn new(tap: OwnedFd, config: StackConfig) -> Result<Stack, StackError> {
        Ok(Stack {
            _tap: tap,
            _config: config,
        })
    }

    /// Serves the sandbox until a fatal error; returns only on error.
    pub fn run(self) -> Result<(), StackError> {
        // Under construction: replaced by the event loop in the netstack commit.
        loop {
            std::thread::park();
        }
    }
}
