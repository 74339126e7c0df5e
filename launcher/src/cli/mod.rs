//! Command line of `rootless-run`: util-linux unshare's option names and meanings (2.38, plus
//! newer forms where cheap), parsed with clap derive and validated into `config::Mode`. The
//! namespace, id-map and filesystem options live here; the network options in `net` (the
//! `--publish` grammar is netstack's `forward::publish`), the egress policy options in `policy`.
//! Called by `main` only. No clap type leaves this module; no I/O except name lookups
//! (`--map-user=NAME`), the caller's ids and /etc/subuid for `auto` ranges.

mod ids;
mod net;
mod policy;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use nix::sys::signal::Signal;

use crate::config::{ExtraNs, Join, JoinNsType, Mode, NsFile, Propagation, ResolvConf, RunConfig};
use crate::idmap;

pub use ids::Caller;

/// Run a program in new user and network namespaces with a working userspace network
/// (10.0.2.100/24 via 10.0.2.2, DNS 10.0.2.3, as slirp4netns), like `unshare -Urn` but online.
/// User and network namespaces are always new (unless --join); the caller is mapped to root.
#[derive(Debug, Parser)]
#[command(
    name = "rootless-run",
    version,
    override_usage = "rootless-run [options] [--] [program [arguments...]]",
    after_help = "Without a program, runs ${SHELL} (default /bin/sh). Exit status: the program's; \
                  128+N if it died of signal N; 1 if setup failed; 2 on a usage error; \
                  126/127 if it could not be executed / found."
)]
pub struct Args {
    /// New mount namespace [bind-mounted at FILE, real root only]
    #[arg(short = 'm', long = "mount", value_name = "FILE", num_args = 0..=1, require_equals = true, overrides_with = "mount")]
    mount: Option<Option<PathBuf>>,
    /// New UTS namespace (hostname) [bind-mounted at FILE, real root only]
    #[arg(short = 'u', long = "uts", value_name = "FILE", num_args = 0..=1, require_equals = true, overrides_with = "uts")]
    uts: Option<Option<PathBuf>>,
    /// New IPC namespace [bind-mounted at FILE, real root only]
    #[arg(short = 'i', long = "ipc", value_name = "FILE", num_args = 0..=1, require_equals = true, overrides_with = "ipc")]
    ipc: Option<Option<PathBuf>>,
    /// New network namespace: always on; FILE bind-mounts it (real root only)
    #[arg(short = 'n', long = "net", value_name = "FILE", num_args = 0..=1, require_equals = true, overrides_with = "net")]
    net: Option<Option<PathBuf>>,
    /// New PID namespace; the program is its pid 1 (as unshare --pid --fork): it must reap
    /// orphans, and ignores the forwarded signals it has no handler for (SIGTERM, SIGINT);
    /// see --init
    #[arg(short = 'p', long = "pid", value_name = "FILE", num_args = 0..=1, require_equals = true, overrides_with = "pid")]
    pid: Option<Option<PathBuf>>,
    /// Put our small init in front of the program as pid 1 of the new PID namespace (the
    /// program is pid 2): it forwards signals, reaps orphans and exits with the program's
    /// status, as docker run --init; implies --pid
    #[arg(long)]
    init: bool,
    /// New user namespace: always on; FILE bind-mounts it (real root only)
    #[arg(short = 'U', long = "user", value_name = "FILE", num_args = 0..=1, require_equals = true, overrides_with = "user")]
    user: Option<Option<PathBuf>>,
    /// New cgroup namespace [bind-mounted at FILE, real root only]
    #[arg(short = 'C', long = "cgroup", value_name = "FILE", num_args = 0..=1, require_equals = true, overrides_with = "cgroup")]
    cgroup: Option<Option<PathBuf>>,
    /// New time namespace [bind-mounted at FILE, real root only]
    #[arg(short = 'T', long = "time", value_name = "FILE", num_args = 0..=1, require_equals = true, overrides_with = "time")]
    time: Option<Option<PathBuf>>,
    /// Fork before running the program: always on (the launcher stays as the network stack)
    #[arg(short = 'f', long, overrides_with = "fork")]
    fork: bool,
    /// Forward SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH: always on
    #[arg(long)]
    forward_signals: bool,
    /// Signal the program gets when the launcher dies [default: KILL]
    #[arg(long, value_name = "SIG", num_args = 0..=1, require_equals = true, default_missing_value = "KILL")]
    kill_child: Option<String>,
    /// Mount a fresh proc at DIR (and sysfs at /sys where permitted) before exec; implies --mount
    #[arg(long, value_name = "DIR", num_args = 0..=1, require_equals = true, default_missing_value = "/proc")]
    mount_proc: Option<PathBuf>,
    #[command(flatten)]
    ids: ids::IdArgs,
    /// Mount propagation of / in a new mount namespace
    #[arg(
        long,
        value_enum,
        default_value = "private",
        value_name = "slave|shared|private|unchanged"
    )]
    propagation: PropagationArg,
    /// Keep capabilities across exec (as ambient capabilities), also after --setuid
    #[arg(long)]
    keep_caps: bool,
    /// Switch to UID (inside the sandbox) before exec
    #[arg(short = 'S', long = "setuid", value_name = "UID")]
    setuid: Option<u32>,
    /// Switch to GID (inside the sandbox) before exec; drops supplementary groups where
    /// setgroups is allowed
    #[arg(short = 'G', long = "setgid", value_name = "GID")]
    setgid: Option<u32>,
    /// New root directory (pivot_root in a mount namespace, else chroot)
    #[arg(short = 'R', long = "root", value_name = "DIR")]
    root: Option<PathBuf>,
    /// Working directory of the program [default: unchanged, / with --root]
    #[arg(short = 'w', long = "wd", value_name = "DIR")]
    wd: Option<PathBuf>,
    /// CLOCK_MONOTONIC offset in seconds; needs --time
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    monotonic: Option<i64>,
    /// CLOCK_BOOTTIME offset in seconds; needs --time
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    boottime: Option<i64>,
    /// Set the hostname in the sandbox; implies --uts
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Enter the namespaces of process PID, or of the sandbox persisted in DIR, instead of
    /// creating user and network namespaces
    #[arg(long, value_name = "PID|DIR", conflicts_with = "join_ns")]
    join: Option<String>,
    /// Enter the namespace file PATH of TYPE (user, net, mnt, uts, ipc, pid, cgroup, time);
    /// repeatable
    #[arg(long, value_name = "TYPE=PATH")]
    join_ns: Vec<String>,
    /// Keep the sandbox (namespaces and network) after the program exits, recorded in DIR,
    /// until `rootless-run --stop DIR`
    #[arg(long, value_name = "DIR")]
    persist: Option<PathBuf>,
    /// Return once the sandbox is ready and leave it running in the background
    #[arg(long)]
    detach: bool,
    /// Stop the sandbox persisted in DIR and exit
    #[arg(long, value_name = "DIR", exclusive = true)]
    stop: Option<PathBuf>,
    #[command(flatten)]
    network: net::NetArgs,
    #[command(flatten)]
    egress: policy::PolicyArgs,
    /// Remove the nftables rules that kernel-mode runs left behind when killed (real root), and
    /// exit
    #[arg(long, exclusive = true)]
    cleanup: bool,
    /// Print shell completions for SHELL to stdout and exit
    #[arg(long, value_enum, value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,
    /// Print the man page (roff; e.g. `rootless-run --man-page | man -l -`) and exit
    #[arg(long, exclusive = true)]
    man_page: bool,
    /// The program and its arguments; options after the program belong to it
    #[arg(value_name = "program", trailing_var_arg = true)]
    command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PropagationArg {
    Slave,
    Shared,
    Private,
    Unchanged,
}

