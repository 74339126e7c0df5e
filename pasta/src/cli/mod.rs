//! pasta's command line as podman 5/6 and rootlesskit build it, parsed by `rr_getopt` the way
//! pasta's getopt_long does (its optstring starts with '+': options stop at the first operand,
//! which is the target PID or a command): `--opt=val`, `--opt val`, clustered short flags,
//! repeated `-t`/`-u`/`-a`/`-g`, the last of a repeated scalar winning.
//! Called by `main`; yields `Options` (plain values, still unchecked against the host) or
//! `Help` / `Version`. pasta options we know but do not implement are listed in `UNSUPPORTED`
//! and refused by name (`CliError::Unsupported`); unknown ones get getopt's message, which
//! podman's retry logic matches ("unrecognized option '--map-guest-addr").

use std::net::IpAddr;
use std::path::PathBuf;

use rr_getopt::{Getopt, GetoptError, HasArg, OptSpec};

use crate::ports::{self, PortMap, PortSpec, PortsError, Side};

/// pasta's default MTU: 65520, the largest 802.3 frame minus its header, rounded to 32 bits.
pub const DEFAULT_MTU: u32 = 65520;

/// Every option, by meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Debug,
    Trace,
    Quiet,
    Foreground,
    Stderr,
    Help,
    Version,
    NsIfname,
    Pid,
    Mtu,
    Address,
    Netmask,
    Gateway,
    Interface,
    Outbound,
    Dns,
    DnsForward,
    DnsHost,
    Tcp,
    Udp,
    TcpNs,
    UdpNs,
    Ipv4Only,
    Ipv6Only,
    NoMapGw,
    MapGw,
    MapHostLoopback,
    MapGuestAddr,
    Userns,
    Netns,
    NoNetnsQuit,
    ConfigNet,
    NsMacAddr,
    /// DHCP, DHCPv6, NDP and RA switches: with `--config-net` we serve none of them anyway.
    NoAutoconf,
    /// A pasta option we know and refuse.
    Unsupported(&'static str),
}

use HasArg::{No, Required as Req};

