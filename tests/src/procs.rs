//! Finds a user's live processes by a token in their command line (tests put a unique token in
//! the sandboxed command, so parallel tests never see each other's processes), and waits for
//! them to exit through pidfds. Reads /proc only; kills only what a caller hands it.

use std::fs;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rustix::process::{pidfd_open, PidfdFlags};

use crate::child::pidfd_readable;

/// A live (non-zombie) process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    /// Its pid in our pid namespace.
    pub pid: i32,
    /// Its command line, arguments joined by spaces.
    pub cmdline: String,
}

/// Live processes whose real uid is `uid` and whose command line contains `token`.
/// Zombies are left out: they have exited, and their command line is empty anyway.
pub fn find(uid: u32, token: &str) -> Vec<Proc> {
    let Ok(dir) = fs::read_dir("/proc") else {
        panic!("cannot read /proc");
    };
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        // Processes exit while we look: any read error means "not there".
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        if real_uid(&status) != Some(uid) || is_zombie(&status) {
            continue;
        }
        let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw)
            .replace('\0', " ")
            .trim_end()
            .to_owned();
        if cmdline.contains(token) {
            found.push(Proc { pid, cmdline });
        }
    }
    found
}

fn real_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn is_zombie(status: &str) -> bool {
    status
        .lines()
        .find(|l| l.starts_with("State:"))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("Z"))
}

/// Waits until no live process of `uid` has `token` in its command line.
/// Returns the processes still alive when `timeout` expires.
pub fn wait_gone(uid: u32, token: &str, timeout: Duration) -> Result<(), Vec<Proc>> {
    let deadline = Instant::now() + timeout;
    loop {
        let procs = find(uid, token);
        if procs.is_empty() {
            return Ok(());
        }
        for p in &procs {
            let Some(pid) = rustix::process::Pid::from_raw(p.pid) else {
                continue;
            };
            // ESRCH: it is already gone.
            let Ok(pidfd) = pidfd_open(pid, PidfdFlags::empty()) else {
                continue;
            };
            if !pidfd_readable(&pidfd, deadline) {
                return Err(find(uid, token));
            }
        }
    }
}

/// SIGKILLs `procs` (cleanup after a failed check).
pub fn kill_all(procs: &[Proc]) {
    for p in procs {
        let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tsleep\nState:\tS (sleeping)\nUid:\t1001\t1001\t1001\t1001\n";

    #[test]
    fn real_uid_is_the_first_uid_field() {
        assert_eq!(real_uid(STATUS), Some(1001));
        assert_eq!(real_uid("Name:\tx\n"), None);
    }

    #[test]
    fn zombie_state_is_recognised() {
        assert!(!is_zombie(STATUS));
        assert!(is_zombie("State:\tZ (zombie)\n"));
    }
}
