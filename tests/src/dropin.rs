//! The slirp4netns binary under test for the real-client tests (rootlesskit, bubblewrap,
//! podman): by default our drop-in `rr-slirp4netns` as the workspace builds it, or whatever
//! `RR_TEST_SLIRP4NETNS=PATH` names (`/usr/bin/slirp4netns` proves each test against the
//! original). It is copied into the harness's 0755 directory as `slirp4netns`, so the test
//! user can run it and tools that look it up by name on PATH find it there. Also tells the
//! libslirp-based original apart, for the one behaviour where the two are known to differ.
//! `Attached` runs it by hand the way bubblewrap users do (`BIN ARGS --ready-fd=3 --exit-fd=4`,
//! both FIFOs: the ready byte comes through one, and the test closing the other is the exit
//! signal).
//! Called by `tests/tests/dropin_*.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::child::{run, Outcome, Running};
use crate::fifo::{ExitPipe, Fifo, FifoError};
use crate::sandbox::{argv, built_dir, command, Harness};
use crate::topology::Internet;

/// Our drop-in's binary name (issue 11).
pub const DROPIN: &str = "rr-slirp4netns";

/// Environment variable naming another slirp4netns to test instead of the built drop-in.
pub const OVERRIDE: &str = "RR_TEST_SLIRP4NETNS";

/// The name the copy is installed under, as clients look it up.
pub const NAME: &str = "slirp4netns";

const VERSION_TIMEOUT: Duration = Duration::from_secs(30);

/// A copy of the slirp4netns under test that the test user can execute.
#[derive(Debug, Clone)]
pub struct Slirp4netns {
    path: String,
    source: PathBuf,
}

impl Slirp4netns {
    /// Finds the binary under test and copies it into `h`'s directory. Panics, naming the
    /// remedy, when `RR_TEST_SLIRP4NETNS` is unset and the drop-in has not been built.
    pub fn install(h: &Harness) -> Slirp4netns {
        let source = match std::env::var_os(OVERRIDE) {
            Some(path) => {
                let path = PathBuf::from(path);
                assert!(
                    path.is_file(),
                    "{OVERRIDE}={} is not a file: name a slirp4netns binary, e.g. \
                     {OVERRIDE}=/usr/bin/slirp4netns",
                    path.display()
                );
                path
            }
            None => {
                let built = built_dir().join(DROPIN);
                assert!(
                    built.is_file(),
                    "{DROPIN} not built yet ({} is missing): these tests run real clients \
                     against our slirp4netns drop-in. Build it (`scripts/test` builds the \
                     workspace), or run them against another binary with \
                     {OVERRIDE}=/usr/bin/slirp4netns.",
                    built.display()
                );
                built
            }
        };
        let path = crate::sandbox::copy_file(&source, &h.dir().join(NAME));
        Slirp4netns { path, source }
    }

    /// Path of the copy (unique to this test: it is inside the harness's temp dir, so it also
    /// finds this test's slirp4netns processes by command line).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The binary the copy was made from, for messages.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// `--version` output of the binary under test.
    pub fn version(&self) -> String {
        let out = run(
            format!("{} --version", self.path),
            &mut command(&[self.path.clone(), "--version".to_owned()]),
            VERSION_TIMEOUT,
        );
        assert_eq!(out.shell_status(), 0, "--version must exit 0\n{out}");
        out.stdout
    }

    /// True for the original slirp4netns: its `--version` names the libslirp it links with
    /// (`libslirp: 4.7.0`), which a stack of its own has no version of.
    pub fn is_libslirp_original(&self) -> bool {
        names_a_libslirp_version(&self.version())
    }
}

/// Panics, naming the package and the remedy, unless every `(path, Debian package)` exists.
/// The clients are real programs from Debian; `scripts/provision` installs them.
pub fn require_tools(tools: &[(&str, &str)]) {
    let missing: Vec<String> = tools
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(path, package)| format!("{path} (package {package})"))
        .collect();
    assert!(
        missing.is_empty(),
        "missing {}. Remedy: `scripts/provision` (or apt-get install the packages named)",
        missing.join(", ")
    );
}

/// The binary under test run by hand: `BIN ARGS... --ready-fd=3 --exit-fd=4` as the test user,
/// fd 3 a FIFO the test reads the ready byte from, fd 4 a FIFO the test holds the only writer
/// of; its closing (a HUP on the exit fd) must make the binary exit 0.
pub struct Attached {
    run: Running,
    ready: Fifo,
    exit: ExitPipe,
}

impl Attached {
    /// Starts `bin` with `args` (the options and `PID TAPNAME`), in `outer`'s network
    /// namespace if given, else in the sealed one. `tag` names the FIFO, unique per test.
    pub fn start(
        h: &Harness,
        bin: &Slirp4netns,
        args: &[&str],
        outer: Option<&Internet>,
        tag: &str,
    ) -> Attached {
        let ready = Fifo::create(h.dir(), &format!("{tag}.ready"), h.user());
        let exit = ExitPipe::create(h.dir(), &format!("{tag}.exit"), h.user());
        // The shell opens the FIFOs as fds 3 and 4 and becomes the binary.
        let mut cmd = argv(&[
            "/bin/sh",
            "-c",
            r#"ready=$1 exit=$2; shift 2; exec "$@" 3>"$ready" 4<"$exit""#,
            "sh",
            ready.path(),
            exit.path(),
            bin.path(),
        ]);
        cmd.extend(argv(args));
        cmd.extend(argv(&["--ready-fd=3", "--exit-fd=4"]));
        let mut full = h.as_user_argv(&cmd);
        if let Some(net) = outer {
            full = net.in_outer(&full);
        }
        let what = format!(
            "{} {} (as {})",
            bin.source().display(),
            args.join(" "),
            h.user().name
        );
        let run = Running::spawn(what, &mut command(&full));
        Attached { run, ready, exit }
    }

    /// Waits for the ready byte, which must be `1`.
    pub fn ready(&self, timeout: Duration) -> Result<(), FifoError> {
        let byte = self.ready.first_byte(self.run.pid(), timeout)?;
        assert_eq!(
            byte,
            b'1',
            "the ready fd must carry the byte '1'\n{}",
            self.run.output_so_far()
        );
        Ok(())
    }

    /// Output so far, for messages.
    pub fn output_so_far(&self) -> String {
        self.run.output_so_far()
    }

    /// Closes the test's end of the exit fd and waits for the binary to exit.
    pub fn stop(self, timeout: Duration) -> Outcome {
        let Attached { run, ready, exit } = self;
        drop(exit);
        drop(ready);
        run.wait(timeout)
    }
}

/// True if `--version` output has a `libslirp: N...` line with a numeric version.
fn names_a_libslirp_version(version: &str) -> bool {
    version.lines().any(|l| {
        l.strip_prefix("libslirp:")
            .map(str::trim_start)
            .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_is_told_by_its_libslirp_version_line() {
        // slirp4netns 1.2.0 on Debian 12, verbatim.
        let original =
            "slirp4netns version 1.2.0\ncommit: 656041d45cfca7a4176f6b7eed9e4fe6c11e8383\n\
                        libslirp: 4.7.0\nSLIRP_CONFIG_VERSION_MAX: 4\nlibseccomp: 2.5.4\n";
        assert!(names_a_libslirp_version(original));
        assert!(!names_a_libslirp_version(
            "slirp4netns version 1.2.0 (rr-slirp4netns 0.1.0)\nlibslirp: none\n"
        ));
        assert!(!names_a_libslirp_version("rr-slirp4netns 0.1.0\n"));
    }
}