/// pasta's options (pasta 2025-05 `--help`, plus `--map-gw`, which podman strips but users type).
const SPECS: &[OptSpec<Opt>] = &[
    OptSpec::long(Some('d'), "debug", No, Opt::Debug),
    OptSpec::long(None, "trace", No, Opt::Trace),
    OptSpec::long(Some('q'), "quiet", No, Opt::Quiet),
    OptSpec::long(Some('f'), "foreground", No, Opt::Foreground),
    OptSpec::long(Some('e'), "stderr", No, Opt::Stderr),
    OptSpec::long(Some('h'), "help", No, Opt::Help),
    OptSpec::long(None, "version", No, Opt::Version),
    OptSpec::long(Some('I'), "ns-ifname", Req, Opt::NsIfname),
    OptSpec::long(Some('P'), "pid", Req, Opt::Pid),
    OptSpec::long(Some('m'), "mtu", Req, Opt::Mtu),
    OptSpec::long(Some('a'), "address", Req, Opt::Address),
    OptSpec::long(Some('n'), "netmask", Req, Opt::Netmask),
    OptSpec::long(Some('g'), "gateway", Req, Opt::Gateway),
    OptSpec::long(Some('i'), "interface", Req, Opt::Interface),
    OptSpec::long(Some('o'), "outbound", Req, Opt::Outbound),
    OptSpec::long(Some('D'), "dns", Req, Opt::Dns),
    OptSpec::long(None, "dns-forward", Req, Opt::DnsForward),
    OptSpec::long(None, "dns-host", Req, Opt::DnsHost),
    OptSpec::long(Some('t'), "tcp-ports", Req, Opt::Tcp),
    OptSpec::long(Some('u'), "udp-ports", Req, Opt::Udp),
    OptSpec::long(Some('T'), "tcp-ns", Req, Opt::TcpNs),
    OptSpec::long(Some('U'), "udp-ns", Req, Opt::UdpNs),
    OptSpec::long(Some('4'), "ipv4-only", No, Opt::Ipv4Only),
    OptSpec::long(Some('6'), "ipv6-only", No, Opt::Ipv6Only),
    OptSpec::long(None, "no-map-gw", No, Opt::NoMapGw),
    OptSpec::long(None, "map-gw", No, Opt::MapGw),
    OptSpec::long(None, "map-host-loopback", Req, Opt::MapHostLoopback),
    OptSpec::long(None, "map-guest-addr", Req, Opt::MapGuestAddr),
    OptSpec::long(None, "userns", Req, Opt::Userns),
    OptSpec::long(None, "netns", Req, Opt::Netns),
    OptSpec::long(None, "no-netns-quit", No, Opt::NoNetnsQuit),
    OptSpec::long(None, "config-net", No, Opt::ConfigNet),
    OptSpec::long(None, "ns-mac-addr", Req, Opt::NsMacAddr),
    OptSpec::long(None, "no-dhcp", No, Opt::NoAutoconf),
    OptSpec::long(None, "no-dhcpv6", No, Opt::NoAutoconf),
    OptSpec::long(None, "no-ndp", No, Opt::NoAutoconf),
    OptSpec::long(None, "no-ra", No, Opt::NoAutoconf),
    OptSpec::long(
        Some('c'),
        "conf-path",
        Req,
        Opt::Unsupported("-c/--conf-path"),
    ),
    OptSpec::long(
        Some('l'),
        "log-file",
        Req,
        Opt::Unsupported("-l/--log-file"),
    ),
    OptSpec::long(None, "log-size", Req, Opt::Unsupported("--log-size")),
    OptSpec::long(None, "runas", Req, Opt::Unsupported("--runas")),
    OptSpec::long(Some('F'), "fd", Req, Opt::Unsupported("-F/--fd")),
    OptSpec::long(Some('p'), "pcap", Req, Opt::Unsupported("-p/--pcap")),
    OptSpec::long(
        Some('M'),
        "mac-addr",
        Req,
        Opt::Unsupported("-M/--mac-addr"),
    ),
    OptSpec::long(
        None,
        "outbound-if4",
        Req,
        Opt::Unsupported("--outbound-if4"),
    ),
    OptSpec::long(
        None,
        "outbound-if6",
        Req,
        Opt::Unsupported("--outbound-if6"),
    ),
    OptSpec::long(Some('S'), "search", Req, Opt::Unsupported("-S/--search")),
    OptSpec::long(None, "dhcp-dns", No, Opt::Unsupported("--dhcp-dns")),
    OptSpec::long(None, "dhcp-search", No, Opt::Unsupported("--dhcp-search")),
    OptSpec::long(None, "no-tcp", No, Opt::Unsupported("--no-tcp")),
    OptSpec::long(None, "no-udp", No, Opt::Unsupported("--no-udp")),
    OptSpec::long(None, "no-icmp", No, Opt::Unsupported("--no-icmp")),
    OptSpec::long(None, "netns-only", No, Opt::Unsupported("--netns-only")),
    OptSpec::long(None, "no-splice", No, Opt::Unsupported("--no-splice")),
    OptSpec::long(
        None,
        "no-copy-routes",
        No,
        Opt::Unsupported("--no-copy-routes"),
    ),
    OptSpec::long(
        None,
        "no-copy-addrs",
        No,
        Opt::Unsupported("--no-copy-addrs"),
    ),
];

/// Which namespace to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsArg {
    /// `--netns PATH` (or NAME, under /run/netns).
    Path(PathBuf),
    /// The PID operand.
    Pid(i32),
}

