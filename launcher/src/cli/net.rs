//! The network options of `rootless-run` (slirp4netns's names where it has one): their clap
//! definitions (`NetArgs`, flattened into `cli::Args`) and their validation into
//! `config::NetConfig`. `--publish`'s grammar is netstack's `forward::publish`.
//! Called by `cli::validate` only. No I/O: interface names (`--outbound-addr eth0`) are kept
//! as names and resolved by `network` at start.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::ArgMatches;

use super::{usage, UsageError};
use crate::config::{NetConfig, Outbound, ResolvConf};
use netstack::config::Addressing;
use netstack::forward::publish;

/// `--busy-poll` default, in microseconds.
const DEFAULT_BUSY_POLL_US: u64 = netstack::config::DEFAULT_BUSY_POLL.as_micros() as u64;
/// Largest `--busy-poll`: a spin longer than this is a CPU burner, not a latency trade.
const MAX_BUSY_POLL_US: u64 = 10_000;
/// Smallest MTU IPv4 allows (RFC 791).
const MIN_MTU: u32 = 68;
/// Bytes in `sockaddr_un.sun_path`, the terminating NUL included (unix(7)).
const SUN_PATH_LEN: usize = 108;
/// Longest interface name: IFNAMSIZ (16) less the terminating NUL (netdevice(7)).
const MAX_IFNAME_LEN: usize = 15;
/// Default DNS port (RFC 1035).
const DNS_PORT: u16 = 53;

/// The network options.
#[derive(Debug, clap::Args)]
pub struct NetArgs {
    /// MTU of tap0 in the sandbox
    #[arg(long, default_value_t = netstack::config::DEFAULT_MTU, value_name = "BYTES")]
    mtu: u32,
    /// Do not configure IPv6 in the sandbox (nor forward IPv6 ports)
    #[arg(long)]
    disable_ipv6: bool,
    /// Longest busy-poll of the network stack before it sleeps after a small exchange,
    /// in microseconds (0: never spin)
    #[arg(long, value_name = "USEC", default_value_t = DEFAULT_BUSY_POLL_US,
          value_parser = clap::value_parser!(u64).range(..=MAX_BUSY_POLL_US))]
    busy_poll: u64,
    /// IPv4 network of the sandbox: the gateway (the host) is .2, DNS .3, the sandbox .100
    #[arg(long, value_name = "A.B.C.D/N", default_value = "10.0.2.0/24")]
    cidr: String,
    /// IPv6 network of the sandbox (a /64): gateway ::2, DNS ::3, the sandbox ::100
    #[arg(long, value_name = "PREFIX/64", default_value = "fd00::/64")]
    cidr6: String,
    /// Refuse connections to the gateway (10.0.2.2, fd00::2) instead of passing them to the
    /// host's loopback
    #[arg(long)]
    disable_host_loopback: bool,
    /// Bind outbound IPv4 sockets to ADDR, or to the first IPv4 address of interface IFNAME
    /// [default: the kernel's choice]
    #[arg(long, value_name = "ADDR|IFNAME")]
    outbound_addr: Option<String>,
    /// Bind outbound IPv6 sockets to ADDR, or to the first global IPv6 address of IFNAME
    /// [default: the kernel's choice]
    #[arg(long, value_name = "ADDR|IFNAME")]
    outbound_addr6: Option<String>,
    /// MAC address of tap0 (unicast) [default: random, chosen by the kernel]
    #[arg(long, visible_alias = "macaddress", value_name = "XX:XX:XX:XX:XX:XX")]
    mac: Option<String>,
    /// Forward host port(s) to the sandbox: [HOSTIP:]HOSTPORT[-END]:SANDBOXPORT[-END][/tcp|/udp];
    /// without HOSTIP on every host address (0.0.0.0 and [::]), as docker and podman do;
    /// IPv6 HOSTIP in brackets; repeatable [default protocol: tcp]
    #[arg(long, value_name = "SPEC")]
    publish: Vec<String>,
    /// Turn off the DNS forwarder (its address is then refused); the sandbox keeps the
    /// host's /etc/resolv.conf
    #[arg(long)]
    disable_dns: bool,
    /// Resolver the DNS forwarder relays to, ADDR[:PORT] (IPv6 as [::1]:53); repeatable
    /// [default: every nameserver of the host's /etc/resolv.conf]
    #[arg(long, value_name = "ADDR[:PORT]")]
    dns_upstream: Vec<String>,
    /// Keep the host's /etc/resolv.conf in the sandbox [default: a file naming the DNS
    /// forwarder, bind-mounted in the sandbox's mount namespace, created if none is asked for]
    #[arg(long)]
    keep_resolv_conf: bool,
    /// Serve slirp4netns's JSON API (add_hostfwd, list_hostfwd, remove_hostfwd) on the UNIX
    /// socket PATH, removed on exit [default: none]
    #[arg(long, value_name = "PATH")]
    api_socket: Option<PathBuf>,
    /// How the sandbox's packets reach the host: userspace (the network stack), kernel (a veth
    /// on the bridge rrbr0, routed and NATed by the kernel with nftables; real root only), or
    /// auto (kernel when run by real root without a flag kernel mode lacks, else userspace)
    #[arg(long, value_enum, value_name = "MODE", default_value = "auto")]
    net_mode: NetMode,
    /// The flags above that the command line gave (defaults excluded), as `--name`.
    #[arg(skip)]
    given: Vec<String>,
}

