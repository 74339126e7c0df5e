//! The validated launch request: what `cli` turns the command line into and everything else reads
//! (`RunConfig`, with the network's part in `NetConfig`).
//! Plain data with no I/O and no clap types; validation of combinations lives in `cli`.
//! Grows by one field per option.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use netstack::config::Addressing;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;

use crate::idmap::IdMapPlan;

/// What the invocation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Run a command in a sandbox (the normal case).
    Run(Box<RunConfig>),
    /// Stop a persisted sandbox (`--stop DIR`).
    Stop(PathBuf),
    /// Remove the nftables rules of kernel-mode runs that are gone (`--cleanup`).
    Cleanup,
    /// Print shell completions to stdout (`--completions SHELL`).
    Completions(clap_complete::Shell),
    /// Print the egress policy the options make and exit (`--print-policy`).
    PrintPolicy(Box<RunConfig>),
    /// Print the man page as roff to stdout (`--man-page`).
    ManPage,
}

/// Namespace types beyond the always-new user and network namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtraNs {
    /// `-m/--mount`
    pub mount: bool,
    /// `-u/--uts`
    pub uts: bool,
    /// `-i/--ipc`
    pub ipc: bool,
    /// `-p/--pid`
    pub pid: bool,
    /// `-C/--cgroup`
    pub cgroup: bool,
    /// `-T/--time`
    pub time: bool,
}

impl ExtraNs {
    /// The CLONE_NEW* flags for these namespaces.
    pub fn flags(&self) -> CloneFlags {
        let mut f = CloneFlags::empty();
        for (on, flag) in [
            (self.mount, CloneFlags::CLONE_NEWNS),
            (self.uts, CloneFlags::CLONE_NEWUTS),
            (self.ipc, CloneFlags::CLONE_NEWIPC),
            (self.pid, CloneFlags::CLONE_NEWPID),
            (self.cgroup, CloneFlags::CLONE_NEWCGROUP),
            (self.time, time_flag()),
        ] {
            if on {
                f |= flag;
            }
        }
        f
    }
}

/// CLONE_NEWTIME (not in nix's CloneFlags on every target).
pub fn time_flag() -> CloneFlags {
    CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)
}

/// Mount propagation applied to `/` in a new mount namespace (`--propagation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// MS_PRIVATE|MS_REC (the default).
    Private,
    /// MS_SHARED|MS_REC.
    Shared,
    /// MS_SLAVE|MS_REC.
    Slave,
    /// Leave propagation as inherited.
    Unchanged,
}

/// A namespace file to bind-mount for persistence (`--net=FILE` and friends; real root only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsFile {
    /// Name under /proc/PID/ns/ (`net`, `user`, `mnt`, ...).
    pub kind: &'static str,
    /// Where to bind-mount it.
    pub path: PathBuf,
}

/// How to enter an existing sandbox instead of creating user and network namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Join {
    /// Every namespace of this process that differs from ours (`--join PID`).
    Pid(i32),
    /// A persisted sandbox directory (`--join DIR`): its recorded holder pid.
    Dir(PathBuf),
    /// Explicit namespace files (`--join-ns TYPE=PATH`, repeatable).
    Files(Vec<(JoinNsType, PathBuf)>),
}

/// Namespace type named in `--join-ns TYPE=PATH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinNsType {
    /// user
    User,
    /// net
    Net,
    /// mnt
    Mount,
    /// uts
    Uts,
    /// ipc
    Ipc,
    /// pid
    Pid,
    /// cgroup
    Cgroup,
    /// time
    Time,
}

impl JoinNsType {
    /// All types, in the order they must be entered (user first, so the others are permitted).
    pub const ORDER: [JoinNsType; 8] = [
        JoinNsType::User,
        JoinNsType::Net,
        JoinNsType::Mount,
        JoinNsType::Uts,
        JoinNsType::Ipc,
        JoinNsType::Pid,
        JoinNsType::Cgroup,
        JoinNsType::Time,
    ];

    /// The name used in /proc/PID/ns/ and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            JoinNsType::User => "user",
            JoinNsType::Net => "net",
            JoinNsType::Mount => "mnt",
            JoinNsType::Uts => "uts",
            JoinNsType::Ipc => "ipc",
            JoinNsType::Pid => "pid",
            JoinNsType::Cgroup => "cgroup",
            JoinNsType::Time => "time",
        }
    }

    /// Parses a command-line or /proc name.
    pub fn parse(s: &str) -> Option<JoinNsType> {
        JoinNsType::ORDER
            .into_iter()
            .find(|t| t.name() == s || (s == "mount" && *t == JoinNsType::Mount))
    }

    /// The CLONE_NEW* flag for setns.
    pub fn flag(self) -> CloneFlags {
        match self {
            JoinNsType::User => CloneFlags::CLONE_NEWUSER,
            JoinNsType::Net => CloneFlags::CLONE_NEWNET,
            JoinNsType::Mount => CloneFlags::CLONE_NEWNS,
            JoinNsType::Uts => CloneFlags::CLONE_NEWUTS,
            JoinNsType::Ipc => CloneFlags::CLONE_NEWIPC,
            JoinNsType::Pid => CloneFlags::CLONE_NEWPID,
            JoinNsType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            JoinNsType::Time => time_flag(),
        }
    }
}