/// A usage error in terms of the user's flags: printed as `rootless-run: FLAG: REASON`, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {reason}")]
pub struct UsageError {
    /// The flag (and value) at fault.
    pub flag: String,
    /// Why.
    pub reason: String,
}

fn usage(flag: impl Into<String>, reason: impl Into<String>) -> UsageError {
    UsageError {
        flag: flag.into(),
        reason: reason.into(),
    }
}

/// Parses `argv` (including argv[0]); clap's own errors (unknown flag, --help, --version)
/// come back as `Err(clap::Error)` for the caller to print and exit with.
pub fn parse(argv: &[OsString]) -> Result<Args, clap::Error> {
    let matches = Args::command().try_get_matches_from(argv)?;
    let mut args = Args::from_arg_matches(&matches)?;
    args.network.note_given(&matches);
    args.egress.note_order(&matches);
    Ok(args)
}

/// True when `argv` is `rootless-run [options] --` with nothing after the `--`.
fn dangling_double_dash(argv: &[OsString], args: &Args) -> bool {
    args.command.is_empty() && argv.iter().skip(1).any(|a| a == "--")
}

/// The clap command, for completions and the man page.
pub fn command() -> clap::Command {
    Args::command()
}

/// Turns parsed flags into a `Mode`, checking every combination.
pub fn validate(
    argv: &[OsString],
    args: Args,
    caller: &Caller,
    subids: impl FnOnce() -> idmap::SubIds,
) -> Result<Mode, UsageError> {
    if let Some(shell) = args.completions {
        return Ok(Mode::Completions(shell));
    }
    if args.man_page {
        return Ok(Mode::ManPage);
    }
    if let Some(dir) = args.stop {
        return Ok(Mode::Stop(dir));
    }
    if args.cleanup {
        if caller.uid != 0 {
            return Err(usage(
                "--cleanup",
                "needs real root (kernel mode's rules are root's)",
            ));
        }
        return Ok(Mode::Cleanup);
    }
    if dangling_double_dash(argv, &args) {
        return Err(UsageError {
            flag: "missing command after '--'".into(),
            reason: "give a program to run, or drop the '--' to run $SHELL".into(),
        });
    }
    let argv_cmd = if args.command.is_empty() {
        vec![caller
            .shell
            .clone()
            .unwrap_or_else(|| OsString::from("/bin/sh"))]
    } else {
        args.command.clone()
    };

    let mut ns = ExtraNs {
        mount: args.mount.is_some() || args.mount_proc.is_some(),
        uts: args.uts.is_some() || args.hostname.is_some(),
        ipc: args.ipc.is_some(),
        pid: args.pid.is_some() || args.init,
        cgroup: args.cgroup.is_some(),
        time: args.time.is_some(),
    };
    if (args.monotonic.is_some() || args.boottime.is_some()) && !ns.time {
        let flag = if args.monotonic.is_some() {
            "--monotonic"
        } else {
            "--boottime"
        };
        return Err(usage(flag, "needs a new time namespace (--time)"));
    }
    let mut ns_files = Vec::new();
    for (kind, opt) in [
        ("mnt", &args.mount),
        ("uts", &args.uts),
        ("ipc", &args.ipc),
        ("net", &args.net),
        ("pid", &args.pid),
        ("user", &args.user),
        ("cgroup", &args.cgroup),
        ("time", &args.time),
    ] {
        if let Some(Some(path)) = opt {
            if caller.uid != 0 {
                return Err(usage(
                    format!("--{}={}", flag_name(kind), path.display()),
                    "bind-mounting a namespace file needs real root; use --persist DIR",
                ));
            }
            ns_files.push(NsFile {
                kind,
                path: path.clone(),
            });
        }
    }
    if ns_files.iter().any(|f| f.kind == "pid") {
        return Err(usage(
            "--pid=FILE",
            "a persisted pid namespace dies with its init; not supported",
        ));
    }

    let kill_child = match &args.kill_child {
        None => Signal::SIGKILL,
        Some(s) => parse_signal(s).ok_or_else(|| {
            usage(
                format!("--kill-child={s}"),
                "unknown signal (use a name like TERM or a number)",
            )
        })?,
    };
    if let Some(h) = &args.hostname {
        if h.is_empty() || h.len() > 64 {
            return Err(usage(
                format!("--hostname={h}"),
                "must be 1 to 64 bytes (HOST_NAME_MAX)",
            ));
        }
    }
    if let Some(root) = &args.root {
        if !root.is_dir() {
            return Err(usage(
                format!("--root={}", root.display()),
                "not an existing directory",
            ));
        }
    }
    let join = if let Some(j) = &args.join {
        Some(match j.parse::<i32>() {
            Ok(pid) if pid > 0 => Join::Pid(pid),
            Ok(_) => return Err(usage(format!("--join={j}"), "not a valid pid")),
            Err(_) => Join::Dir(PathBuf::from(j)),
        })
    } else if !args.join_ns.is_empty() {
        let mut files = Vec::new();
        for spec in &args.join_ns {
            let (t, p) = spec
                .split_once('=')
                .ok_or_else(|| usage(format!("--join-ns={spec}"), "expected TYPE=PATH"))?;
            let t = JoinNsType::parse(t).ok_or_else(|| {
                usage(
                    format!("--join-ns={spec}"),
                    "TYPE must be one of user, net, mnt, uts, ipc, pid, cgroup, time",
                )
            })?;
            files.push((t, PathBuf::from(p)));
        }
        Some(Join::Files(files))
    } else {
        None
    };
    if join.is_some() {
        if let Some(flag) = args.network.first_given().or(args.egress.first_given()) {
            let with = if args.join.is_some() {
                "--join"
            } else {
                "--join-ns"
            };
            let why = format!(
                "cannot be combined with {with} (the joined sandbox's network is not ours to \
                 change)"
            );
            return Err(usage(flag, why));
        }
    }

    if join.is_some() {
        if args.ids.any_given() {
            return Err(usage(
                "--join",
                "cannot be combined with id-map options (the joined sandbox's maps apply)",
            ));
        }
        if !ns_files.is_empty() || args.persist.is_some() {
            return Err(usage(
                "--join",
                "cannot be combined with --persist or namespace files",
            ));
        }
        if let (Some(Join::Files(files)), Some(_), false) =
            (&join, &args.mount_proc, args.mount.is_some())
        {
            if !files.iter().any(|(t, _)| *t == JoinNsType::Mount) {
                return Err(usage(
                    "--mount-proc",
                    "the joined namespaces have no mount namespace; add --mount",
                ));
            }
        }
        // --mount-proc implies a new mount namespace only when not joining one.
        if args.mount.is_none() && args.mount_proc.is_some() {
            ns.mount = !matches!(&join, Some(Join::Files(f)) if f.iter().any(|(t, _)| *t == JoinNsType::Mount));
        }
    }

    let idmap = ids::id_map_plan(&args.ids, caller, subids)?;
    // Kernel mode's rules belong to the launcher's run: a sandbox that outlives it cannot keep
    // them, and a joined sandbox's network is not ours.
    let other_unsupported = if let Some(flag) = args.egress.first_given() {
        Some(flag)
    } else if args.persist.is_some() {
        Some("--persist")
    } else if !ns_files.is_empty() {
        Some("--net=FILE (namespace files)")
    } else if join.is_some() {
        Some("--join")
    } else {
        None
    };
    let mut net = net::validate(args.network, caller.uid == 0, other_unsupported)?;
    if join.is_some() {
        net.resolv_conf = ResolvConf::Host;
    }
    net.policy = policy::validate(&args.egress)?;
    if net.policy.as_ref().is_some_and(|p| p.no_host) {
        net.host_loopback = false;
    }
    let wrap = match args.egress.print() {
        true => Mode::PrintPolicy,
        false => Mode::Run,
    };

    Ok(wrap(Box::new(RunConfig {
        argv: argv_cmd,
        ns,
        join,
        idmap,
        propagation: match args.propagation {
            PropagationArg::Private => Propagation::Private,
            PropagationArg::Shared => Propagation::Shared,
            PropagationArg::Slave => Propagation::Slave,
            PropagationArg::Unchanged => Propagation::Unchanged,
        },
        mount_proc: args.mount_proc,
        root: args.root,
        wd: args.wd,
        hostname: args.hostname,
        monotonic: args.monotonic,
        boottime: args.boottime,
        setuid: args.setuid,
        setgid: args.setgid,
        keep_caps: args.keep_caps,
        kill_child,
        init: args.init,
        ns_files,
        persist: args.persist,
        detach: args.detach,
        net,
    })))
}