impl NetArgs {
    /// Records which network flags the command line gave, from clap's matches (clap's derive
    /// cannot tell a default from an explicit value).
    pub fn note_given(&mut self, matches: &ArgMatches) {
        self.given = given::<Self>(matches);
    }

    /// The first network flag the command line gave, if any.
    pub fn first_given(&self) -> Option<&str> {
        self.given.first().map(String::as_str)
    }
}

/// The long options of the flattened group `A` that the command line gave (defaults
/// excluded), as `--name`, in definition order.
pub(super) fn given<A: clap::Args>(matches: &ArgMatches) -> Vec<String> {
    let ours = A::augment_args(clap::Command::new("group"));
    ours.get_arguments()
        .filter(|a| matches.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine))
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect()
}

/// `--net-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetMode {
    /// Kernel when real root, else userspace.
    Auto,
    /// The userspace network stack.
    Userspace,
    /// veth, bridge and nftables (real root only).
    Kernel,
}

/// Picks the network mode: `root` is whether we run as real root; `unsupported` names the
/// first given flag kernel mode does not implement.
fn net_mode(mode: NetMode, root: bool, unsupported: Option<&str>) -> Result<bool, UsageError> {
    match (mode, unsupported) {
        (NetMode::Userspace, _) => Ok(false),
        (NetMode::Auto, _) if !root => Ok(false),
        (NetMode::Auto, Some(flag)) => {
            tracing::info!(
                flag,
                "--net-mode=auto: userspace, since kernel mode lacks this flag"
            );
            Ok(false)
        }
        (NetMode::Auto, None) => Ok(true),
        (NetMode::Kernel, _) if !root => Err(usage(
            "--net-mode=kernel",
            "needs real root (it creates a bridge, a veth pair and nftables rules on the host); \
             use --net-mode=userspace",
        )),
        (NetMode::Kernel, Some(flag)) => Err(usage(
            flag,
            format!(
                "not with --net-mode=kernel: {}; use --net-mode=userspace",
                refusal(flag)
            ),
        )),
        (NetMode::Kernel, None) => Ok(true),
    }
}

/// The flags kernel mode refuses (network ones and, named by `cli`, others), with why; `auto`
/// picks userspace when one is given. Kept in step with docs/rootless-run.1.md.
const KERNEL_REFUSED: [(&str, &str); 5] = [
    (
        "--api-socket",
        "the slirp4netns API drives the userspace stack's forwards, and kernel mode has none",
    ),
    (
        "--busy-poll",
        "tunes the userspace stack's event loop, and in kernel mode the kernel routes",
    ),
    (
        "--persist",
        "the sandbox's bound namespace files could outlive the run's rules and address lease",
    ),
    (
        "--net=FILE (namespace files)",
        "the bound network namespace could outlive the run's rules and address lease",
    ),
    (
        "--join",
        "it enters an existing sandbox's network, so there is none for kernel mode to build",
    ),
];