/// The command line's values, in pasta's meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-d`, `--trace`: log at debug (trace) level.
    pub debug: u8,
    /// `-q`: informational messages off (they are off by default here: `RUST_LOG` rules).
    pub quiet: bool,
    /// `-f`: stay in the foreground, keep stderr.
    pub foreground: bool,
    /// `-I`: the interface name in the namespace; the host's template interface's otherwise.
    pub ns_ifname: Option<String>,
    /// `-P`: where to write the background process's PID.
    pub pid_file: Option<PathBuf>,
    /// `-m`.
    pub mtu: u32,
    /// `-a`: at most one per family.
    pub addresses: Vec<IpAddr>,
    /// `-n`: IPv4 prefix length.
    pub netmask: Option<u8>,
    /// `-g`: at most one per family.
    pub gateways: Vec<IpAddr>,
    /// `-i`: the host interface whose addresses and routes are copied.
    pub template_if: Option<String>,
    /// `-o`: source addresses of outbound sockets, one per family.
    pub outbound: Vec<IpAddr>,
    /// `-D`: DNS servers to advertise (nothing is advertised with `--config-net`).
    pub dns: Vec<IpAddr>,
    /// `--dns-forward`: addresses the DNS forwarder answers at.
    pub dns_forward: Vec<IpAddr>,
    /// `--dns-host`: where forwarded queries go (the host's first resolver otherwise).
    pub dns_host: Vec<IpAddr>,
    /// `-t`: TCP forwards.
    pub tcp: Vec<PortMap>,
    /// `-u`: UDP forwards.
    pub udp: Vec<PortMap>,
    /// `-T`: TCP forwards from the namespace's loopback to the host's.
    pub tcp_ns: Vec<PortMap>,
    /// `-U`: UDP forwards from the namespace's loopback to the host's.
    pub udp_ns: Vec<PortMap>,
    /// `-4` / `-6`.
    pub family: Family,
    /// `--map-gw` (last of it and `--no-map-gw` wins; pasta's default is to map).
    pub map_gw: bool,
    /// `--map-host-loopback`: addresses that reach the host's loopback.
    pub map_host_loopback: Vec<IpAddr>,
    /// `--map-guest-addr`: addresses that reach the host as itself.
    pub map_guest_addr: Vec<IpAddr>,
    /// `--userns`.
    pub userns: Option<PathBuf>,
    /// `--netns` or the PID operand.
    pub netns: Option<NetnsArg>,
    /// Off with `--no-netns-quit`.
    pub netns_quit: bool,
    /// `--config-net`.
    pub config_net: bool,
    /// `--ns-mac-addr`.
    pub ns_mac: Option<[u8; 6]>,
}

/// `-4`, `-6` or both families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Both (the default).
    Both,
    /// `-4`.
    V4Only,
    /// `-6`.
    V6Only,
}

