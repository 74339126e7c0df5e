//! Issue 5, option by option: runs the real rootless-run as the unprivileged test user inside
//! the sealed network namespace, and where util-linux unshare can do the same, compares.
//! Needs `scripts/setup` (test user, /dev/net/tun 0666, uidmap); run with `scripts/test`.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use common::{fields, Env, Spawned};

#[test]
fn uid_and_gid_maps_match_unshare_map_root_user() {
    let env = Env::new();
    let script = "cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups";
    let ours = env.rr(&["--", "sh", "-c", script]);
    let theirs = env.unshare(&["-Urn", "sh", "-c", script]);
    assert_eq!(fields(ours.ok()), fields(theirs.ok()));
    assert_eq!(
        fields(ours.ok())[0],
        ["0", &env.uid.to_string(), "1"],
        "caller mapped to root"
    );
}

#[test]
fn map_current_user_matches_unshare() {
    let env = Env::new();
    let ours = env.rr(&["-c", "--", "id", "-u"]);
    let theirs = env.unshare(&["-Ucn", "id", "-u"]);
    assert_eq!(ours.ok().trim(), theirs.ok().trim());
    assert_eq!(ours.ok().trim(), env.uid.to_string());
}

#[test]
fn map_auto_maps_subordinate_ids_through_newuidmap() {
    let env = Env::new();
    let out = env.rr(&["--map-auto", "--", "cat", "/proc/self/uid_map"]);
    let map = fields(out.ok());
    assert_eq!(map[0], ["0", &env.uid.to_string(), "1"]);
    assert_eq!(map.len(), 2, "own id plus the subuid block: {map:?}");
    assert_eq!(map[1][0], "1", "block starts after the caller's inner id");
}

#[test]
fn file_created_inside_is_owned_by_the_caller_outside() {
    let env = Env::new();
    let path = env.scratch.join("made-inside");
    let p = path.to_str().expect("utf-8 path");
    env.rr(&["--", "touch", p]).ok();
    let m = fs::metadata(&path).expect("file exists");
    assert_eq!((m.uid(), m.gid()), (env.uid, env.gid));
    let inside = env.rr(&["--", "stat", "-c", "%u:%g", p]);
    assert_eq!(inside.ok().trim(), "0:0", "root inside");
}

#[test]
fn every_requested_namespace_differs_from_the_callers() {
    let env = Env::new();
    let kinds = [
        "user",
        "net",
        "mnt",
        "uts",
        "ipc",
        "cgroup",
        "time_for_children",
    ];
    let script: String = kinds
        .iter()
        .map(|k| format!("readlink /proc/self/ns/{k};"))
        .collect();
    let outside = env.user_cmd("/bin/sh", &["-c", &script]);
    let inside = env.rr(&["-muiCT", "--", "sh", "-c", &script]);
    let (o, i) = (fields(outside.ok()), fields(inside.ok()));
    assert_eq!(o.len(), kinds.len());
    for (k, (a, b)) in kinds.iter().zip(o.iter().zip(&i)) {
        assert_ne!(a, b, "{k} namespace is shared");
    }
    // Without the flags, uts/ipc stay shared, and so does the mount namespace when the
    // host's resolv.conf is kept.
    let plain = env.rr(&["--keep-resolv-conf", "--", "sh", "-c", &script]);
    let p = fields(plain.ok());
    assert_eq!(p[2], o[2], "mount namespace unshared without -m");
    assert_eq!(p[3], o[3], "uts namespace unshared without -u");
    assert_eq!(p[4], o[4], "ipc namespace unshared without -i");
    // By default the generated resolv.conf gets a mount namespace of its own.
    let plain = env.rr(&["--", "sh", "-c", &script]);
    assert_ne!(
        fields(plain.ok())[2],
        o[2],
        "no mount namespace for resolv.conf"
    );
}

#[test]
fn hostname_is_set_inside_and_does_not_leak() {
    let env = Env::new();
    let before = fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let out = env.rr(&["--hostname", "box", "--", "hostname"]);
    assert_eq!(out.ok().trim(), "box");
    let out = env.rr(&["-u", "--", "sh", "-c", "hostname inner && hostname"]);
    assert_eq!(out.ok().trim(), "inner");
    let after = fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(before, after);
}

/// What a pid namespace's shell sees: its pid, pid 1's name, how many processes /proc lists.
const PID_NS_VIEW: &str = "echo $$; cat /proc/1/comm; ls /proc | grep -c '^[0-9]'";

