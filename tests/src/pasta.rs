//! The pasta under test for tests/tests/dropin_pasta.rs: by default our drop-in `rr-pasta` as
//! the workspace builds it, or whatever `RR_TEST_PASTA=PATH` names (`/usr/bin/pasta` proves
//! the tests against the original; never ping through it: it forwards ICMP echo to the real
//! gateway). It is copied into the harness's 0755 directory as `pasta`, the name podman looks
//! up. `podman_like` runs a shell script the way podman runs pasta: as root of a fresh user
//! namespace of the test user (`unshare -Urm`), in the host's network namespace, with the
//! target namespace bound to a file (`$NS`) that the script can remove.
//! Called by `tests/tests/dropin_pasta.rs` and `dropin_pasta_ports.rs`.

use std::path::PathBuf;
use std::process::Command;

use crate::sandbox::{argv, built_dir, copy_file, Harness};

/// Our drop-in's binary name (issue 16).
pub const DROPIN: &str = "rr-pasta";

/// Environment variable naming another pasta to test instead of the built drop-in.
pub const OVERRIDE: &str = "RR_TEST_PASTA";

/// podman 5.4's argv without the ports, `--netns` and `--map-guest-addr` (research:
/// podman5-pasta.md), as the script's `$PODMAN_ARGS`.
pub const PODMAN_ARGS: &str =
    "--config-net --dns-forward 169.254.1.1 -t none -u none -T none -U none --no-map-gw --quiet";

/// Script lines: wait (bounded, 10 s) for no process to hold the pasta copy open, then say
/// "helper gone" (or "helper left").
pub const HELPER_GONE: &str = "for i in $(seq 100); do pgrep -f \"^$PASTA \" >/dev/null || break; \
     sleep 0.1; done; pgrep -f \"^$PASTA \" >/dev/null && echo 'helper left' || echo 'helper gone'\n";

/// The copy of the pasta under test, runnable by the test user.
pub fn install(h: &Harness) -> String {
    let source = match std::env::var_os(OVERRIDE) {
        Some(path) => PathBuf::from(path),
        None => built_dir().join(DROPIN),
    };
    assert!(
        source.is_file(),
        "{} is missing: build the workspace (`scripts/test` does), or name another pasta \
         with {OVERRIDE}=/usr/bin/pasta",
        source.display()
    );
    copy_file(&source, &h.dir().join("pasta"))
}

/// A Command running `script` (sh -eu) as root of a new user and mount namespace of the test
/// user, with `$PASTA`, `$PROBE`, `$PODMAN_ARGS` set and `$NS` a file bound to a new, empty
/// network namespace (in `$D`, a fresh directory). `env` adds variables.
pub fn podman_like(h: &Harness, pasta: &str, env: &[(&str, String)], script: &str) -> Command {
    let mut prelude = format!(
        "PASTA={pasta}; PROBE={probe}; PODMAN_ARGS='{PODMAN_ARGS}'\n\
         D=$(mktemp -d); NS=$D/ns; touch $NS; unshare --net=$NS true\n",
        probe = h.probe(&[])[0],
    );
    for (k, v) in env {
        prelude.push_str(&format!("{k}='{v}'\n"));
    }
    let full = format!("{prelude}{script}");
    h.as_user(&argv(&[
        "/usr/bin/unshare",
        "-Urm",
        "/bin/sh",
        "-euc",
        &full,
    ]))
}
