//! Command line of `rootless-run`: util-linux unshare's option names and meanings (2.38, plus
//! newer forms where cheap), parsed with clap derive and validated into `config::Mode`.
//! Called by `main` only. No clap type leaves this file; no I/O except name lookups
//! (`--map-user=NAME`), the caller's ids and /etc/subuid for `auto` ranges.

use std::cell::OnceCell;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser, ValueEnum};
use nix::sys::signal::Signal;

use crate::config::{ExtraNs, Join, JoinNsType, Mode, NsFile, Propagation, RunConfig};
use crate::idmap::{self, IdMapPlan, RangeSpec, Setgroups};

/// `--busy-poll` default, in microseconds.
const DEFAULT_BUSY_POLL_US: u64 = netstack::config::DEFAULT_BUSY_POLL.as_micros() as u64;
/// Largest `--busy-poll`: a spin longer than this is a CPU burner, not a latency trade.
const MAX_BUSY_POLL_US: u64 = 10_000;

/// Run a program in new user and network namespaces with a working userspace network
/// (10.0.2.100/24 via 10.0.2.2, as slirp4netns), like `unshare -Urn` but online.
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
    /// New PID namespace; our small init is pid 1 and the program its child
    #[arg(short = 'p', long = "pid", value_name = "FILE", num_args = 0..=1, require_equals = true, overrides_with = "pid")]
    pid: Option<Option<PathBuf>>,
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
    /// Map the caller to root in the user namespace (the default)
    #[arg(short = 'r', long, conflicts_with_all = ["map_current_user", "map_user"])]
    map_root_user: bool,
    /// Map the caller to its own uid and gid in the user namespace
    #[arg(short = 'c', long, conflicts_with_all = ["map_user", "map_group"])]
    map_current_user: bool,
    /// Map the caller to UID (number or name) in the user namespace [default: 0]
    #[arg(long, value_name = "UID|NAME")]
    map_user: Option<String>,
    /// Map the caller's group to GID (number or name) [default: 0]; implies --setgroups=deny
    #[arg(long, value_name = "GID|NAME")]
    map_group: Option<String>,
    /// Also map a uid range through newuidmap: INNER:OUTER:COUNT, OUTER,INNER,COUNT or auto
    #[arg(long, value_name = "RANGE")]
    map_users: Vec<String>,
    /// Also map a gid range through newgidmap: INNER:OUTER:COUNT, OUTER,INNER,COUNT or auto
    #[arg(long, value_name = "RANGE")]
    map_groups: Vec<String>,
    /// Same as --map-users=auto --map-groups=auto (first /etc/subuid and /etc/subgid block)
    #[arg(long)]
    map_auto: bool,
    /// Allow or deny setgroups(2) in the sandbox [default: deny; allow needs --map-groups]
    #[arg(long, value_enum, value_name = "allow|deny")]
    setgroups: Option<SetgroupsArg>,
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
    /// MTU of tap0 in the sandbox
    #[arg(long, default_value_t = netstack::config::DEFAULT_MTU, value_name = "BYTES")]
    mtu: u32,
    /// Do not configure IPv6 (fd00::100/64 via fd00::2) in the sandbox
    #[arg(long)]
    disable_ipv6: bool,
    /// Longest busy-poll of the network stack before it sleeps after a small exchange,
    /// in microseconds (0: never spin)
    #[arg(long, value_name = "USEC", default_value_t = DEFAULT_BUSY_POLL_US,
          value_parser = clap::value_parser!(u64).range(..=MAX_BUSY_POLL_US))]
    busy_poll: u64,
    /// Print shell completions for SHELL to stdout and exit
    #[arg(long, value_enum, value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,
    /// The program and its arguments; options after the program belong to it
    #[arg(value_name = "program", trailing_var_arg = true)]
    command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SetgroupsArg {
    Allow,
    Deny,
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

/// Facts about the caller that validation needs (injected so tests need no real user).
/// The names are looked up only when needed (/etc/subuid entries): NSS costs start-up time.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Effective uid outside.
    pub uid: u32,
    /// Effective gid outside.
    pub gid: u32,
    /// User name (for /etc/subuid).
    name: OnceCell<String>,
    /// Group name (for /etc/subgid).
    group: OnceCell<String>,
    /// $SHELL, if set.
    pub shell: Option<OsString>,
}

