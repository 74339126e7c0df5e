//! Starting a test child: a copy of the test binary the test user can run, started directly,
//! in `unshare -Ur`, as rrtest or as real root, with its stdout lines on a channel.
//! Called by the runner in `common` and by the parent-side checks; it decides no verdict.
//! Every wait has a deadline (`CHILD_DEADLINE`); a child still running is killed on drop.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::{Case, Check, How, CHILD_DEADLINE, TEST_USER};

/// What the parent knows about the machine.
pub struct Env {
    /// A copy of this binary that the test user can execute.
    pub exe: PathBuf,
    pub _exe_dir: tempfile::TempDir,
    pub root: bool,
    /// The test user's uid and gid, when running as root.
    pub user: Option<(u32, u32)>,
}

/// How a child ended.
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status: {:?}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// A started child: its stdout lines arrive on a channel, stderr is collected.
pub struct Running {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    pub stderr: mpsc::Receiver<String>,
    pub deadline: Instant,
}

impl Env {
    pub fn new() -> Result<Env, String> {
        let root = nix::unistd::geteuid().is_root();
        let user = if root {
            Some(find_user(TEST_USER)?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("rr-ns-confine-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        set_mode(dir.path(), 0o755)?;
        let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let exe = dir.path().join("confine");
        std::fs::copy(&me, &exe).map_err(|e| format!("copy {}: {e}", me.display()))?;
        set_mode(&exe, 0o755)?;
        Ok(Env {
            exe,
            _exe_dir: dir,
            root,
            user,
        })
    }

    /// A fresh directory the child's user may write in.
    pub fn user_dir(&self) -> Result<tempfile::TempDir, String> {
        let dir = tempfile::Builder::new()
            .prefix("rr-ns-confine-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        if let Some((uid, gid)) = self.user {
            nix::unistd::chown(
                dir.path(),
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| format!("chown: {e}"))?;
        }
        Ok(dir)
    }

    pub fn argv(&self, case: &Case, arg: Option<&Path>) -> Vec<String> {
        let mut me = vec![
            self.exe.display().to_string(),
            "--child".to_owned(),
            case.name.to_owned(),
        ];
        me.extend(arg.map(|a| a.display().to_string()));
        let as_user = |mut rest: Vec<String>| match self.root {
            true => {
                let mut v: Vec<String> = [
                    "/usr/bin/setpriv",
                    &format!("--reuid={TEST_USER}"),
                    &format!("--regid={TEST_USER}"),
                    "--init-groups",
                    "--reset-env",
                    "--",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                v.append(&mut rest);
                v
            }
            false => rest,
        };
        match case.how {
            How::Direct | How::RealRoot => me,
            How::Unprivileged => as_user(me),
            How::UserNs => {
                let mut v = vec!["/usr/bin/unshare".to_owned(), "-Ur".to_owned()];
                v.append(&mut me);
                as_user(v)
            }
        }
    }

    pub fn run(&self, case: &Case, arg: Option<&Path>) -> Result<Running, String> {
        let argv = self.argv(case, arg);
        let (program, args) = argv.split_first().ok_or("empty argv")?;
        let mut child = Command::new(program)
            .args(args)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {argv:?}: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (line_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            let _ = err_tx.send(text);
        });
        Ok(Running {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            stderr: err_rx,
            deadline: Instant::now() + CHILD_DEADLINE,
        })
    }
}

impl Running {
    pub fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Waits for a stdout line starting with `prefix`; returns it.
    pub fn expect_line(&mut self, prefix: &str) -> Result<String, String> {
        loop {
            match self.lines.recv_timeout(self.left()) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return Ok(line);
                    }
                }
                Err(_) => {
                    let out = self.kill_and_collect();
                    return Err(format!("no line \"{prefix}\" from the child\n{out}"));
                }
            }
        }
    }

    /// The pid the child printed as "remover PID".
    pub fn remover(&mut self) -> Result<Pid, String> {
        let line = self.expect_line("remover ")?;
        line.trim_start_matches("remover ")
            .parse()
            .map(Pid::from_raw)
            .map_err(|e| format!("{line}: {e}"))
    }

    /// Closes stdin and waits for the child to end within the deadline.
    pub fn finish(mut self) -> Result<Outcome, String> {
        drop(self.stdin.take());
        // stdout closes when the child (and the remover, which closes its copy at once) ends.
        loop {
            match self.lines.recv_timeout(self.left()) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let out = self.kill_and_collect();
                    return Err(format!("the child outlived its deadline\n{out}"));
                }
            }
        }
        let status = self
            .child
            .wait()
            .map_err(|e| format!("wait for the child: {e}"))?;
        let stderr = self.stderr.recv_timeout(self.left()).unwrap_or_default();
        Ok(Outcome {
            status,
            stdout: self.seen.iter().map(|l| format!("{l}\n")).collect(),
            stderr,
        })
    }

    pub fn kill_and_collect(&mut self) -> String {
        let _ = self.child.kill();
        let status = self.child.wait().map(|s| format!("{s:?}"));
        let stderr = self
            .stderr
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        format!(
            "status after kill: {status:?}\n--- stdout\n{}--- stderr\n{stderr}",
            self.seen
                .iter()
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        )
    }
}

impl Drop for Running {
    /// A test that fails before `finish` must not leave its child running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn set_mode(path: &Path, mode: u32) -> Check {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// uid and gid of `name` from /etc/passwd.
pub fn find_user(name: &str) -> Result<(u32, u32), String> {
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| format!("read /etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let mut f = line.split(':');
            if f.next()? != name {
                return None;
            }
            let uid = f.nth(1)?.parse().ok()?;
            let gid = f.next()?.parse().ok()?;
            Some((uid, gid))
        })
        .ok_or_else(|| {
            format!(
                "the test user {name} does not exist. Remedy: run `scripts/setup` once \
                 (or `useradd -m {name}`)"
            )
        })
}
