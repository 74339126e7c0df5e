//! Real podman 5 for the pasta drop-in's tests: a Debian trixie root built once by
//! `scripts/trixie-root` (called by `scripts/provision`) at `ROOT`, entered by
//! `trixie-enter.sh` (pivot_root in a private mount namespace, as the test user; see its
//! header). `Session` lays out the shared directory the session sees at /rr: the pasta under
//! test (`pasta::install`), a resolv.conf, a busybox image tree with rr-probe and the libraries
//! it links (`img/`, imported by the inner script as `localhost/bb`), and the inner script.
//! The outer script (root, in the sealed network namespace) runs the session in the background
//! and may act while it runs (clients in other namespaces), synchronised through files in /rr.
//! Called by `tests/tests/dropin_pasta_podman.rs`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sandbox::{argv, command, Harness};

/// Where `scripts/trixie-root` builds the root.
pub const ROOT: &str = "/var/cache/rootless-run/trixie";

/// The stamp `scripts/trixie-root` writes last.
const STAMP: &str = ".rr-trixie-root";

const ENTER: &str = include_str!("trixie-enter.sh");

/// One podman session's shared directory.
#[derive(Debug)]
pub struct Session {
    dir: PathBuf,
}

impl Session {
    /// Checks the root (panicking with the remedy), then fills `h`'s directory: `pasta` (the
    /// copy `pasta::install` made, moved into `shared/`), `resolv.conf` naming `nameserver`,
    /// the image tree, the enter script.
    pub fn new(h: &Harness, pasta: &str, nameserver: &str) -> Session {
        assert!(
            Path::new(ROOT).join(STAMP).is_file(),
            "no Debian trixie root at {ROOT}: podman 5 runs from there. Remedy: sudo \
             scripts/trixie-root (scripts/provision runs it; about 70 s and 400 MB, once)"
        );
        let dir = h.dir().join("shared");
        fs::create_dir_all(&dir).expect("create the shared directory");
        fs::copy(pasta, dir.join("pasta")).expect("copy the pasta under test");
        fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {nameserver}\n"),
        )
        .expect("write resolv.conf");
        fs::write(dir.join("enter.sh"), ENTER).expect("write the enter script");
        Session { dir }
    }

    /// The outer script: builds the image tree from the trixie root's busybox and `probe`,
    /// starts the session running `inner` in the background (its output in `session.log`),
    /// runs `during` (with `$S` the shared directory), waits for the session and prints its
    /// log (all of it, also when `during` fails: then the session is killed). `inner` runs as the test user in the trixie root, with /rr the shared directory.
    pub fn command(&self, h: &Harness, probe: &str, inner: &str, during: &str) -> Command {
        fs::write(self.dir.join("inner.sh"), inner).expect("write the inner script");
        let user = h.user();
        let outer = format!(
            "S={s}; ROOT={ROOT}; U={u}; G={g}; PROBE={probe}; export S ROOT U G\n\
             chmod 1777 $S; img=$S/img; mkdir -p $img/bin\n\
             cp $ROOT/usr/bin/busybox $img/bin/busybox\n\
             for c in sh ip cat echo sleep nslookup true; do ln -s busybox $img/bin/$c; done\n\
             cp $PROBE $img/rr-probe\n\
             for l in $(ldd $PROBE | grep -o '/[^ ]*'); do mkdir -p $img$(dirname $l); cp -L $l $img$l; done\n\
             unshare -m --propagation private sh $S/enter.sh > $S/session.log 2>&1 &\n\
             session=$!\n\
             ( {during} ) || {{ echo \"outer failed $?\"; kill $session 2>/dev/null || true; }}\n\
             wait $session && echo 'session 0' || echo \"session $?\"\n\
             cat $S/session.log\n",
            s = self.dir.display(),
            u = user.uid,
            g = user.gid,
        );
        command(&argv(&["/bin/sh", "-euc", &outer]))
    }
}
