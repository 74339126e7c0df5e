//! rr-probe's jobs that only live until the test ends them: `hold` (until stdin's EOF) and
//! `trap-signals` (until a forwarded signal arrives).
//! Called by `main`'s dispatch; they send no traffic.

use std::io::{self, Read};
use std::thread;

use nix::sys::signal::{SigSet, Signal};

use crate::{Fail, EXIT_FAILED};

/// `trap-signals` exits with this plus the signal number: below 128, so it cannot be mistaken
/// for a death by signal, and distinct for every forwarded signal.
const EXIT_SIGNAL_BASE: u8 = 64;

/// The signals rootless-run forwards to its child (issue 3, item 2).
const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

pub fn hold() -> Result<u8, Fail> {
    println!("ready");
    let mut sink = Vec::new();
    io::stdin()
        .read_to_end(&mut sink)
        .map_err(|e| Fail::Failed(format!("read stdin: {e}")))?;
    Ok(0)
}

pub fn trap_signals() -> Result<u8, Fail> {
    let mut set = SigSet::empty();
    // Blocked signals are queued even if an inherited disposition ignores them
    // (kernel/signal.c, sig_ignored), so sigwait sees them either way.
    for sig in FORWARDED {
        set.add(sig);
    }
    set.thread_block()
        .map_err(|e| Fail::Failed(format!("block signals: {e}")))?;
    // Never outlive the test: give up when stdin (held by the test) reaches EOF. The thread
    // inherits the blocked mask, so the signal still goes to sigwait below.
    thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = io::stdin().read_to_end(&mut sink);
        eprintln!("rr-probe: trap-signals: stdin closed before any signal arrived");
        std::process::exit(i32::from(EXIT_FAILED));
    });
    println!("ready");
    let sig = set
        .wait()
        .map_err(|e| Fail::Failed(format!("sigwait: {e}")))?;
    println!("caught {}", sig.as_str());
    Ok(EXIT_SIGNAL_BASE + sig as u8)
}