/// Everything a sandbox run needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// The program and its arguments (never empty: `cli` substitutes $SHELL).
    pub argv: Vec<OsString>,
    /// Extra namespaces to create.
    pub ns: ExtraNs,
    /// Enter an existing sandbox instead of creating user + network namespaces.
    pub join: Option<Join>,
    /// User and group id maps.
    pub idmap: IdMapPlan,
    /// Propagation of `/` in a new mount namespace.
    pub propagation: Propagation,
    /// Mount a fresh proc here before exec (`--mount-proc`).
    pub mount_proc: Option<PathBuf>,
    /// New root directory (`-R/--root`).
    pub root: Option<PathBuf>,
    /// Working directory for the command (`-w/--wd`).
    pub wd: Option<PathBuf>,
    /// Hostname in the new UTS namespace (`--hostname`).
    pub hostname: Option<String>,
    /// CLOCK_MONOTONIC offset in seconds (`--monotonic`).
    pub monotonic: Option<i64>,
    /// CLOCK_BOOTTIME offset in seconds (`--boottime`).
    pub boottime: Option<i64>,
    /// uid to switch to before exec (`-S/--setuid`).
    pub setuid: Option<u32>,
    /// gid to switch to before exec (`-G/--setgid`).
    pub setgid: Option<u32>,
    /// Keep capabilities across exec as ambient capabilities (`--keep-caps`).
    pub keep_caps: bool,
    /// Signal the command gets when the launcher dies (`--kill-child`, default SIGKILL).
    pub kill_child: Signal,
    /// With a new pid namespace, our init is its pid 1 and the program its child (`--init`);
    /// otherwise the program itself is pid 1, as under `unshare --pid --fork`.
    pub init: bool,
    /// Namespace files to bind-mount (real root only).
    pub ns_files: Vec<NsFile>,
    /// Keep the sandbox after the command exits, recorded in this directory (`--persist`).
    pub persist: Option<PathBuf>,
    /// Return once the sandbox is ready, leaving it running (`--detach`).
    pub detach: bool,
    /// The sandbox's network (unused with `--join`: the joined sandbox's network is not ours).
    pub net: NetConfig,
}

/// The sandbox's network: addressing, services, forwards. Read by `plan` (resolv.conf),
/// `child` (tap configuration) and `network` (the stack, forwards, API socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// MTU of tap0 (`--mtu`).
    pub mtu: u32,
    /// Configure and serve IPv6 (off: `--disable-ipv6`, or an MTU below 1280).
    pub ipv6: bool,
    /// Longest busy-poll of the network stack (`--busy-poll`).
    pub busy_poll: Duration,
    /// The virtual network's addresses (`--cidr`, `--cidr6`).
    pub addr: Addressing,
    /// The gateway reaches the host's loopback (off: `--disable-host-loopback`).
    pub host_loopback: bool,
    /// Serve DNS at the DNS address (off: `--disable-dns`).
    pub dns: bool,
    /// Resolvers the DNS forwarder relays to (`--dns-upstream`); `None`: every nameserver of
    /// the host's /etc/resolv.conf, read at start.
    pub dns_upstreams: Option<Vec<SocketAddr>>,
    /// Where outbound IPv4 sockets are bound (`--outbound-addr`).
    pub outbound_v4: Option<Outbound>,
    /// Where outbound IPv6 sockets are bound (`--outbound-addr6`).
    pub outbound_v6: Option<Outbound>,
    /// MAC address of tap0 (`--mac`); the kernel's random one if unset.
    pub mac: Option<[u8; 6]>,
    /// Forwards from the host into the sandbox, one entry per `--publish`, in order.
    pub publish: Vec<Publish>,
    /// Serve slirp4netns's JSON API on this UNIX socket (`--api-socket`).
    pub api_socket: Option<PathBuf>,
    /// What the sandbox's /etc/resolv.conf is.
    pub resolv_conf: ResolvConf,
    /// Kernel mode (`--net-mode`): a veth on a bridge and nftables instead of the stack.
    pub kernel: bool,
    /// Kernel mode's leased sandbox addresses (set by `launch` before the fork).
    pub leased: Option<netstack::netconf::SandboxAddrs>,
    /// The egress policy (`--allow`, `--deny`, `--egress`, `--policy`, presets, log); `None`:
    /// none asked for.
    pub policy: Option<PolicyConfig>,
}

/// The egress policy options, validated; presets are expanded by `network` at start (they
/// need the host's addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// `--allow`/`--deny` in order, then the `--policy` file's rules.
    pub rules: Vec<netstack::policy::Rule>,
    /// What matches no rule (`--egress`).
    pub default: netstack::policy::Action,
    /// `--no-lan`.
    pub no_lan: bool,
    /// `--no-host`.
    pub no_host: bool,
    /// `--egress-ttl-min`, `--egress-ttl-max`.
    pub ttl: netstack::policy::TtlBounds,
    /// `--log-egress FILE`.
    pub log: Option<PathBuf>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            mtu: netstack::config::DEFAULT_MTU,
            ipv6: true,
            busy_poll: netstack::config::DEFAULT_BUSY_POLL,
            addr: Addressing::default(),
            host_loopback: true,
            dns: true,
            dns_upstreams: None,
            outbound_v4: None,
            outbound_v6: None,
            mac: None,
            publish: Vec::new(),
            api_socket: None,
            resolv_conf: ResolvConf::Generated,
            kernel: false,
            leased: None,
            policy: None,
        }
    }
}

/// An `--outbound-addr`/`--outbound-addr6` value: an address, or an interface whose first
/// address of the family is looked up at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// This address.
    Addr(IpAddr),
    /// The first address of this interface (resolved by `network` before the fork).
    Interface(String),
}

/// One `--publish` value and the forwards it expands to (netstack's `forward::publish`).
pub use netstack::forward::publish::Publish;

/// The sandbox's /etc/resolv.conf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolvConf {
    /// A generated file naming the DNS forwarder, bind-mounted over it (the default).
    Generated,
    /// The host's file, untouched (`--keep-resolv-conf`, `--disable-dns`, `--join`).
    Host,
}
