//! Checks, once per test binary, that the machine is set up for the integration tests: root,
//! inside the sealed network namespace, the test user, the tools, /dev/net/tun usable and user
//! namespaces enabled for that user. A missing piece fails every test loudly with the remedy;
//! nothing is ever skipped. Called by `Harness::new`; changes nothing on the machine.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use crate::child::run;
use crate::sandbox::{argv, as_user_argv, command, User, TEST_USER};

/// Bound for one check command.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// What `scripts/sealed-netns` exports inside the namespace it creates.
pub const SEALED_ENV: &str = "RR_SEALED_NETNS";

/// Interfaces `scripts/sealed-netns` creates; any other one means we are not sealed.
const SEALED_LINKS: [&str; 3] = ["lo", "ext0", "ext0-dead"];

/// Tools the tests run as root or as the test user, by absolute path.
const TOOLS: [(&str, &str); 9] = [
    ("/usr/bin/setpriv", "util-linux"),
    ("/usr/bin/unshare", "util-linux"),
    ("/usr/bin/nsenter", "util-linux"),
    ("/usr/bin/env", "coreutils"),
    ("/usr/bin/mknod", "coreutils"),
    ("/bin/mount", "mount"),
    ("/bin/sh", "dash"),
    ("/usr/sbin/ip", "iproute2"),
    ("/usr/bin/ping", "iputils-ping"),
];

const SETUP: &str = "run `scripts/setup` once on this machine";

/// Returns the test user if the machine is ready; otherwise panics with every problem found
/// and its remedy. The checks run once per process; later calls repeat the verdict.
pub fn require() -> &'static User {
    static VERDICT: OnceLock<Result<User, String>> = OnceLock::new();
    match VERDICT.get_or_init(check) {
        Ok(user) => user,
        Err(why) => panic!(
            "\n==== rootless-run integration tests: the machine is not ready ====\n{why}\n\
             ==================================================================\n"
        ),
    }
}

fn check() -> Result<User, String> {
    let mut problems = Vec::new();
    // Outside the sealed namespace nothing else may run: it could send traffic.
    check_sealed()?;
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "the integration tests must run as root (they build namespaces and switch to \
                    the test user). Remedy: `scripts/test`."
                .to_owned(),
        );
    }
    for (tool, package) in TOOLS {
        if !Path::new(tool).exists() {
            problems.push(format!(
                "{tool} is missing. Remedy: apt-get install {package}"
            ));
        }
    }
    if let Err(p) = check_tun_node() {
        problems.push(p);
    }
    let user = match find_user(TEST_USER) {
        Ok(u) => u,
        Err(p) => {
            problems.push(p);
            return Err(problems.join("\n"));
        }
    };
    for file in ["/etc/subuid", "/etc/subgid"] {
        let has = fs::read_to_string(file)
            .map(|t| t.lines().any(|l| l.split(':').next() == Some(TEST_USER)))
            .unwrap_or(false);
        if !has {
            problems.push(format!(
                "{file} has no range for {TEST_USER}. Remedy: {SETUP} \
                 (or `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {TEST_USER}`)"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    // Only now run anything as the user: the checks above explain most failures better.
    check_as_user(
        &user,
        &["/usr/bin/unshare", "-Urn", "true"],
        "cannot create a user + network namespace (`unshare -Urn true`)",
        "enable user namespaces: `sysctl -w user.max_user_namespaces=15000`, and where present \
         `sysctl -w kernel.unprivileged_userns_clone=1` and \
         `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`",
    )?;
    check_as_user(
        &user,
        &[
            "/usr/bin/unshare",
            "-Urn",
            "/usr/sbin/ip",
            "tuntap",
            "add",
            "dev",
            "rrcheck0",
            "mode",
            "tap",
        ],
        "cannot create a tap device inside its own namespaces \
         (`unshare -Urn ip tuntap add dev rrcheck0 mode tap`)",
        "`chmod 0666 /dev/net/tun` (and `modprobe tun` if it is missing)",
    )?;
    Ok(user)
}

/// Inside `scripts/sealed-netns`: the variable is set and the namespace holds only its links.
fn check_sealed() -> Result<(), String> {
    if std::env::var(SEALED_ENV).as_deref() != Ok("1") {
        return Err(format!(
            "{SEALED_ENV}=1 is not set: these tests must run inside the sealed network namespace, \
             where nothing can leave the machine. Remedy: run them through `scripts/test` \
             (or `scripts/sealed-netns cargo test ...`)."
        ));
    }
    // /proc/net/dev follows our network namespace (unlike /sys/class/net, which follows the
    // mount that sysfs came from).
    let dev = fs::read_to_string("/proc/net/dev")
        .map_err(|e| format!("cannot read /proc/net/dev: {e}"))?;
    let links: BTreeSet<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    let unexpected: Vec<&str> = links
        .iter()
        .copied()
        .filter(|l| !SEALED_LINKS.contains(l))
        .collect();
    if !unexpected.is_empty() {
        return Err(format!(
            "{SEALED_ENV}=1 is set but this network namespace has links {unexpected:?} besides \
             {SEALED_LINKS:?}: it is not the sealed one. Remedy: run through `scripts/test`."
        ));
    }
    Ok(())
}

fn check_tun_node() -> Result<(), String> {
    let path = "/dev/net/tun";
    let meta = fs::metadata(path).map_err(|e| {
        format!("{path}: {e}. Remedy: `modprobe tun`, or `mkdir -p /dev/net && mknod -m 0666 {path} c 10 200`")
    })?;
    if !meta.file_type().is_char_device() {
        return Err(format!(
            "{path} is not a character device. Remedy: recreate it with \
                            `mknod -m 0666 {path} c 10 200`"
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o666 != 0o666 {
        return Err(format!(
            "{path} has mode {mode:04o}; the test user cannot open it. Remedy: `chmod 0666 {path}` \
             ({SETUP} does it)"
        ));
    }
    Ok(())
}

/// Looks `name` up in /etc/passwd.
pub fn find_user(name: &str) -> Result<User, String> {
    let passwd =
        fs::read_to_string("/etc/passwd").map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            match f.as_slice() {
                [n, _, uid, gid, ..] if *n == name => Some(User {
                    name: name.to_owned(),
                    uid: uid.parse().ok()?,
                    gid: gid.parse().ok()?,
                }),
                _ => None,
            }
        })
        .ok_or_else(|| {
            format!("user {name} does not exist. Remedy: {SETUP} (or `useradd -m {name}`)")
        })
}

fn check_as_user(user: &User, cmd: &[&str], what: &str, remedy: &str) -> Result<(), String> {
    let out = run(
        format!("preflight: {}", cmd.join(" ")),
        &mut command(&as_user_argv(user, &argv(cmd))),
        CHECK_TIMEOUT,
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {what}: {}. Remedy: {remedy}",
            user.name,
            out.stderr.trim()
        ))
    }
}