#[test]
fn pid_namespace_has_the_program_as_pid_1_like_unshare() {
    let env = Env::new();
    let ours = env.rr(&[
        "--pid",
        "--fork",
        "--mount-proc",
        "--",
        "sh",
        "-c",
        PID_NS_VIEW,
    ]);
    let theirs = env.unshare(&["-Urpf", "--mount-proc", "sh", "-c", PID_NS_VIEW]);
    let (f, g) = (fields(ours.ok()), fields(theirs.ok()));
    assert_eq!(f[..2], g[..2], "pid and /proc/1/comm as under unshare");
    assert_eq!((f[0][0].as_str(), f[1][0].as_str()), ("1", "sh"));
    // sh, ls and grep at most: grep may not have started when ls reads /proc (2), under
    // unshare as here, so the count is bounded, not compared.
    let n: u32 = f[2][0].parse().expect("count");
    assert!((2..=3).contains(&n), "/proc shows {n} processes");
}

#[test]
fn init_is_pid_1_with_the_program_as_pid_2_and_proc_shows_only_the_sandbox() {
    let env = Env::new();
    let out = env.rr(&["--init", "--mount-proc", "--", "sh", "-c", PID_NS_VIEW]);
    let f = fields(out.ok());
    assert_eq!(f[0], ["2"], "the command is pid 2 under our init");
    assert_eq!(f[1], ["rootless-run"], "pid 1 is our init");
    // init, sh, ls, grep at most
    let n: u32 = f[2][0].parse().expect("count");
    assert!(n <= 4, "/proc shows {n} processes");
}

#[test]
fn init_reaps_orphans() {
    let env = Env::new();
    // The inner sh prints its pid and exits; its parent subshell is already gone, so it is an
    // orphan of pid 1. If pid 1 does not reap it, /proc/PID stays (a zombie) and the loop
    // spins until the test's timeout fails it.
    let script = r#"o=$( (sh -c 'echo $$' &) ); while [ -e /proc/$o ]; do :; done; echo reaped $o"#;
    let out = env.rr(&["--init", "--mount-proc", "--", "sh", "-c", script]);
    assert!(out.ok().starts_with("reaped "), "{out:?}");
}

