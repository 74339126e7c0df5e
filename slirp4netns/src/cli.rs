//! slirp4netns's command line: `slirp4netns [OPTION]... PID|PATH|FD [TAPNAME]`, with every option
//! of slirp4netns 1.2/1.3, parsed by `getopt` in slirp4netns's order and checked as its
//! `parse_args` checks them (a failure here prints the usage and exits 1); the help and
//! version texts are `help`'s.
//! Called by `main` only; `config` turns the `Options` into what `run` needs. No I/O but
//! `access(2)`-style existence checks of paths, as slirp4netns makes them here.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use rr_getopt::{Getopt, HasArg, OptSpec};

/// slirp4netns's default MTU (its `DEFAULT_MTU`; rootlesskit and podman pass 65520).
pub const DEFAULT_MTU: u32 = 1500;
/// Largest MTU slirp4netns accepts (a tap device's maximum).
pub const MAX_MTU: u32 = 65521;
/// TAPNAME when none is given.
pub const DEFAULT_TAP: &str = "tap0";

/// The options, by what they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Configure,
    ExitFd,
    ReadyFd,
    Mtu,
    Cidr,
    DisableHostLoopback,
    NoHostLoopback,
    NetnsType,
    UsernsPath,
    ApiSocket,
    EnableIpv6,
    EnableSandbox,
    CreateSandbox,
    EnableSeccomp,
    Help,
    Version,
    OutboundAddr,
    OutboundAddr6,
    DisableDns,
    MacAddress,
    TargetType,
}

/// slirp4netns's `longopts` and short set `ce:r:m:a:6hv`, in its order (the order matters
/// only for the list in an "ambiguous" message).
const SPECS: &[OptSpec<Opt>] = &[
    OptSpec::long(Some('c'), "configure", HasArg::No, Opt::Configure),
    OptSpec::long(Some('e'), "exit-fd", HasArg::Required, Opt::ExitFd),
    OptSpec::long(Some('r'), "ready-fd", HasArg::Required, Opt::ReadyFd),
    OptSpec::long(Some('m'), "mtu", HasArg::Required, Opt::Mtu),
    OptSpec::long(None, "cidr", HasArg::Required, Opt::Cidr),
    OptSpec::long(
        None,
        "disable-host-loopback",
        HasArg::No,
        Opt::DisableHostLoopback,
    ),
    OptSpec::long(None, "no-host-loopback", HasArg::No, Opt::NoHostLoopback),
    OptSpec::long(None, "netns-type", HasArg::Required, Opt::NetnsType),
    OptSpec::long(None, "userns-path", HasArg::Required, Opt::UsernsPath),
    OptSpec::long(Some('a'), "api-socket", HasArg::Required, Opt::ApiSocket),
    OptSpec::long(Some('6'), "enable-ipv6", HasArg::No, Opt::EnableIpv6),
    OptSpec::long(None, "enable-sandbox", HasArg::No, Opt::EnableSandbox),
    OptSpec::long(None, "create-sandbox", HasArg::No, Opt::CreateSandbox),
    OptSpec::long(None, "enable-seccomp", HasArg::No, Opt::EnableSeccomp),
    OptSpec::long(Some('h'), "help", HasArg::No, Opt::Help),
    OptSpec::long(Some('v'), "version", HasArg::No, Opt::Version),
    OptSpec::long(None, "outbound-addr", HasArg::Required, Opt::OutboundAddr),
    OptSpec::long(None, "outbound-addr6", HasArg::Required, Opt::OutboundAddr6),
    OptSpec::long(None, "disable-dns", HasArg::No, Opt::DisableDns),
    OptSpec::long(None, "macaddress", HasArg::Required, Opt::MacAddress),
    OptSpec::long(None, "target-type", HasArg::Required, Opt::TargetType),
];

/// What the first operand names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A process whose network namespace to join (`--netns-type=pid`, the default).
    Pid(i32),
    /// A network namespace file (`--netns-type=path`).
    Path(PathBuf),
    /// An open tap fd we inherited (`--netns-type=tapfd`).
    TapFd(RawFd),
    /// A BESS socket path (`--target-type=bess`); `config` refuses it.
    Bess(PathBuf),
}

