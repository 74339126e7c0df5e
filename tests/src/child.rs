//! Child processes under a deadline: spawn with stdin, stdout and stderr piped, wait for a stdout
//! line or for exit (through a pidfd, never a sleep loop), and kill whatever overruns.
//! Every wait takes a timeout and panics with the command's output so far when it expires.
//! Knows nothing of users or namespaces; `sandbox` builds the commands.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{pidfd_open, PidfdFlags};

/// Default bound for one sandboxed command: generous for a debug build on 2 busy cores.
/// A liveness bound, not a performance threshold.
pub const TIMEOUT: Duration = Duration::from_secs(90);

/// How long output may keep arriving after the process exited (a leftover grandchild holding the
/// pipe must not hang the test; it is reported by the test that cares about leftovers).
const EOF_GRACE: Duration = Duration::from_secs(10);

/// What a finished command did.
#[derive(Debug)]
pub struct Outcome {
    /// Description of the command, for messages.
    pub what: String,
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything it wrote to stderr (lossy UTF-8).
    pub stderr: String,
}

impl Outcome {
    /// The status as a shell's `$?` shows it: the exit code, or 128 + the fatal signal.
    pub fn shell_status(&self) -> i32 {
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => code,
            (None, Some(sig)) => 128 + sig,
            (None, None) => -1,
        }
    }

    /// The non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} ($? = {})\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.what,
            self.status,
            self.shell_status(),
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// A captured output stream: the text so far, and a channel that disconnects at EOF.
struct Capture {
    text: Arc<Mutex<String>>,
    eof: Receiver<()>,
}

impl Capture {
    /// Reads `stream` on a thread; each complete line also goes to `lines` if given.
    fn start(stream: impl Read + Send + 'static, lines: Option<mpsc::Sender<String>>) -> Capture {
        let text = Arc::new(Mutex::new(String::new()));
        let (eof_tx, eof) = mpsc::channel::<()>();
        let sink = Arc::clone(&text);
        thread::spawn(move || {
            let _eof_tx = eof_tx; // dropped at EOF, which disconnects `eof`
            let mut reader = BufReader::new(stream);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&raw).into_owned();
                        lock(&sink).push_str(&line);
                        if let Some(tx) = &lines {
                            let _ = tx.send(line.trim_end_matches('\n').to_owned());
                        }
                    }
                }
            }
        });
        Capture { text, eof }
    }

    fn snapshot(&self) -> String {
        lock(&self.text).clone()
    }

    /// Waits until EOF or `deadline`, whichever is first, and returns the text.
    fn finish(&self, deadline: Instant) -> String {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = self.eof.recv_timeout(left);
        self.snapshot()
    }
}

fn lock(m: &Mutex<String>) -> std::sync::MutexGuard<'_, String> {
    // A reader thread cannot panic while holding the lock (push_str only), so poisoning is moot.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running command whose output is being captured.
pub struct Running {
    what: String,
    child: Child,
    pidfd: OwnedFd,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout: Capture,
    stderr: Capture,
    reaped: bool,
}

impl Running {
    /// Spawns `cmd` with all three standard streams piped. Panics if it cannot be spawned.
    pub fn spawn(what: impl Into<String>, cmd: &mut Command) -> Running {
        let what = what.into();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {what} ({cmd:?}): {e}"));
        let pid = rustix::process::Pid::from_raw(child.id() as i32)
            .expect("a spawned child has a positive pid");
        // The child is not reaped yet, so its pid cannot have been reused.
        let pidfd = pidfd_open(pid, PidfdFlags::empty())
            .unwrap_or_else(|e| panic!("pidfd_open({pid:?}) for {what}: {e}"));
        let (tx, lines) = mpsc::channel();
        let stdout = Capture::start(child.stdout.take().expect("stdout was piped"), Some(tx));
        let stderr = Capture::start(child.stderr.take().expect("stderr was piped"), None);
        let stdin = child.stdin.take();
        Running {
            what,
            child,
            pidfd,
            stdin,
            lines,
            stdout,
            stderr,
            reaped: false,
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Writes `bytes` to the child's stdin. Panics if stdin was closed.
    pub fn write_stdin(&mut self, bytes: &[u8]) {
        let what = &self.what;
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("stdin of {what} is closed"));
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("cannot write to stdin of {what}: {e}"));
    }

    /// Takes the child's stdin, to keep it open beyond `wait` (whoever holds it decides when
    /// the child's descendants read EOF).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Closes the child's stdin (it then reads EOF).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the next stdout line satisfying `want` (earlier lines are passed over).
    /// Panics with the output so far on timeout or EOF.
    pub fn expect_line(
        &mut self,
        desc: &str,
        timeout: Duration,
        want: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if want(&line) => return line,
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("no {desc} on stdout within {timeout:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail(&format!("stdout closed before {desc}"))
                }
            }
        }
    }

    /// Waits up to `timeout` for the process to exit (without reaping it). True if it exited.
    pub fn exited_within(&self, timeout: Duration) -> bool {
        pidfd_readable(&self.pidfd, Instant::now() + timeout)
    }

    /// Sends `sig` to the child (not to its descendants).
    pub fn signal(&self, sig: Signal) {
        if let Err(e) = kill(Pid::from_raw(self.pid()), sig) {
            panic!("kill({}, {sig}) for {}: {e}", self.pid(), self.what);
        }
    }

    /// Waits for exit and collects the output. On timeout kills the child and panics.
    pub fn wait(mut self, timeout: Duration) -> Outcome {
        if !self.exited_within(timeout) {
            self.fail(&format!("did not exit within {timeout:?}"));
        }
        self.reap()
    }

    /// Like `wait`, but a timeout kills the child and returns `Err` with its output instead
    /// of panicking, so a test can collect several failures before it fails.
    pub fn wait_bounded(mut self, timeout: Duration) -> Result<Outcome, Outcome> {
        if self.exited_within(timeout) {
            Ok(self.reap())
        } else {
            let _ = kill(Pid::from_raw(self.pid()), Signal::SIGKILL);
            Err(self.reap())
        }
    }

    fn reap(&mut self) -> Outcome {
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("waitpid for {}: {e}", self.what));
        self.reaped = true;
        let grace = Instant::now() + EOF_GRACE;
        Outcome {
            what: self.what.clone(),
            status,
            stdout: self.stdout.finish(grace),
            stderr: self.stderr.finish(grace),
        }
    }

    /// Kills the child, then panics with `why` and everything it printed.
    fn fail(&mut self, why: &str) -> ! {
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGKILL);
        let outcome = self.reap();
        panic!("{}: {why}; killed it\n{outcome}", self.what);
    }

    /// Output captured so far, for messages while the child still runs.
    pub fn output_so_far(&self) -> String {
        format!(
            "--- stdout so far ---\n{}\n--- stderr so far ---\n{}",
            self.stdout.snapshot().trim_end(),
            self.stderr.snapshot().trim_end()
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            self.stdin = None;
            let _ = kill(Pid::from_raw(self.pid()), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to completion with stdin at EOF, within `timeout`.
pub fn run(what: impl Into<String>, cmd: &mut Command, timeout: Duration) -> Outcome {
    let mut running = Running::spawn(what, cmd);
    running.close_stdin();
    running.wait(timeout)
}

/// True once `pidfd`'s process has exited, false if `deadline` passed first.
pub fn pidfd_readable(pidfd: &OwnedFd, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = Timespec::try_from(left).expect("timeouts here are far below i64 seconds");
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) if left.is_zero() => return false,
            Ok(0) => continue,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("poll on a pidfd: {e}"),
        }
    }
}