impl Caller {
    /// The running process's caller.
    pub fn current() -> Caller {
        Caller {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            name: OnceCell::new(),
            group: OnceCell::new(),
            shell: std::env::var_os("SHELL").filter(|s| !s.is_empty()),
        }
    }

    /// A caller with known names (tests).
    #[cfg(test)]
    pub fn fixed(uid: u32, gid: u32, name: &str, shell: Option<&str>) -> Caller {
        Caller {
            uid,
            gid,
            name: OnceCell::from(name.to_string()),
            group: OnceCell::from(name.to_string()),
            shell: shell.map(OsString::from),
        }
    }

    /// The user's name (its uid as text if it has none).
    pub fn name(&self) -> &str {
        self.name.get_or_init(|| {
            let uid = nix::unistd::Uid::from_raw(self.uid);
            nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map_or_else(|| uid.to_string(), |u| u.name)
        })
    }

    /// The group's name (its gid as text if it has none).
    pub fn group(&self) -> &str {
        self.group.get_or_init(|| {
            let gid = nix::unistd::Gid::from_raw(self.gid);
            nix::unistd::Group::from_gid(gid)
                .ok()
                .flatten()
                .map_or_else(|| gid.to_string(), |g| g.name)
        })
    }
}

/// Parses `argv` (including argv[0]); clap's own errors (unknown flag, --help, --version)
/// come back as `Err(clap::Error)` for the caller to print and exit with.
pub fn parse(argv: &[OsString]) -> Result<Args, clap::Error> {
    Args::try_parse_from(argv)
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
    if let Some(dir) = args.stop {
        return Ok(Mode::Stop(dir));
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
        pid: args.pid.is_some(),
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
    if !(68..=netstack::config::MAX_MTU).contains(&args.mtu) {
        return Err(usage(
            format!("--mtu={}", args.mtu),
            format!("must be between 68 and {}", netstack::config::MAX_MTU),
        ));
    }
    let ipv6 = !args.disable_ipv6 && args.mtu >= netstack::netconf::IPV6_MIN_MTU;

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

    let any_map_flag = args.map_root_user
        || args.map_current_user
        || args.map_user.is_some()
        || args.map_group.is_some()
        || !args.map_users.is_empty()
        || !args.map_groups.is_empty()
        || args.map_auto
        || args.setgroups.is_some();
    if join.is_some() {
        if any_map_flag {
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
    if args.persist.is_some() && (ns.pid || ns.time) {
        return Err(usage(
            "--persist",
            if ns.pid {
                "cannot keep a pid namespace (it dies with its init); drop --pid"
            } else {
                "cannot keep a time namespace entered only at exec; drop --time"
            },
        ));
    }

    let idmap = id_map_plan(&args, caller, subids)?;

    Ok(Mode::Run(Box::new(RunConfig {
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
        ns_files,
        persist: args.persist,
        detach: args.detach,
        mtu: args.mtu,
        ipv6,
        busy_poll: Duration::from_micros(args.busy_poll),
    })))
}

fn flag_name(kind: &str) -> &str {
    match kind {
        "mnt" => "mount",
        other => other,
    }
}

fn id_map_plan(
    args: &Args,
    caller: &Caller,
    subids: impl FnOnce() -> idmap::SubIds,
) -> Result<IdMapPlan, UsageError> {
    let own_uid_inner = if args.map_current_user {
        caller.uid
    } else if let Some(u) = &args.map_user {
        lookup_id(u, true).ok_or_else(|| usage(format!("--map-user={u}"), "no such user"))?
    } else {
        0
    };
    let own_gid_inner = if args.map_current_user {
        caller.gid
    } else if let Some(g) = &args.map_group {
        lookup_id(g, false).ok_or_else(|| usage(format!("--map-group={g}"), "no such group"))?
    } else {
        0
    };
    let ranges = |flag: &str, specs: &[String]| -> Result<Vec<RangeSpec>, UsageError> {
        let mut v = specs
            .iter()
            .map(|s| {
                idmap::parse_range(s).map_err(|e| usage(format!("--{flag}={s}"), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if args.map_auto && !v.contains(&RangeSpec::Auto) {
            v.push(RangeSpec::Auto);
        }
        Ok(v)
    };
    let uid_ranges = ranges("map-users", &args.map_users)?;
    let gid_ranges = ranges("map-groups", &args.map_groups)?;
    let setgroups = args.setgroups.map(|s| match s {
        SetgroupsArg::Allow => Setgroups::Allow,
        SetgroupsArg::Deny => Setgroups::Deny,
    });
    if setgroups == Some(Setgroups::Allow) && gid_ranges.is_empty() {
        return Err(usage(
            "--setgroups=allow",
            "an unprivileged gid map needs setgroups denied; add --map-groups or --map-auto",
        ));
    }
    // Resolve now so a missing /etc/subuid entry is a usage error before anything starts.
    let plan = IdMapPlan {
        own_uid_inner,
        own_gid_inner,
        uid_ranges,
        gid_ranges,
        setgroups,
    };
    if plan.uid_ranges.contains(&RangeSpec::Auto) || plan.gid_ranges.contains(&RangeSpec::Auto) {
        let sub = subids();
        let flag = if args.map_auto {
            "--map-auto"
        } else {
            "--map-users/--map-groups=auto"
        };
        idmap::resolve(
            0,
            caller.uid,
            &plan.uid_ranges,
            sub.uid,
            caller.name(),
            idmap::SUBUID_PATH,
        )
        .map_err(|e| usage(flag, e.to_string()))?;
        idmap::resolve(
            0,
            caller.gid,
            &plan.gid_ranges,
            sub.gid,
            caller.name(),
            idmap::SUBGID_PATH,
        )
        .map_err(|e| usage(flag, e.to_string()))?;
    }
    Ok(plan)
}

fn lookup_id(s: &str, user: bool) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    if user {
        nix::unistd::User::from_name(s)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    } else {
        nix::unistd::Group::from_name(s)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
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
mod tests {
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

    fn run(s: &[&str]) -> Result<RunConfig, String> {
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
    fn map_options_resolve_to_a_plan() {
        let c = run(&["true"]).expect("valid");
        assert_eq!((c.idmap.own_uid_inner, c.idmap.own_gid_inner), (0, 0));
        let c = run(&["-c", "true"]).expect("valid");
        assert_eq!((c.idmap.own_uid_inner, c.idmap.own_gid_inner), (1000, 1000));
        let c = run(&["--map-user=5", "--map-group=6", "true"]).expect("valid");
        assert_eq!((c.idmap.own_uid_inner, c.idmap.own_gid_inner), (5, 6));
        assert_eq!(
            run(&["--map-users=1:100000:x", "true"]).expect_err("bad count"),
            "--map-users=1:100000:x: count is not a number"
        );
        assert!(run(&["-r", "-c", "true"]).is_err());
    }

    #[test]
    fn map_auto_without_subgid_entry_names_the_file() {
        assert_eq!(
            run(&["--map-auto", "true"]).expect_err("no subgid"),
            "--map-auto: alice has no range in /etc/subgid \
             (add one: usermod --add-subuids/--add-subgids)"
        );
        let c = run(&["--map-users=auto", "true"]).expect("subuid present");
        assert_eq!(c.idmap.uid_ranges, [RangeSpec::Auto]);
    }

    #[test]
    fn setgroups_allow_needs_a_helper_written_gid_map() {
        assert!(run(&["--setgroups=allow", "true"]).is_err());
        let c = run(&["--setgroups=allow", "--map-groups=1:200000:10", "true"]).expect("valid");
        assert_eq!(c.idmap.setgroups, Some(Setgroups::Allow));
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
    fn persist_refuses_pid_namespace() {
        assert!(run(&["--persist=/tmp/b", "-p", "true"])
            .expect_err("pid")
            .starts_with("--persist: cannot keep a pid namespace"));
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
    }
}
