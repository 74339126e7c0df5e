//! Killing every descendant of the calling process (a child subreaper) without ever hitting a
//! recycled pid: the monitor's last act when the launcher is gone.
//! A /proc scan only says which pids *were* descendants; any of them may exit and its pid go
//! to an unrelated process before the kill. So each one is signalled through a pidfd, and
//! believed only when proven, top-down from ourselves: the pidfd is opened first, then its
//! /proc/PID/stat is read, and the stat counts only if, afterwards, the pidfd's process is
//! still unreaped (so the stat was its own) and so is the parent the stat names (a process we
//! hold a proven pidfd for, or ourselves). A process that fails a check is skipped this round;
//! if it really is ours, it is found again once its parent is gone and it is reparented to us.
//! Called by `monitor::bring_down`; the system side is `Procs`, faked in the tests below.

use std::collections::HashMap;

use nix::sys::signal::Signal;

use crate::sys::pidfd::PidFd;
use crate::sys::process::ProcDir;

/// What one kill round needs from the system.
pub trait Procs {
    /// A handle that keeps naming one process (a pidfd).
    type Handle;
    /// pid -> ppid of every process visible now.
    fn scan(&self) -> HashMap<i32, i32>;
    /// A handle on the process that has `pid` now.
    fn open(&self, pid: i32) -> Option<Self::Handle>;
    /// The parent of whatever process has `pid` now, read afresh.
    fn ppid(&self, pid: i32) -> Option<i32>;
    /// Whether the handle's process is not reaped yet (so its pid is still its own).
    fn alive(&self, h: &Self::Handle) -> bool;
    /// SIGKILL through the handle.
    fn kill(&self, h: &Self::Handle);
}

/// One round: finds every process proven to descend from `me` and SIGKILLs them all at once
/// (so a subtree cannot keep forking while its parent waits for its turn). Returns how many.
pub fn kill_round<P: Procs>(p: &P, me: i32) -> usize {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, ppid) in p.scan() {
        children.entry(ppid).or_default().push(pid);
    }
    let mut proven: HashMap<i32, P::Handle> = HashMap::new();
    let mut todo = vec![me];
    while let Some(parent) = todo.pop() {
        for &c in children.get(&parent).into_iter().flatten() {
            if c == me || proven.contains_key(&c) {
                continue;
            }
            if let Some(h) = prove(p, me, c, parent, &proven) {
                proven.insert(c, h);
                todo.push(c);
            }
        }
    }
    for h in proven.values() {
        p.kill(h);
    }
    proven.len()
}

/// A handle on `pid` if it is, now, the child of `parent` (ourselves or already proven).
fn prove<P: Procs>(
    p: &P,
    me: i32,
    pid: i32,
    parent: i32,
    proven: &HashMap<i32, P::Handle>,
) -> Option<P::Handle> {
    let h = p.open(pid)?;
    if p.ppid(pid)? != parent || !p.alive(&h) {
        return None;
    }
    let parent_still_ours = parent == me || proven.get(&parent).is_some_and(|ph| p.alive(ph));
    parent_still_ours.then_some(h)
}

/// The PPid field of a /proc/PID/stat line (the field after the state, which follows the
/// last ')': the command name may itself contain ") ").
pub fn parse_ppid(stat: &str) -> Option<i32> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    fields.next()?; // state
    fields.next()?.parse().ok()
}

/// The real system: a /proc opened before the sandbox changed root, and pidfds.
pub struct System<'a>(pub &'a ProcDir);