/// Why kernel mode refuses `flag`: a network flag's own reason, else the one non-network
/// flags share (the egress policy's: `cli::policy` names them).
fn refusal(flag: &str) -> &'static str {
    KERNEL_REFUSED.iter().find(|(f, _)| *f == flag).map_or(
        "the egress policy is enforced by the userspace stack, which sees every flow and DNS \
         answer, and in kernel mode the kernel routes",
        |(_, why)| why,
    )
}

/// Checks the network options and turns them into a `NetConfig`. `root`: we run as real root;
/// `other_unsupported`: a non-network flag given that kernel mode cannot serve (`--persist`).
pub fn validate(
    a: NetArgs,
    root: bool,
    other_unsupported: Option<&str>,
) -> Result<NetConfig, UsageError> {
    let unsupported = a
        .given
        .iter()
        .map(String::as_str)
        .find(|g| KERNEL_REFUSED.iter().any(|(f, _)| f == g))
        .or(other_unsupported);
    let kernel = net_mode(a.net_mode, root, unsupported)?;
    let max = netstack::config::MAX_MTU;
    if !(MIN_MTU..=max).contains(&a.mtu) {
        return Err(usage(
            format!("--mtu={}", a.mtu),
            format!("must be between {MIN_MTU} and {max}"),
        ));
    }
    let ipv6 = !a.disable_ipv6 && a.mtu >= netstack::netconf::IPV6_MIN_MTU;
    let addr = Addressing::default()
        .with_cidr_v4(&a.cidr)
        .map_err(|e| usage(format!("--cidr {}", a.cidr), e.to_string()))?
        .with_cidr_v6(&a.cidr6)
        .map_err(|e| usage(format!("--cidr6 {}", a.cidr6), e.to_string()))?;
    let publish = publish::expand_all(&a.publish, &addr, ipv6)
        .map_err(|(value, e)| usage(format!("--publish {value}"), e.to_string()))?;
    let outbound_v4 = a
        .outbound_addr
        .as_deref()
        .map(|v| outbound("--outbound-addr", v, false))
        .transpose()?;
    let outbound_v6 = a
        .outbound_addr6
        .as_deref()
        .map(|v| outbound("--outbound-addr6", v, true))
        .transpose()?;
    let mac = a.mac.as_deref().map(mac).transpose()?;
    if a.disable_dns && !a.dns_upstream.is_empty() {
        return Err(usage(
            "--dns-upstream",
            "cannot be combined with --disable-dns (there is no forwarder to relay)",
        ));
    }
    let dns_upstreams = if a.dns_upstream.is_empty() {
        None
    } else {
        Some(
            a.dns_upstream
                .iter()
                .map(|v| dns_upstream(v))
                .collect::<Result<_, _>>()?,
        )
    };
    if let Some(path) = &a.api_socket {
        api_socket(path)?;
    }
    Ok(NetConfig {
        mtu: a.mtu,
        ipv6,
        busy_poll: Duration::from_micros(a.busy_poll),
        addr,
        host_loopback: !a.disable_host_loopback,
        dns: !a.disable_dns,
        dns_upstreams,
        outbound_v4,
        outbound_v6,
        mac,
        publish,
        api_socket: a.api_socket,
        resolv_conf: if a.disable_dns || a.keep_resolv_conf {
            ResolvConf::Host
        } else {
            ResolvConf::Generated
        },
        kernel,
        leased: None,
        policy: None,
    })
}

/// `--outbound-addr[6] ADDR|IFNAME`: an address of the flag's family, or an interface name.
fn outbound(flag: &str, value: &str, v6: bool) -> Result<Outbound, UsageError> {
    let fail = |why: &str| usage(format!("{flag} {value}"), why);
    let family = if v6 { "IPv6" } else { "IPv4" };
    if let Ok(ip) = value.parse::<IpAddr>() {
        if ip.is_ipv6() != v6 {
            let other = if v6 {
                "--outbound-addr"
            } else {
                "--outbound-addr6"
            };
            return Err(fail(&format!("not an {family} address (use {other})")));
        }
        if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]) {
            return Err(fail(&format!("not a unicast {family} address")));
        }
        return Ok(Outbound::Addr(ip));
    }
    // Linux's dev_valid_name(): 1-15 bytes, not "." or "..", no '/', ':' or whitespace.
    let valid_name = !value.is_empty()
        && value.len() <= MAX_IFNAME_LEN
        && value != "."
        && value != ".."
        && !value.contains(|c: char| c == '/' || c == ':' || c.is_whitespace());
    if !valid_name {
        return Err(fail(&format!(
            "neither an {family} address nor an interface name"
        )));
    }
    Ok(Outbound::Interface(value.into()))
}

