//! How a run says it is ready and how it ends, as slirp4netns:
//! - ready: the byte `1` on `--ready-fd`, which is then closed (`write_ready`);
//! - `--exit-fd` hung up (its other end closed; data written to it is ignored): the API socket
//!   is removed and the stack stops; exit 0;
//! - SIGTERM, SIGINT or SIGHUP: the API socket is removed, then the process dies of the same
//!   signal, so the client sees what slirp4netns (which has no handlers) gives: killed by it;
//! - the stack fails: `run` says `quit`; the API socket is removed; exit 1.
//!
//! The signals are blocked (`block_signals`, before any thread starts, so every thread inherits
//! the mask) and read from a signalfd by the "watch" thread, which also polls the exit fd and a
//! quit pipe, and owns the API socket so that every ending removes it. Events:
//! ```text
//! event            watch does                               process
//! exit fd HUP/ERR  drop API socket, write stop pipe, return  stack drains (run_until), exit 0
//! signal S         drop API socket, die_by_signal(S)        killed by S
//! quit             drop API socket, return                  exit 1 (run decides)
//! ```
//! Called by `run`; knows nothing of the stack but its stop pipe.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::thread::JoinHandle;

use netstack::api::ApiSocket;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Signals that end a run (slirp4netns dies of each by default).
const ENDING_SIGNALS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

/// The ready byte (slirp4netns writes the character '1').
const READY: &[u8] = b"1";

/// Writes the ready byte to `fd` and closes it. A client that went away is not our failure:
/// logged, and the run goes on (as slirp4netns ignores the write's result).
pub fn write_ready(fd: OwnedFd) {
    loop {
        match nix::unistd::write(&fd, READY) {
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(error) => {
                tracing::warn!(%error, "cannot write to --ready-fd");
                break;
            }
        }
    }
    drop(fd);
}

/// Blocks the ending signals in this thread (and every thread it starts later) and returns a
/// signalfd that reads them.
pub fn block_signals() -> io::Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in ENDING_SIGNALS {
        set.add(s);
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    Ok(SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)?)
}

/// What ended the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The exit fd hung up.
    ExitFd,
    /// An ending signal arrived.
    Signal(Signal),
    /// `run` asked to quit.
    Quit,
}

/// Waits for the next event. `exit` is polled for no events at all, so only HUP, ERR or NVAL
/// wake it, never data (slirp4netns polls it for POLLHUP).
fn next_event(
    exit: Option<BorrowedFd<'_>>,
    signals: Option<&SignalFd>,
    quit: BorrowedFd<'_>,
) -> io::Result<Event> {
    loop {
        let mut fds = vec![PollFd::new(quit, PollFlags::POLLIN)];
        if let Some(s) = signals {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
        }
        if let Some(e) = exit {
            fds.push(PollFd::new(e, PollFlags::empty()));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let fired = |i: usize| {
            fds.get(i)
                .and_then(PollFd::revents)
                .is_some_and(|r| !r.is_empty())
        };
        let (quit_fired, signal_fired) = (fired(0), signals.is_some() && fired(1));
        let exit_fired = exit.is_some() && fired(fds.len() - 1);
        if quit_fired {
            return Ok(Event::Quit);
        }
        if signal_fired {
            if let Some(info) = signals.and_then(|s| s.read_signal().ok().flatten()) {
                if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                    return Ok(Event::Signal(sig));
                }
            }
            continue;
        }
        if exit_fired {
            return Ok(Event::ExitFd);
        }
    }
}

/// The running "watch" thread.
pub struct Watch {
    thread: JoinHandle<Event>,
    quit: OwnedFd,
}

/// Starts the watch thread; it owns `api` (dropping it removes the socket file) and writes
/// `stop` when the exit fd hangs up.
pub fn start(
    exit: Option<OwnedFd>,
    signals: SignalFd,
    api: Option<ApiSocket>,
    stop: OwnedFd,
) -> io::Result<Watch> {
    let (quit_rx, quit) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let thread = std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || {
            let event = next_event(
                exit.as_ref().map(AsFd::as_fd),
                Some(&signals),
                quit_rx.as_fd(),
            );
            drop(api);
            match event {
                Ok(Event::Signal(sig)) => {
                    tracing::info!(signal = %sig, "ending on a signal");
                    rr_ns::process::die_by_signal(sig)
                }
                Ok(Event::ExitFd) => {
                    tracing::info!("--exit-fd closed; exiting");
                    if let Err(error) = nix::unistd::write(&stop, b"x") {
                        tracing::error!(%error, "cannot stop the stack");
                    }
                    Event::ExitFd
                }
                Ok(Event::Quit) => Event::Quit,
                Err(error) => {
                    tracing::error!(%error, "cannot wait for --exit-fd or signals");
                    Event::Quit
                }
            }
        })?;
    Ok(Watch { thread, quit })
}

impl Watch {
    /// Tells the thread to end (the API socket goes), and waits for it.
    pub fn quit(self) {
        let _ = nix::unistd::write(&self.quit, b"q");
        let _ = self.thread.join();
    }

    /// Waits for the thread, which has ended or is ending: what ended it.
    pub fn join(self) -> Event {
        self.thread.join().unwrap_or(Event::Quit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_writes_one_byte_one_then_closes() {
        let (r, w) = nix::unistd::pipe().unwrap();
        write_ready(w);
        let mut buf = [0u8; 4];
        assert_eq!(nix::unistd::read(&r, &mut buf).unwrap(), 1);
        assert_eq!(buf[0], b'1');
        // Closed: the next read is EOF.
        assert_eq!(nix::unistd::read(&r, &mut buf).unwrap(), 0);
    }

    #[test]
    fn exit_fd_ends_on_hangup_not_on_data() {
        let (exit_r, exit_w) = nix::unistd::pipe().unwrap();
        let (quit_r, quit_w) = nix::unistd::pipe().unwrap();
        // Data on the exit fd and a quit request together: only the quit counts.
        nix::unistd::write(&exit_w, b"data").unwrap();
        nix::unistd::write(&quit_w, b"q").unwrap();
        let e = next_event(Some(exit_r.as_fd()), None, quit_r.as_fd()).unwrap();
        assert_eq!(e, Event::Quit);
        // Drain the quit pipe; then closing the exit fd's writer is the event.
        let mut buf = [0u8; 1];
        nix::unistd::read(&quit_r, &mut buf).unwrap();
        drop(exit_w);
        let e = next_event(Some(exit_r.as_fd()), None, quit_r.as_fd()).unwrap();
        assert_eq!(e, Event::ExitFd);
    }

    #[test]
    fn without_an_exit_fd_only_quit_ends_it() {
        let (quit_r, quit_w) = nix::unistd::pipe().unwrap();
        nix::unistd::write(&quit_w, b"q").unwrap();
        assert_eq!(next_event(None, None, quit_r.as_fd()).unwrap(), Event::Quit);
    }
}