impl Procs for System<'_> {
    type Handle = PidFd;

    fn scan(&self) -> HashMap<i32, i32> {
        let stats = self.0.stats().unwrap_or_default();
        stats
            .iter()
            .filter_map(|(pid, s)| parse_ppid(s).map(|pp| (*pid, pp)))
            .collect()
    }

    fn open(&self, pid: i32) -> Option<PidFd> {
        PidFd::open(pid).ok()
    }

    fn ppid(&self, pid: i32) -> Option<i32> {
        parse_ppid(&self.0.stat(pid)?)
    }

    fn alive(&self, h: &PidFd) -> bool {
        h.is_alive()
    }

    fn kill(&self, h: &PidFd) {
        // ESRCH: it died meanwhile, which is what we wanted.
        let _ = h.signal(Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashSet;

    use super::*;

    /// A process table that can change between the scan and the checks. Processes are
    /// numbered by identity (`Proc`); `pid_of` says which pid each one has.
    #[derive(Default)]
    struct Fake {
        /// What the scan saw: pid -> ppid.
        scanned: HashMap<i32, i32>,
        /// Now: pid -> (process identity, ppid).
        now: HashMap<i32, (u32, i32)>,
        /// Identities that have been reaped (their pidfds say "gone").
        reaped: HashSet<u32>,
        /// Reading the stat of this pid reaps that identity (an exit during the checks).
        reap_on_stat: HashMap<i32, u32>,
        killed: RefCell<Vec<u32>>,
        reaped_late: RefCell<HashSet<u32>>,
    }

    impl Fake {
        /// A stable tree: every pid is its own identity and the scan is still true.
        fn tree(edges: &[(i32, i32)]) -> Fake {
            let mut f = Fake::default();
            for &(pid, ppid) in edges {
                f.scanned.insert(pid, ppid);
                f.now.insert(pid, (pid as u32, ppid));
            }
            f
        }

        fn killed(&self) -> Vec<u32> {
            let mut k = self.killed.borrow().clone();
            k.sort();
            k
        }
    }

    impl Procs for Fake {
        type Handle = u32;
        fn scan(&self) -> HashMap<i32, i32> {
            self.scanned.clone()
        }
        fn open(&self, pid: i32) -> Option<u32> {
            self.now.get(&pid).map(|(id, _)| *id)
        }
        fn ppid(&self, pid: i32) -> Option<i32> {
            let (_, ppid) = *self.now.get(&pid)?;
            if let Some(id) = self.reap_on_stat.get(&pid) {
                self.reaped_late.borrow_mut().insert(*id);
            }
            Some(ppid)
        }
        fn alive(&self, h: &u32) -> bool {
            !self.reaped.contains(h) && !self.reaped_late.borrow().contains(h)
        }
        fn kill(&self, h: &u32) {
            self.killed.borrow_mut().push(*h);
        }
    }

    /// We are 10, under the host's 1; 11..14 are ours, 20 and 21 are not.
    const TREE: [(i32, i32); 7] = [
        (10, 1),
        (11, 10),
        (12, 11),
        (13, 12),
        (14, 10),
        (20, 1),
        (21, 20),
    ];

    #[test]
    fn every_level_below_us_is_killed_and_nothing_else() {
        let f = Fake::tree(&TREE);
        assert_eq!(kill_round(&f, 10), 4);
        assert_eq!(f.killed(), [11, 12, 13, 14]);
    }

    #[test]
    fn a_pid_reused_since_the_scan_by_a_stranger_is_not_killed() {
        let mut f = Fake::tree(&TREE);
        // 12 exited after the scan; its pid now belongs to an unrelated process (identity
        // 99, child of the host's init), and its orphan 13 was reparented to us.
        f.now.insert(12, (99, 1));
        f.now.insert(13, (13, 10));
        kill_round(&f, 10);
        assert!(
            !f.killed().contains(&99),
            "the stranger with a recycled pid was hit"
        );
        assert_eq!(f.killed(), [11, 14]);
    }

    #[test]
    fn a_stat_read_after_the_pidfd_process_was_reaped_is_not_believed() {
        let mut f = Fake::tree(&TREE);
        // 14's pidfd is opened, then it is reaped and the pid given to a stranger whose stat
        // happens to name us as parent: the pidfd says gone, so nothing is sent.
        f.reap_on_stat.insert(14, 14);
        kill_round(&f, 10);
        assert_eq!(f.killed(), [11, 12, 13]);
    }

    #[test]
    fn a_child_whose_parent_pid_was_recycled_is_not_believed() {
        let mut f = Fake::tree(&TREE);
        // 12 (proven) is reaped while 13's stat is read: a stat naming pid 12 as parent may
        // be that of a child of whoever has pid 12 next, so 13 waits for the next round.
        f.reap_on_stat.insert(13, 12);
        kill_round(&f, 10);
        assert_eq!(f.killed(), [11, 12, 14]);
    }

    #[test]
    fn ppid_is_read_after_the_last_parenthesis() {
        assert_eq!(parse_ppid("42 (sleep) S 7 42 7 0 -1"), Some(7));
        assert_eq!(parse_ppid("43 (a) b) (c) R 9 43 9"), Some(9));
        assert_eq!(parse_ppid("44 (x"), None);
        assert_eq!(parse_ppid("45 (x) S"), None);
    }
}