/// `--mac XX:XX:XX:XX:XX:XX`: six hexadecimal octets, unicast and not all zero.
fn mac(value: &str) -> Result<[u8; 6], UsageError> {
    let fail = |why: &str| usage(format!("--mac {value}"), why);
    let mut out = [0u8; 6];
    let mut parts = value.split(':');
    for octet in &mut out {
        let part = parts.next().unwrap_or_default();
        if part.len() != 2 {
            return Err(fail("expected six octets like 52:54:00:12:34:56"));
        }
        *octet = u8::from_str_radix(part, 16)
            .map_err(|_| fail("expected six octets like 52:54:00:12:34:56"))?;
    }
    if parts.next().is_some() {
        return Err(fail("expected six octets like 52:54:00:12:34:56"));
    }
    // The I/G bit (the lowest bit of the first octet) marks group addresses (IEEE 802).
    if out[0] & 1 != 0 {
        return Err(fail("not a unicast address (the first octet must be even)"));
    }
    if out == [0; 6] {
        return Err(fail("the all-zero address is not a valid MAC address"));
    }
    Ok(out)
}

/// `--dns-upstream ADDR[:PORT]`; IPv6 as `[ADDR]:PORT`, `[ADDR]` or bare; port 53 by default.
fn dns_upstream(value: &str) -> Result<SocketAddr, UsageError> {
    let fail = |why: &str| usage(format!("--dns-upstream {value}"), why);
    let addr = value
        .parse::<SocketAddr>()
        .ok()
        .or_else(|| {
            let bare = value
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .unwrap_or(value);
            bare.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, DNS_PORT))
        })
        .ok_or_else(|| fail("expected ADDR[:PORT], with IPv6 as [ADDR]:PORT"))?;
    if addr.port() == 0 {
        return Err(fail("port 0 is out of range (1-65535)"));
    }
    if addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return Err(fail("not a unicast address"));
    }
    Ok(addr)
}

/// `--api-socket PATH` must fit in a UNIX socket address.
fn api_socket(path: &std::path::Path) -> Result<(), UsageError> {
    let len = path.as_os_str().len();
    if len == 0 || len >= SUN_PATH_LEN {
        return Err(usage(
            format!("--api-socket {}", path.display()),
            format!(
                "must be 1 to {} bytes (a UNIX socket path)",
                SUN_PATH_LEN - 1
            ),
        ));
    }
    Ok(())
}

/// Every network flag's long name, for tests that check the `--join` refusal covers them.
#[cfg(test)]
pub fn all_flags() -> Vec<String> {
    use clap::CommandFactory;
    super::Args::command()
        .get_arguments()
        .filter(|a| {
            <NetArgs as clap::Args>::augment_args(clap::Command::new("net"))
                .get_arguments()
                .any(|n| n.get_id() == a.get_id())
        })
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod net_mode_tests {
    use super::*;

    #[test]
    fn auto_is_kernel_only_for_root_without_unsupported_flags() {
        assert!(net_mode(NetMode::Auto, true, None).expect("valid"));
        assert!(!net_mode(NetMode::Auto, false, None).expect("valid"));
        assert!(!net_mode(NetMode::Auto, true, Some("--api-socket")).expect("valid"));
        assert!(!net_mode(NetMode::Userspace, true, None).expect("valid"));
    }

    #[test]
    fn kernel_is_refused_to_non_root_and_with_unsupported_flags() {
        assert!(net_mode(NetMode::Kernel, false, None)
            .expect_err("non-root")
            .to_string()
            .starts_with("--net-mode=kernel: needs real root"));
        assert_eq!(
            net_mode(NetMode::Kernel, true, Some("--api-socket"))
                .expect_err("api socket")
                .to_string(),
            "--api-socket: not with --net-mode=kernel: the slirp4netns API drives the userspace \
             stack's forwards, and kernel mode has none; use --net-mode=userspace"
        );
    }
}