/// The command line, parsed and checked as slirp4netns's `parse_args` checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-c`: configure lo and the tap device in the child.
    pub configure: bool,
    /// `-e FD`.
    pub exit_fd: Option<RawFd>,
    /// `-r FD`.
    pub ready_fd: Option<RawFd>,
    /// `-m MTU`.
    pub mtu: u32,
    /// `-6`.
    pub enable_ipv6: bool,
    /// `-a PATH`.
    pub api_socket: Option<PathBuf>,
    /// `--cidr`, unparsed.
    pub cidr: Option<String>,
    /// `--disable-host-loopback` (or its deprecated alias).
    pub disable_host_loopback: bool,
    /// The first operand, read as `--netns-type`/`--target-type` say.
    pub target: Target,
    /// The second operand.
    pub tap_name: String,
    /// `--userns-path` (checked to exist).
    pub userns_path: Option<PathBuf>,
    /// `--enable-sandbox` (or its deprecated alias).
    pub enable_sandbox: bool,
    /// `--enable-seccomp`.
    pub enable_seccomp: bool,
    /// `--outbound-addr`, unparsed.
    pub outbound_addr: Option<String>,
    /// `--outbound-addr6`, unparsed.
    pub outbound_addr6: Option<String>,
    /// `--disable-dns`.
    pub disable_dns: bool,
    /// `--macaddress`, unparsed (only with `-c`).
    pub macaddress: Option<String>,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `-h`: print `usage`, exit 0.
    Help,
    /// `-v`: print `version`, exit 0.
    Version,
    /// Run with these options.
    Run(Box<Options>),
    /// A usage error: print the message (if any) on stderr as "PROG: MESSAGE", then `usage`
    /// on stdout, and exit 1.
    Usage(Option<String>),
}

/// The outcome of parsing, with the lines slirp4netns prints on stdout while it parses
/// (deprecation warnings), which come first whatever the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Lines for stdout, in order.
    pub notices: Vec<String>,
    /// What to do.
    pub action: Action,
}

/// Parses `args` (argv without the program name) as slirp4netns does. `posixly_correct`
/// (the POSIXLY_CORRECT environment variable is set) stops options at the first operand.
/// `exists` tells whether a path exists (slirp4netns checks `--userns-path` and a
/// `--netns-type=path` operand while parsing).
pub fn parse(args: &[String], posixly_correct: bool, exists: &dyn Fn(&Path) -> bool) -> Parsed {
    let mut notices = Vec::new();
    let action = parse_into(args, posixly_correct, exists, &mut notices);
    Parsed { notices, action }
}

fn usage_err(msg: impl Into<String>) -> Action {
    Action::Usage(Some(msg.into()))
}