#[test]
fn monotonic_and_boottime_offsets_match_unshare() {
    let env = Env::new();
    let script = "cat /proc/self/timens_offsets";
    let ours = env.rr(&[
        "-T",
        "--monotonic=86400",
        "--boottime=3600",
        "--",
        "sh",
        "-c",
        script,
    ]);
    let theirs = env.unshare(&[
        "-Ur",
        "-T",
        "--monotonic=86400",
        "--boottime=3600",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(fields(ours.ok()), fields(theirs.ok()));
    assert!(fields(ours.ok()).contains(&vec!["monotonic".into(), "86400".into(), "0".into()]));
    let up = env.rr(&["-T", "--boottime=1000000", "--", "cat", "/proc/uptime"]);
    let secs: f64 = fields(up.ok())[0][0].parse().expect("uptime");
    assert!(secs > 1_000_000.0, "uptime {secs}");
}

#[test]
fn root_pivots_into_a_minimal_rootfs_and_wd_applies_inside() {
    let env = Env::new();
    let rootfs = env.scratch.join("rootfs");
    common::minimal_rootfs(&rootfs);
    let r = rootfs.to_str().expect("utf-8");
    let out = env.rr(&[
        "-m",
        "-R",
        r,
        "-w",
        "/work",
        "--",
        "/bin/sh",
        "-c",
        "pwd; ls /",
    ]);
    let f = fields(out.ok());
    assert_eq!(f[0], ["/work"]);
    let mut listing: Vec<_> = f[1..].iter().flatten().cloned().collect();
    listing.sort();
    let mut expected: Vec<_> = fs::read_dir(&rootfs)
        .expect("read rootfs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    expected.sort();
    assert_eq!(listing, expected, "/ is the rootfs");
    // The host's tree is not reachable: the rootfs's /proc is an empty directory.
    let out = env.rr(&["-m", "-R", r, "--", "/bin/sh", "-c", "ls -A /proc"]);
    assert_eq!(out.ok(), "");
    // --mount-proc lands inside the new root.
    let out = env.rr(&[
        "-m",
        "-p",
        "--mount-proc",
        "-R",
        r,
        "--",
        "/bin/sh",
        "-c",
        "ls /proc/1",
    ]);
    assert!(out.ok().contains("status"), "{out:?}");
}

#[test]
fn wd_sets_the_working_directory_like_unshare() {
    let env = Env::new();
    let d = env.scratch.to_str().expect("utf-8");
    let ours = env.rr(&["-w", d, "--", "pwd"]);
    let theirs = env.unshare(&["-Ur", "-w", d, "pwd"]);
    assert_eq!(ours.ok(), theirs.ok());
    assert_eq!(ours.ok().trim(), d);
}

#[test]
fn exit_status_and_fatal_signals_pass_through_like_unshare() {
    let env = Env::new();
    assert_eq!(env.rr(&["--", "sh", "-c", "exit 42"]).code(), 42);
    let ours = env.rr(&["--", "sh", "-c", "kill -TERM $$"]);
    let theirs = env.unshare(&["-Urf", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(ours.status.signal(), Some(15), "re-raised: {ours:?}");
    assert_eq!(ours.code(), theirs.code());
    // As pid 1 (--pid) the shell is immune to its own SIGTERM, as under unshare; under our
    // init (pid 2) it dies of it, and the init reports 128 + 15.
    let ours = env.rr(&["-p", "--", "sh", "-c", "kill -TERM $$; exit 7"]);
    let theirs = env.unshare(&["-Urpf", "sh", "-c", "kill -TERM $$; exit 7"]);
    assert_eq!((ours.code(), theirs.code()), (7, 7));
    assert_eq!(
        env.rr(&["--init", "--", "sh", "-c", "kill -TERM $$"])
            .code(),
        143
    );
    assert_eq!(env.rr(&["-p", "--", "sh", "-c", "exit 42"]).code(), 42);
    assert_eq!(env.rr(&["--init", "--", "sh", "-c", "exit 42"]).code(), 42);
}

#[test]
fn setuid_setgid_and_keep_caps() {
    let env = Env::new();
    let out = env.rr(&[
        "--map-auto",
        "-S",
        "1000",
        "-G",
        "1000",
        "--",
        "sh",
        "-c",
        "id -u; id -g; grep CapEff /proc/self/status",
    ]);
    let f = fields(out.ok());
    assert_eq!((f[0][0].as_str(), f[1][0].as_str()), ("1000", "1000"));
    assert_eq!(f[2][1], "0000000000000000", "no caps without --keep-caps");
    let out = env.rr(&[
        "--map-auto",
        "--keep-caps",
        "-S",
        "1000",
        "--",
        "grep",
        "CapAmb",
        "/proc/self/status",
    ]);
    assert_ne!(
        fields(out.ok())[0][1],
        "0000000000000000",
        "ambient caps kept"
    );
}

#[test]
fn sigterm_to_the_launcher_reaches_the_command() {
    let env = Env::new();
    // Short foreground sleeps: dash runs the trap when the current one ends. (A background
    // `sleep 1000 & wait` would race: a TERM sent to the job between fork and exec is caught
    // by the handler the child inherited and lost at exec, leaving the sleep behind.)
    let script = "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done";
    let mut run = Spawned::start(env.as_user(&env.bin, &["--", "sh", "-c", script]), "ready");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let status = run.wait();
    assert_eq!(status.code(), Some(7), "{status:?}");
    assert_eq!(run.rest().trim(), "got-term");
}

/// Starts `script` (which must print "ready") in a sandbox, SIGKILLs the launcher and checks
/// that every process running `marker` (a symlink to sleep) is gone.
fn sigkill_leaves_nothing(extra: &[&str], script: &str) {
    let env = Env::new();
    let marker = env
        .scratch
        .join(format!("rr-kill-marker-{}", std::process::id()));
    std::os::unix::fs::symlink("/bin/sleep", &marker).expect("symlink");
    let script = script.replace("MARKER", marker.to_str().expect("utf-8"));
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--", "sh", "-c", &script]);
    let mut run = Spawned::start(env.as_user(&env.bin, &args), "ready");
    let name = marker
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let left = common::processes_with(env.uid, &name);
    assert!(!left.is_empty(), "the sandboxed sleep is running");
    let fds: Vec<_> = left.iter().map(|p| common::pidfd(*p)).collect();
    run.child.kill().expect("SIGKILL the launcher");
    run.wait();
    for (pid, fd) in left.iter().zip(&fds) {
        assert!(
            common::wait_pidfd(fd, Duration::from_secs(10)),
            "process {pid} survived the launcher"
        );
    }
}

#[test]
fn sigkill_of_the_launcher_leaves_no_process() {
    // Without --pid the command itself is tied to the launcher (PR_SET_PDEATHSIG).
    sigkill_leaves_nothing(&[], "echo ready; exec MARKER 1000");
}

#[test]
fn sigkill_of_the_launcher_takes_detached_descendants_along_without_pid() {
    // Two background jobs and an orphan (its parent subshell exits, so it is reparented to the
    // monitor, the subreaper) all die with the launcher, though no pid namespace holds them.
    let env = Env::new();
    let marker = env
        .scratch
        .join(format!("rr-detached-marker-{}", std::process::id()));
    std::os::unix::fs::symlink("/bin/sleep", &marker).expect("symlink");
    let m = marker.to_str().expect("utf-8");
    let script = format!("{m} 1000 & {m} 1001 & ({m} 1002 &); echo ready; wait");
    let mut run = Spawned::start(env.as_user(&env.bin, &["--", "sh", "-c", &script]), "ready");
    let launcher = run.pid();
    let tree = common::sandbox_descendants_of(launcher);
    // The monitor, the shell, its two jobs and the orphan; the subshell has been waited for.
    assert_eq!(
        tree.len(),
        5,
        "sandbox tree: {}",
        common::describe_tree(launcher)
    );
    let monitor = common::sandbox_children_of(launcher);
    assert_eq!(monitor.len(), 1, "{}", common::describe_tree(launcher));
    assert_eq!(
        common::children_of(monitor[0]).len(),
        2,
        "the shell and the orphan are the monitor's: {}",
        common::describe_tree(launcher)
    );
    let fds: Vec<_> = tree.iter().map(|p| common::pidfd(*p)).collect();
    run.child.kill().expect("SIGKILL the launcher");
    run.wait();
    for (pid, fd) in tree.iter().zip(&fds) {
        assert!(
            common::wait_pidfd(fd, Duration::from_secs(10)),
            "process {pid} survived the launcher: {}",
            common::describe_tree(*pid)
        );
    }
    let name = marker.file_name().expect("name").to_string_lossy();
    assert_eq!(common::processes_with(env.uid, &name), Vec::<u32>::new());
}

#[test]
fn sigkill_of_the_launcher_takes_the_pid_namespace_along() {
    // With --pid the whole tree goes: the init dies, and the kernel kills the namespace.
    sigkill_leaves_nothing(
        &["-p", "--mount-proc"],
        "MARKER 1000 & MARKER 1001 & echo ready; exec MARKER 1002",
    );
}

/// Stops a persisted sandbox when a test fails half-way, so nothing outlives it.
struct StopOnDrop<'a>(&'a Env, String);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        if Path::new(&self.1).join("launcher.pid").exists() {
            let _ = self.0.rr(&["--stop", &self.1]);
        }
    }
}

#[test]
fn persist_detach_join_nsenter_and_stop_round_trip() {
    let env = Env::new();
    let dir = env.scratch.join("box");
    let d = dir.to_str().expect("utf-8");
    let _guard = StopOnDrop(&env, d.to_string());
    let out = env.rr(&[
        "--persist",
        d,
        "--detach",
        "--hostname",
        "boxy",
        "--",
        "sleep",
        "infinity",
    ]);
    assert_eq!(out.code(), 0, "{out:?}");
    let holder = fs::read_to_string(dir.join("pid")).expect("holder pid recorded");
    let holder = holder.trim();
    let launcher: u32 = fs::read_to_string(dir.join("launcher.pid"))
        .expect("launcher pid recorded")
        .trim()
        .parse()
        .expect("pid");
    let launcher_fd = common::pidfd(launcher);

    let joined = env.rr(&[
        "--join",
        d,
        "--",
        "sh",
        "-c",
        "hostname; cat /proc/self/uid_map",
    ]);
    let f = fields(joined.ok());
    assert_eq!(f[0], ["boxy"]);
    assert_eq!(f[1], ["0", &env.uid.to_string(), "1"]);
    let by_pid = env.rr(&["--join", holder, "--", "hostname"]);
    assert_eq!(by_pid.ok().trim(), "boxy");
    let entered = env.user_cmd(
        "/usr/bin/nsenter",
        &[
            "-t",
            holder,
            "-U",
            "-n",
            "-u",
            "--preserve-credentials",
            "sh",
            "-c",
            "hostname; ip -4 -o addr show tap0",
        ],
    );
    let e = entered.ok();
    assert!(e.starts_with("boxy\n"), "{e}");
    assert!(e.contains("10.0.2.100/24"), "{e}");

    let stop = env.rr(&["--stop", d]);
    assert_eq!(stop.code(), 0, "{stop:?}");
    assert!(
        common::wait_pidfd(&launcher_fd, Duration::from_secs(1)),
        "launcher exited"
    );
    assert!(!dir.exists(), "record removed");
    assert!(
        !Path::new(&format!("/proc/{holder}")).exists(),
        "holder gone"
    );
    let again = env.rr(&["--stop", d]);
    assert_eq!(again.code(), 1);
    assert!(
        again.stderr.starts_with("rootless-run: --stop="),
        "{again:?}"
    );
}

#[test]
fn persist_without_detach_keeps_serving_after_the_command_exits() {
    let env = Env::new();
    let dir = env.scratch.join("box2");
    let d = dir.to_str().expect("utf-8");
    let _guard = StopOnDrop(&env, d.to_string());
    let mut run = Spawned::start(
        env.as_user(&env.bin, &["--persist", d, "--", "sh", "-c", "echo ready"]),
        "ready",
    );
    // The command has exited; the sandbox is still there to join.
    let out = env.rr(&[
        "--join", d, "--", "ip", "-4", "-o", "route", "show", "default",
    ]);
    assert!(out.ok().contains("via 10.0.2.2"), "{out:?}");
    assert_eq!(env.rr(&["--stop", d]).code(), 0);
    assert_eq!(run.wait().code(), Some(0), "the command's status");
}

#[test]
fn completions_are_generated_from_the_cli() {
    let env = Env::new();
    let out = env.rr(&["--completions", "bash"]);
    let s = out.ok();
    assert!(s.contains("--mount-proc"), "bash completion lists options");
    assert!(s.contains("--map-auto"));
}

#[test]
fn kill_child_signal_reaches_the_command_when_the_launcher_dies() {
    let env = Env::new();
    let flag = env.scratch.join("got-term");
    let script = format!(
        "trap 'echo term > {}; exit 0' TERM; echo ready; while :; do sleep 0.1; done",
        flag.display()
    );
    let mut run = Spawned::start(
        env.as_user(&env.bin, &["--kill-child=TERM", "--", "sh", "-c", &script]),
        "ready",
    );
    let monitor = common::sandbox_children_of(run.pid());
    assert_eq!(
        monitor.len(),
        1,
        "the launcher has one child in the sandbox: {monitor:?}"
    );
    let sh = common::children_of(monitor[0]);
    assert_eq!(sh.len(), 1, "the monitor has one child, the shell: {sh:?}");
    let fd = common::pidfd(sh[0]);
    run.child.kill().expect("SIGKILL the launcher");
    run.wait();
    assert!(
        common::wait_pidfd(&fd, Duration::from_secs(10)),
        "shell exited"
    );
    assert_eq!(fs::read_to_string(&flag).expect("trap ran").trim(), "term");
}

/// The optional fields (shared:N, master:N) of the root mount, as the sandbox sees them.
fn root_propagation(out: &str) -> Vec<String> {
    let line = out
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .unwrap_or_else(|| panic!("no root mount in {out}"));
    line.split_whitespace()
        .skip(6)
        .take_while(|f| *f != "-")
        .map(|f| f.split(':').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn propagation_matches_unshare() {
    let env = Env::new();
    for p in ["private", "slave", "shared", "unchanged"] {
        let flag = format!("--propagation={p}");
        let ours = env.rr(&["-m", &flag, "--", "cat", "/proc/self/mountinfo"]);
        let theirs = env.unshare(&["-Urm", &flag, "cat", "/proc/self/mountinfo"]);
        assert_eq!(
            root_propagation(ours.ok()),
            root_propagation(theirs.ok()),
            "{flag}"
        );
    }
    let private = env.rr(&["-m", "--", "cat", "/proc/self/mountinfo"]);
    assert!(
        root_propagation(private.ok()).is_empty(),
        "default is private"
    );
}