fn flag_name(kind: &str) -> &str {
    match kind {
        "mnt" => "mount",
        other => other,
    }
}

/// Parses `KILL`, `SIGKILL`, `kill` or `9`.
pub fn parse_signal(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse().ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller::fixed(1000, 1000, "alice", Some("/bin/bash"))
    }

    fn argv(s: &[&str]) -> Vec<OsString> {
        std::iter::once("rootless-run")
            .chain(s.iter().copied())
            .map(OsString::from)
            .collect()
    }

    /// Parses and validates `s` (after argv[0]) for alice (uid 1000) with a subuid range.
    pub(crate) fn run(s: &[&str]) -> Result<RunConfig, String> {
        let a = argv(s);
        let args = parse(&a).map_err(|e| e.kind().to_string())?;
        match validate(&a, args, &caller(), || idmap::SubIds {
            uid: Some((100000, 65536)),
            gid: None,
        }) {
            Ok(Mode::Run(c)) => Ok(*c),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn program_may_follow_options_directly_and_keeps_its_own_flags() {
        let c = run(&["-p", "ls", "-l", "--pid"]).expect("valid");
        assert_eq!(c.argv, ["ls", "-l", "--pid"]);
        assert!(c.ns.pid);
        let c = run(&["--", "ls", "-p"]).expect("valid");
        assert_eq!(c.argv, ["ls", "-p"]);
        assert!(!c.ns.pid);
    }

    #[test]
    fn no_program_runs_shell_but_dangling_double_dash_is_an_error() {
        assert_eq!(run(&[]).expect("valid").argv, ["/bin/bash"]);
        assert_eq!(
            run(&["--"]).expect_err("dangling --"),
            "missing command after '--': give a program to run, or drop the '--' to run $SHELL"
        );
        assert_eq!(run(&["echo", "--"]).expect("valid").argv, ["echo", "--"]);
    }

    #[test]
    fn unknown_flag_is_a_clap_usage_error() {
        let a = argv(&["--bogus", "true"]);
        let e = parse(&a).expect_err("unknown flag");
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn clustered_short_flags_like_unshare() {
        let c = run(&["-muipf", "--mount-proc", "--", "ps"]).expect("valid");
        assert!(c.ns.mount && c.ns.uts && c.ns.ipc && c.ns.pid);
        assert_eq!(c.mount_proc, Some(PathBuf::from("/proc")));
    }

    #[test]
    fn implications_mount_proc_hostname() {
        let c = run(&["--mount-proc=/mnt/p", "--hostname", "box", "true"]).expect("valid");
        assert!(c.ns.mount && c.ns.uts);
        assert_eq!(c.mount_proc, Some(PathBuf::from("/mnt/p")));
        assert_eq!(c.hostname.as_deref(), Some("box"));
    }

    #[test]
    fn kill_child_defaults_to_sigkill_and_parses_names() {
        assert_eq!(run(&["true"]).expect("valid").kill_child, Signal::SIGKILL);
        assert_eq!(
            run(&["--kill-child", "true"]).expect("valid").kill_child,
            Signal::SIGKILL
        );
        assert_eq!(
            run(&["--kill-child=term", "true"])
                .expect("valid")
                .kill_child,
            Signal::SIGTERM
        );
        assert_eq!(
            run(&["--kill-child=15", "true"]).expect("valid").kill_child,
            Signal::SIGTERM
        );
        assert_eq!(
            run(&["--kill-child=NOPE", "true"]).expect_err("bad signal"),
            "--kill-child=NOPE: unknown signal (use a name like TERM or a number)"
        );
    }

    #[test]
    fn time_offsets_need_time_namespace() {
        assert_eq!(
            run(&["--monotonic=5", "true"]).expect_err("no -T"),
            "--monotonic: needs a new time namespace (--time)"
        );
        let c = run(&["-T", "--monotonic", "-5", "true"]).expect("valid");
        assert_eq!(c.monotonic, Some(-5));
    }

    #[test]
    fn namespace_files_need_root() {
        assert_eq!(
            run(&["--net=/tmp/x", "true"]).expect_err("not root"),
            "--net=/tmp/x: bind-mounting a namespace file needs real root; use --persist DIR"
        );
    }

    #[test]
    fn join_refuses_maps_and_persist() {
        assert_eq!(
            run(&["--join=123", "-r", "true"]).expect_err("maps with join"),
            "--join: cannot be combined with id-map options (the joined sandbox's maps apply)"
        );
        let c = run(&["--join=123", "true"]).expect("valid");
        assert_eq!(c.join, Some(Join::Pid(123)));
        let c = run(&["--join", "/tmp/box", "true"]).expect("valid");
        assert_eq!(c.join, Some(Join::Dir("/tmp/box".into())));
        let c = run(&["--join-ns", "net=/proc/1/ns/net", "true"]).expect("valid");
        assert_eq!(
            c.join,
            Some(Join::Files(vec![(
                JoinNsType::Net,
                "/proc/1/ns/net".into()
            )]))
        );
        assert!(run(&["--join-ns", "bogus=/x", "true"]).is_err());
        assert_eq!(
            run(&["--join-ns", "net=/x", "--mount-proc", "true"]).expect_err("no mnt"),
            "--mount-proc: the joined namespaces have no mount namespace; add --mount"
        );
    }

    #[test]
    fn init_implies_a_pid_namespace_and_pid_alone_leaves_the_program_pid_1() {
        let c = run(&["--init", "true"]).expect("valid");
        assert!(c.ns.pid && c.init);
        let c = run(&["--pid", "true"]).expect("valid");
        assert!(c.ns.pid && !c.init);
        assert!(!run(&["true"]).expect("valid").ns.pid);
    }

    #[test]
    fn persist_takes_pid_and_time_namespaces() {
        let c = run(&["--persist=/tmp/b", "-p", "-T", "true"]).expect("valid");
        assert!(c.ns.pid && c.ns.time);
        let c = run(&["--persist=/tmp/b", "--detach", "sleep", "1"]).expect("valid");
        assert!(c.detach);
        assert_eq!(c.persist, Some(PathBuf::from("/tmp/b")));
    }

    #[test]
    fn root_must_exist() {
        assert_eq!(
            run(&["--root=/nonexistent/dir", "true"]).expect_err("missing"),
            "--root=/nonexistent/dir: not an existing directory"
        );
    }

    #[test]
    fn stop_and_completions_are_modes() {
        let a = argv(&["--stop", "/tmp/b"]);
        let m = validate(&a, parse(&a).expect("parses"), &caller(), Default::default);
        assert_eq!(m.expect("valid"), Mode::Stop("/tmp/b".into()));
        let a = argv(&["--completions", "bash"]);
        let m = validate(&a, parse(&a).expect("parses"), &caller(), Default::default);
        assert_eq!(
            m.expect("valid"),
            Mode::Completions(clap_complete::Shell::Bash)
        );
        let a = argv(&["--man-page"]);
        let m = validate(&a, parse(&a).expect("parses"), &caller(), Default::default);
        assert_eq!(m.expect("valid"), Mode::ManPage);
    }
}