/// strtol(3) in base 10 with slirp4netns's checks: optional leading whitespace and sign, then
/// digits to the end. `None` for anything else, or out of range.
fn strtol(s: &str) -> Option<i64> {
    let t = s.trim_start();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// A non-negative fd number, as `-e` and `-r` take it.
fn fd_number(s: &str) -> Option<RawFd> {
    strtol(s)
        .filter(|n| *n >= 0)
        .and_then(|n| RawFd::try_from(n).ok())
}

fn parse_into(
    args: &[String],
    posixly_correct: bool,
    exists: &dyn Fn(&Path) -> bool,
    notices: &mut Vec<String>,
) -> Action {
    let mut o = Options {
        configure: false,
        exit_fd: None,
        ready_fd: None,
        mtu: DEFAULT_MTU,
        enable_ipv6: false,
        api_socket: None,
        cidr: None,
        disable_host_loopback: false,
        target: Target::Pid(0),
        tap_name: DEFAULT_TAP.to_owned(),
        userns_path: None,
        enable_sandbox: false,
        enable_seccomp: false,
        outbound_addr: None,
        outbound_addr6: None,
        disable_dns: false,
        macaddress: None,
    };
    let mut netns_type: Option<&str> = None;
    let mut target_type: Option<&str> = None;
    let mut getopt = Getopt::new(SPECS, args, posixly_correct);
    for item in getopt.by_ref() {
        let (opt, value) = match item {
            Ok(item) => item,
            Err(e) => return usage_err(e.to_string()),
        };
        let v = value.unwrap_or_default();
        match opt {
            Opt::Configure => o.configure = true,
            Opt::ExitFd => match fd_number(v) {
                Some(fd) => o.exit_fd = Some(fd),
                None => return usage_err("exit-fd must be a non-negative integer"),
            },
            Opt::ReadyFd => match fd_number(v) {
                Some(fd) => o.ready_fd = Some(fd),
                None => return usage_err("ready-fd must be a non-negative integer"),
            },
            Opt::Mtu => match strtol(v).and_then(|n| u32::try_from(n).ok()) {
                Some(m) if (1..=MAX_MTU).contains(&m) => o.mtu = m,
                _ => {
                    return usage_err(format!(
                        "--mtu {v}: MTU must be a positive integer (< {})",
                        MAX_MTU + 1
                    ))
                }
            },
            Opt::Cidr => o.cidr = Some(v.to_owned()),
            Opt::NoHostLoopback => {
                notices.push(deprecated("--no-host-loopback", "--disable-host-loopback"));
                o.disable_host_loopback = true;
            }
            Opt::DisableHostLoopback => o.disable_host_loopback = true,
            Opt::CreateSandbox => {
                notices.push(deprecated("--create-sandbox", "--enable-sandbox"));
                o.enable_sandbox = true;
            }
            Opt::EnableSandbox => o.enable_sandbox = true,
            Opt::EnableSeccomp => o.enable_seccomp = true,
            Opt::NetnsType => netns_type = Some(v),
            Opt::UsernsPath => {
                if !exists(Path::new(v)) {
                    return usage_err(format!("userns path doesn't exist: {v}"));
                }
                o.userns_path = Some(PathBuf::from(v));
            }
            Opt::ApiSocket => o.api_socket = Some(PathBuf::from(v)),
            Opt::EnableIpv6 => o.enable_ipv6 = true,
            Opt::Help => return Action::Help,
            Opt::Version => return Action::Version,
            Opt::OutboundAddr => o.outbound_addr = Some(v.to_owned()),
            Opt::OutboundAddr6 => o.outbound_addr6 = Some(v.to_owned()),
            Opt::DisableDns => o.disable_dns = true,
            Opt::MacAddress => o.macaddress = Some(v.to_owned()),
            Opt::TargetType => target_type = Some(v),
        }
    }
    if o.macaddress.is_some() && !o.configure {
        return usage_err(
            "--macaddress cannot be specified when --configure or -c is not specified",
        );
    }
    let operands = getopt.operands();
    match target_type {
        None | Some("netns") => {}
        Some("bess") => {
            return match operands {
                [] => Action::Usage(None),
                [path] => {
                    o.target = Target::Bess(PathBuf::from(path));
                    Action::Run(Box::new(o))
                }
                _ => usage_err("too many arguments"),
            };
        }
        Some(_) => return usage_err("--target-type must be either \"netns\" or \"bess\""),
    }
    let Some(first) = operands.first() else {
        return Action::Usage(None);
    };
    o.target = match netns_type {
        None | Some("pid") => match strtol(first).and_then(|n| i32::try_from(n).ok()) {
            Some(pid) if pid > 0 => Target::Pid(pid),
            _ => return usage_err(format!("PID {first}: PID must be a positive integer")),
        },
        Some("path") => {
            if !exists(Path::new(first)) {
                return usage_err(format!(
                    "{first}: existing path expected when --netns-type=path"
                ));
            }
            Target::Path(PathBuf::from(first))
        }
        Some("tapfd") => match fd_number(first) {
            Some(fd) => Target::TapFd(fd),
            None => return usage_err(format!("TAPFD {first}: must be a file descriptor")),
        },
        Some(other) => {
            return usage_err(format!(
                "--netns-type={other}: TYPE must be \"pid\", \"path\" or \"tapfd\""
            ))
        }
    };
    if let Some(tap) = operands.get(1) {
        o.tap_name = (*tap).to_owned();
    }
    if operands.len() > 2 {
        // Not an error in slirp4netns either ("for preventing potential compatibility issue").
        notices.push("WARNING: too many arguments".to_owned());
    }
    Action::Run(Box::new(o))
}

fn deprecated(old: &str, new: &str) -> String {
    format!(
        "WARNING: {old} is deprecated and will be removed in future releases, please use {new} \
         instead."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    /// Parses with every path existing except those containing "missing".
    fn parse_str(s: &str) -> Parsed {
        parse(&words(s), false, &|p: &Path| {
            !p.to_string_lossy().contains("missing")
        })
    }

    fn run(s: &str) -> Options {
        match parse_str(s).action {
            Action::Run(o) => *o,
            other => panic!("{s}: expected Run, got {other:?}"),
        }
    }

    fn usage_msg(s: &str) -> Option<String> {
        match parse_str(s).action {
            Action::Usage(m) => m,
            other => panic!("{s}: expected Usage, got {other:?}"),
        }
    }

    #[test]
    fn rootlesskit_argv_parses() {
        let o = run(
            "--mtu 65520 -r 3 --disable-host-loopback --cidr 10.0.3.0/24 --api-socket /s/.s4nn.sock \
             --enable-ipv6 4242 tap0",
        );
        assert_eq!(o.mtu, 65520);
        assert_eq!(o.ready_fd, Some(3));
        assert_eq!(o.exit_fd, None);
        assert!(o.disable_host_loopback && o.enable_ipv6 && !o.configure);
        assert_eq!(o.cidr.as_deref(), Some("10.0.3.0/24"));
        assert_eq!(o.api_socket, Some(PathBuf::from("/s/.s4nn.sock")));
        assert_eq!(o.target, Target::Pid(4242));
        assert_eq!(o.tap_name, "tap0");
        // --detach-netns form.
        let o = run("--mtu 65520 -r 3 --userns-path=/proc/9/ns/user --netns-type=path /n/net tap0");
        assert_eq!(o.userns_path, Some(PathBuf::from("/proc/9/ns/user")));
        assert_eq!(o.target, Target::Path(PathBuf::from("/n/net")));
    }

    #[test]
    fn podman_argv_parses_with_either_fd_order() {
        let o = run(
            "--disable-host-loopback --mtu=65520 --enable-sandbox --enable-seccomp \
             --cidr=10.0.2.0/24 --enable-ipv6 --outbound-addr=eth0 --outbound-addr6=::1 -c -r 3 \
             -e 4 --api-socket /tmp/c.net --netns-type=path /run/user/1000/netns/cni-x tap0",
        );
        assert!(o.configure && o.enable_sandbox && o.enable_seccomp && o.disable_host_loopback);
        assert_eq!((o.ready_fd, o.exit_fd), (Some(3), Some(4)));
        assert_eq!(o.outbound_addr.as_deref(), Some("eth0"));
        assert_eq!(o.outbound_addr6.as_deref(), Some("::1"));
        let o = run("-c -e 3 -r 4 --netns-type=path /n tap0");
        assert_eq!((o.ready_fd, o.exit_fd), (Some(4), Some(3)));
    }

    #[test]
    fn every_spelling_of_mtu_and_clustered_flags() {
        for s in [
            "--mtu=9000 1",
            "--mtu 9000 1",
            "-m 9000 1",
            "-m9000 1",
            "-c6m9000 1",
        ] {
            assert_eq!(run(s).mtu, 9000, "{s}");
        }
        let o = run("-c6 1 tap1");
        assert!(o.configure && o.enable_ipv6);
        assert_eq!(o.tap_name, "tap1");
        assert_eq!(run("7").mtu, DEFAULT_MTU);
        assert_eq!(run("7").tap_name, DEFAULT_TAP);
        // The last of a repeated option wins, as with getopt.
        assert_eq!(run("-m 1 -m 2 7").mtu, 2);
    }

    #[test]
    fn mtu_range_is_slirp4netns_one_to_65521() {
        assert_eq!(run("-m 1 7").mtu, 1);
        assert_eq!(run("-m 65521 7").mtu, 65521);
        for bad in ["0", "65522", "-1", "x", "15x", ""] {
            let m = usage_msg(&format!("--mtu={bad} 7")).unwrap();
            assert!(
                m.contains("MTU must be a positive integer (< 65522)"),
                "{bad}: {m}"
            );
        }
    }

    #[test]
    fn fds_must_be_non_negative_integers() {
        assert_eq!(run("-r 0 -e 2147483647 7").ready_fd, Some(0));
        assert_eq!(
            usage_msg("-e -1 7").as_deref(),
            Some("exit-fd must be a non-negative integer")
        );
        assert_eq!(
            usage_msg("-r 3x 7").as_deref(),
            Some("ready-fd must be a non-negative integer")
        );
    }

    #[test]
    fn help_and_version_act_where_they_stand() {
        assert_eq!(parse_str("-h").action, Action::Help);
        assert_eq!(parse_str("--version").action, Action::Version);
        assert_eq!(parse_str("-c -v 7").action, Action::Version);
        // An error before --help wins; after it, help does.
        assert!(matches!(
            parse_str("--mtu=0 --help").action,
            Action::Usage(Some(_))
        ));
        assert_eq!(parse_str("--help --mtu=0").action, Action::Help);
    }

    #[test]
    fn deprecated_aliases_work_and_warn_in_order() {
        let p = parse_str("--no-host-loopback --create-sandbox 7");
        let Action::Run(o) = p.action else {
            panic!("{p:?}")
        };
        assert!(o.disable_host_loopback && o.enable_sandbox);
        assert_eq!(p.notices.len(), 2);
        assert!(p.notices[0].starts_with("WARNING: --no-host-loopback is deprecated"));
        assert!(p.notices[1].contains("please use --enable-sandbox instead."));
    }

    #[test]
    fn operands_are_read_as_the_netns_type_says() {
        assert_eq!(run("--netns-type=tapfd 5").target, Target::TapFd(5));
        assert_eq!(run("--netns-type pid 5").target, Target::Pid(5));
        assert_eq!(run("7 tap0 extra").tap_name, "tap0");
        assert_eq!(
            parse_str("7 tap0 extra").notices,
            ["WARNING: too many arguments"]
        );
        assert_eq!(usage_msg(""), None);
        assert_eq!(usage_msg("-c"), None);
        for bad in ["0", "-3", "abc", "99999999999"] {
            let m = usage_msg(&format!("-- {bad} tap0")).unwrap();
            assert!(m.contains("PID must be a positive integer"), "{bad}: {m}");
        }
        let m = usage_msg("--netns-type=path /missing tap0").unwrap();
        assert!(m.contains("existing path expected"), "{m}");
        let m = usage_msg("--netns-type=bogus 7").unwrap();
        assert!(m.contains("--netns-type=bogus"), "{m}");
        let m = usage_msg("--userns-path=/missing/u 7").unwrap();
        assert_eq!(m, "userns path doesn't exist: /missing/u");
    }

    #[test]
    fn macaddress_needs_configure() {
        let m = usage_msg("--macaddress=02:00:00:00:00:01 7").unwrap();
        assert!(m.contains("--configure or -c"), "{m}");
        assert_eq!(
            run("-c --macaddress 02:00:00:00:00:01 7")
                .macaddress
                .as_deref(),
            Some("02:00:00:00:00:01")
        );
    }

    #[test]
    fn target_type_bess_is_parsed_for_config_to_refuse() {
        assert_eq!(
            run("--target-type=bess /tmp/bess.sock").target,
            Target::Bess(PathBuf::from("/tmp/bess.sock"))
        );
        assert_eq!(run("--target-type=netns 7").target, Target::Pid(7));
        let m = usage_msg("--target-type=vde 7").unwrap();
        assert_eq!(m, "--target-type must be either \"netns\" or \"bess\"");
    }

    #[test]
    fn getopt_errors_become_usage_errors() {
        assert_eq!(
            usage_msg("--bogus 7").as_deref(),
            Some("unrecognized option '--bogus'")
        );
        let m = usage_msg("--enable 7").unwrap();
        assert!(
            m.starts_with("option '--enable' is ambiguous; possibilities:"),
            "{m}"
        );
        assert_eq!(
            usage_msg("-c -r").as_deref(),
            Some("option requires an argument -- 'r'")
        );
    }
}