impl Family {
    /// Whether addresses of `ip`'s family are configured.
    pub fn allows(self, ip: IpAddr) -> bool {
        match self {
            Family::Both => true,
            Family::V4Only => ip.is_ipv4(),
            Family::V6Only => ip.is_ipv6(),
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `-h`.
    Help,
    /// `--version`.
    Version,
    /// Serve a namespace.
    Run(Box<Options>),
}

/// A command line we refuse; printed as "PROG: MESSAGE", exit 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// getopt's own message (unknown option, missing value, ...).
    #[error(transparent)]
    Getopt(#[from] GetoptError),
    /// A pasta option rr-pasta does not implement.
    #[error("{0}: not supported by rr-pasta (see docs/pasta-compat.md)")]
    Unsupported(&'static str),
    /// A value that does not parse or is out of range.
    #[error("{opt} {value}: {why}")]
    Value {
        /// The option.
        opt: &'static str,
        /// As given.
        value: String,
        /// Why.
        why: &'static str,
    },
    /// A port spec we refuse.
    #[error("{opt} {value}: {source}")]
    Ports {
        /// `-t`, `-u`, `-T` or `-U`.
        opt: &'static str,
        /// As given.
        value: String,
        /// Why.
        source: PortsError,
    },
    /// A command operand instead of a PID: pasta would run it in new namespaces.
    #[error("running COMMAND in new namespaces is not supported (use rootless-run); give a PID or --netns")]
    Command,
    /// Two targets (a PID and `--netns`, or two PIDs).
    #[error("give one target: a PID or --netns")]
    TwoTargets,
    /// No PID and no `--netns`.
    #[error("no target namespace: give a PID or --netns PATH")]
    NoTarget,
    /// No `--config-net`: the namespace would need pasta's DHCP/NDP with the host's addresses.
    #[error(
        "--config-net is required (rr-pasta configures the namespace itself; it serves no DHCP)"
    )]
    NoConfigNet,
}

/// Parses `args` (argv without the program name).
pub fn parse(args: &[String]) -> Result<Action, CliError> {
    let mut o = Options {
        debug: 0,
        quiet: false,
        foreground: false,
        ns_ifname: None,
        pid_file: None,
        mtu: DEFAULT_MTU,
        addresses: Vec::new(),
        netmask: None,
        gateways: Vec::new(),
        template_if: None,
        outbound: Vec::new(),
        dns: Vec::new(),
        dns_forward: Vec::new(),
        dns_host: Vec::new(),
        tcp: Vec::new(),
        udp: Vec::new(),
        tcp_ns: Vec::new(),
        udp_ns: Vec::new(),
        family: Family::Both,
        map_gw: true,
        map_host_loopback: Vec::new(),
        map_guest_addr: Vec::new(),
        userns: None,
        netns: None,
        netns_quit: true,
        config_net: false,
        ns_mac: None,
    };
    let mut getopt = Getopt::new(SPECS, args, true);
    for item in getopt.by_ref() {
        let (opt, value) = item?;
        let v = value.unwrap_or_default();
        match opt {
            Opt::Help => return Ok(Action::Help),
            Opt::Version => return Ok(Action::Version),
            Opt::Unsupported(name) => return Err(CliError::Unsupported(name)),
            other => apply(&mut o, other, v)?,
        }
    }
    for operand in getopt.operands() {
        let pid = operand
            .parse::<i32>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or(CliError::Command)?;
        if o.netns.is_some() {
            return Err(CliError::TwoTargets);
        }
        o.netns = Some(NetnsArg::Pid(pid));
    }
    if o.netns.is_none() {
        return Err(CliError::NoTarget);
    }
    if !o.config_net {
        return Err(CliError::NoConfigNet);
    }
    Ok(Action::Run(Box::new(o)))
}

fn apply(o: &mut Options, opt: Opt, v: &str) -> Result<(), CliError> {
    match opt {
        Opt::Debug => o.debug = o.debug.max(1),
        Opt::Trace => o.debug = 2,
        Opt::Quiet => o.quiet = true,
        Opt::Foreground => o.foreground = true,
        // Logs go to stderr whenever it is kept (-f): nothing more to switch on.
        Opt::Stderr => {}
        Opt::NsIfname => o.ns_ifname = Some(v.into()),
        Opt::Pid => o.pid_file = Some(v.into()),
        Opt::Mtu => o.mtu = mtu(v)?,
        Opt::Address => per_family(&mut o.addresses, ip("-a/--address", v)?),
        Opt::Netmask => o.netmask = Some(netmask(v)?),
        Opt::Gateway => per_family(&mut o.gateways, ip("-g/--gateway", v)?),
        Opt::Interface => o.template_if = Some(v.into()),
        Opt::Outbound => per_family(&mut o.outbound, ip("-o/--outbound", v)?),
        Opt::Dns => o.dns.push(ip("-D/--dns", v)?),
        Opt::DnsForward => per_family(&mut o.dns_forward, ip("--dns-forward", v)?),
        Opt::DnsHost => per_family(&mut o.dns_host, ip("--dns-host", v)?),
        Opt::Tcp => o.tcp.extend(port_maps("-t/--tcp-ports", v, Side::Host)?),
        Opt::Udp => o.udp.extend(port_maps("-u/--udp-ports", v, Side::Host)?),
        Opt::TcpNs => o.tcp_ns.extend(port_maps("-T/--tcp-ns", v, Side::Ns)?),
        Opt::UdpNs => o.udp_ns.extend(port_maps("-U/--udp-ns", v, Side::Ns)?),
        Opt::Ipv4Only => o.family = Family::V4Only,
        Opt::Ipv6Only => o.family = Family::V6Only,
        Opt::NoMapGw => o.map_gw = false,
        Opt::MapGw => o.map_gw = true,
        Opt::MapHostLoopback => per_family(&mut o.map_host_loopback, ip("--map-host-loopback", v)?),
        Opt::MapGuestAddr => per_family(&mut o.map_guest_addr, ip("--map-guest-addr", v)?),
        Opt::Userns => o.userns = Some(v.into()),
        Opt::Netns => {
            if o.netns.is_some() {
                return Err(CliError::TwoTargets);
            }
            o.netns = Some(NetnsArg::Path(netns_path(v)));
        }
        Opt::NoNetnsQuit => o.netns_quit = false,
        Opt::ConfigNet => o.config_net = true,
        Opt::NsMacAddr => o.ns_mac = Some(mac(v)?),
        Opt::NoAutoconf => {}
        Opt::Help | Opt::Version | Opt::Unsupported(_) => unreachable!("handled by parse"),
    }
    Ok(())
}

/// Keeps one address per family, the last given winning (pasta: "zero to two times").
fn per_family(list: &mut Vec<IpAddr>, addr: IpAddr) {
    list.retain(|a| a.is_ipv4() != addr.is_ipv4());
    list.push(addr);
}

fn ip(opt: &'static str, v: &str) -> Result<IpAddr, CliError> {
    v.parse().map_err(|_| CliError::Value {
        opt,
        value: v.into(),
        why: "not an IPv4 or IPv6 address",
    })
}

/// pasta's MTU bounds: 68 (IPv4's minimum) to 65520; 0 ("do not assign") is refused here,
/// because the namespace is always configured by us.
fn mtu(v: &str) -> Result<u32, CliError> {
    match v.parse::<u32>() {
        Ok(m) if (68..=DEFAULT_MTU).contains(&m) => Ok(m),
        _ => Err(CliError::Value {
            opt: "-m/--mtu",
            value: v.into(),
            why: "must be 68 to 65520",
        }),
    }
}

/// Bits (`24`) or dot-decimal (`255.255.255.0`), contiguous.
fn netmask(v: &str) -> Result<u8, CliError> {
    let bad = || CliError::Value {
        opt: "-n/--netmask",
        value: v.into(),
        why: "not a prefix length or a contiguous dot-decimal mask",
    };
    if let Ok(bits) = v.parse::<u8>() {
        return (1..=32).contains(&bits).then_some(bits).ok_or_else(bad);
    }
    let mask = u32::from(v.parse::<std::net::Ipv4Addr>().map_err(|_| bad())?);
    let bits = mask.leading_ones();
    (bits > 0 && mask.checked_shl(bits).unwrap_or(0) == 0)
        .then_some(bits as u8)
        .ok_or_else(bad)
}

fn mac(v: &str) -> Result<[u8; 6], CliError> {
    let bad = || CliError::Value {
        opt: "--ns-mac-addr",
        value: v.into(),
        why: "not a MAC address (xx:xx:xx:xx:xx:xx)",
    };
    let mut out = [0u8; 6];
    let mut parts = v.split(':');
    for byte in &mut out {
        let p = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
        *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() || out[0] & 1 != 0 {
        return Err(bad());
    }
    Ok(out)
}

fn port_maps(opt: &'static str, v: &str, side: Side) -> Result<Vec<PortMap>, CliError> {
    match ports::parse(v, side) {
        Ok(PortSpec::None) => Ok(Vec::new()),
        Ok(PortSpec::List(maps)) => Ok(maps),
        Err(source) => Err(CliError::Ports {
            opt,
            value: v.into(),
            source,
        }),
    }
}

/// A NAME without '/' is /run/netns/NAME (`ip netns` names), as pasta resolves it.
fn netns_path(v: &str) -> PathBuf {
    if v.contains('/') {
        PathBuf::from(v)
    } else {
        PathBuf::from("/run/netns").join(v)
    }
}

#[cfg(test)]
pub(crate) mod tests;
