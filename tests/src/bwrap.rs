//! bubblewrap (Debian's, 0.8) as its users pair it with slirp4netns: `bwrap --unshare-user
//! --unshare-net --info-fd 3 ...` as the test user, the sandbox's pid read from the info fd's
//! JSON (`child-pid`), and a command inside that says it runs, then waits for a `go` line on
//! stdin, which the test sends once slirp4netns has said it is ready. bwrap has no networking of its own.
//! Called by `tests/tests/dropin_bwrap.rs`.

use std::time::Duration;

use crate::child::{Outcome, Running};
use crate::dropin::require_tools;
use crate::fifo::Fifo;
use crate::sandbox::{argv, command, Harness};
use crate::topology::Internet;

/// bubblewrap from Debian's `bubblewrap` package (not setuid there).
pub const BWRAP: &str = "/usr/bin/bwrap";

/// What the command inside prints once bwrap's setup is over.
const RUNNING: &str = "rr-bwrap-running";

/// How bwrap lays out the sandbox's user namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Userns {
    /// `--uid 0 --gid 0`: one user namespace, which owns the network namespace.
    Single,
    /// bwrap's default for a non-root caller: it builds the sandbox in a user namespace that
    /// owns the network namespace, then unshares a second one nested in it to map the caller's
    /// own uid, and the sandboxed process lives in that nested one (bubblewrap.c, "create a
    /// new userspace and map our uid 1:1"; slirp4netns#311).
    Nested,
}

/// A running bwrap sandbox whose command waits for `go`.
pub struct Bwrap {
    run: Running,
    child_pid: i32,
}

impl Bwrap {
    /// Starts `bwrap --unshare-user [--uid 0 --gid 0] --unshare-net --info-fd 3 --ro-bind / /
    /// --dev /dev --proc /proc -- sh -c 'echo RUNNING && read go && exec "$@"' sh INSIDE...`
    /// as the test user (in `outer`'s network namespace if given), reads the sandbox's pid
    /// from the info fd and waits for the sandbox's first line.
    pub fn start(
        h: &Harness,
        userns: Userns,
        inside: &[String],
        outer: Option<&Internet>,
        timeout: Duration,
    ) -> Bwrap {
        require_tools(&[(BWRAP, "bubblewrap")]);
        let info = Fifo::create(h.dir(), "bwrap.info", h.user());
        let mut cmd = argv(&[
            "/bin/sh",
            "-c",
            r#"exec "$@" 3>"$0""#,
            info.path(),
            BWRAP,
            "--unshare-user",
        ]);
        if userns == Userns::Single {
            cmd.extend(argv(&["--uid", "0", "--gid", "0"]));
        }
        cmd.extend(argv(&[
            "--unshare-net",
            "--info-fd",
            "3",
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--",
            "/bin/sh",
            "-c",
            &format!(r#"echo {RUNNING} && read -r go && exec "$@""#),
            "sh",
        ]));
        cmd.extend(inside.iter().cloned());
        let mut full = h.as_user_argv(&cmd);
        if let Some(net) = outer {
            full = net.in_outer(&full);
        }
        let what = format!("bwrap ({userns:?} user namespace) as {}", h.user().name);
        let run = Running::spawn(what, &mut command(&full));
        let json = info.to_eof(run.pid(), timeout).unwrap_or_else(|e| {
            panic!(
                "bwrap wrote no --info-fd JSON: {e}\n{}",
                run.output_so_far()
            )
        });
        let child_pid = child_pid(&json).unwrap_or_else(|why| {
            panic!(
                "bwrap's --info-fd JSON {:?}: {why}\n{}",
                String::from_utf8_lossy(&json),
                run.output_so_far()
            )
        });
        // bwrap writes the info fd right after clone(2), while the sandbox process may still
        // be setting itself up, nested user namespace included: until it runs our command,
        // /proc/PID/ns/user can still be the outer namespace. Its first line says it is done.
        let mut run = run;
        run.expect_line("the sandbox's first line", timeout, |l| l == RUNNING);
        Bwrap { run, child_pid }
    }

    /// The sandboxed process's pid, as bwrap reported it.
    pub fn child_pid(&self) -> i32 {
        self.child_pid
    }

    /// Lets the command inside run, then waits for bwrap to exit.
    pub fn go(mut self, timeout: Duration) -> Outcome {
        self.run.write_stdin(b"go\n");
        self.run.close_stdin();
        self.run.wait(timeout)
    }
}

/// `child-pid` from bwrap's info JSON (`{"child-pid": N, "mnt-namespace": ..., ...}`).
fn child_pid(json: &[u8]) -> Result<i32, String> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
    let pid = value
        .get("child-pid")
        .and_then(serde_json::Value::as_i64)
        .ok_or("no numeric child-pid")?;
    i32::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("child-pid {pid} is not a pid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_pid_is_read_from_bwrap_0_8_info_json() {
        // bwrap 0.8.0's --info-fd output, verbatim.
        let json = b"{\n    \"child-pid\": 17344,\n    \"mnt-namespace\": 4026532249,\n    \
                     \"net-namespace\": 4026532250\n}\n";
        assert_eq!(child_pid(json), Ok(17344));
        assert!(child_pid(b"{\"child-pid\": 0}").is_err());
        assert!(child_pid(b"{\n    \"child-pid\": 17").is_err());
    }
}
