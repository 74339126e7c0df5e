//! Addressing and limits of the virtual network, with slirp4netns's defaults.
//! Built by the binaries from their flags and handed to `Stack::new`; plain data, no I/O
//! beyond reading /etc/resolv.conf for the default DNS upstreams.
//! The constants are the defaults; `Addressing` derives the actual addresses from `--cidr`
//! and `--cidr6` the way slirp4netns does (gateway = network + 2, DNS = + 3, sandbox = + 100).
//! `policy` is the one live object here: the egress policy's shared enforcer.
//! `Aliases` add addresses that stand for the gateway, the DNS forwarder or the host itself
//! (the pasta drop-in's addressing; none by default).
//! Adding a knob here means adding the flag that sets it and the docs that describe it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::alias::{AliasTo, Aliases};

/// Sandbox address configured on tap0 (slirp4netns: network + 100).
pub const SANDBOX_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
/// Gateway address; TCP/UDP to it reach the host's 127.0.0.1 (slirp4netns: network + 2).
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// DNS forwarder address (slirp4netns: network + 3).
pub const DNS_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// Prefix length of the sandbox network.
pub const PREFIX_LEN_V4: u8 = 24;
/// IPv6 sandbox address (slirp4netns's fixed fd00::/64 prefix).
pub const SANDBOX_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);
/// IPv6 gateway; TCP/UDP to it reach the host's ::1.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
/// IPv6 DNS forwarder address.
pub const DNS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3);
/// Prefix length of the IPv6 sandbox network.
pub const PREFIX_LEN_V6: u8 = 64;
/// MTU of tap0; 65520 is what rootlesskit and podman pass to slirp4netns.
pub const DEFAULT_MTU: u32 = 65520;
/// Largest MTU the kernel accepts on a tap device (and slirp4netns's upper bound).
pub const MAX_MTU: u32 = 65521;
/// Name of the tap device inside the sandbox.
pub const TAP_NAME: &str = "tap0";
/// MAC address the stack answers with for the gateway and DNS addresses
/// (libslirp's 52:55:IP scheme for 10.0.2.2).
pub const GATEWAY_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];

/// Host part of the gateway in the sandbox network (slirp4netns: network + 2).
const GATEWAY_HOST: u8 = 2;
/// Host part of the DNS forwarder (slirp4netns: network + 3).
const DNS_HOST: u8 = 3;
/// Host part of the sandbox's own address (slirp4netns: network + 100).
const SANDBOX_HOST: u8 = 100;
/// Interface id of the sandbox's IPv6 address (slirp4netns: fd00::100, hexadecimal).
const SANDBOX_HOST_V6: u16 = 0x100;
/// Longest IPv4 prefix that leaves room for host part 100 (slirp4netns accepts 1..=25).
pub const MAX_PREFIX_V4: u8 = 25;

/// A `--cidr` or `--cidr6` value the virtual network cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressingError {
    /// Not `ADDRESS/PREFIX`, or the address or prefix does not parse. The messages keep
    /// slirp4netns's words, which its users (and its test suite) look for.
    #[error("invalid CIDR: expected ADDRESS/PREFIX, e.g. 10.0.2.0/24")]
    Syntax,
    /// The IPv4 prefix leaves no room for .100, or is zero.
    #[error("prefix length needs to be 1-25 (the sandbox is network + 100)")]
    PrefixV4,
    /// IPv6 networks are /64 (the sandbox takes ::100 of it; SLAAC-sized, as slirp4netns).
    #[error("prefix length must be 64")]
    PrefixV6,
    /// Host bits are set: give the network address ("not like 10.0.2.100/24").
    #[error("CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24")]
    NotNetwork,
    /// A loopback, multicast, broadcast or unspecified network.
    #[error("not a unicast network")]
    NotUnicast,
}

/// The virtual network's addresses, derived from one IPv4 and one IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addressing {
    net_v4: Ipv4Addr,
    prefix_v4: u8,
    net_v6: Ipv6Addr,
    /// Set once per process by the pasta drop-in (`with_aliases`); a reference keeps
    /// `Addressing` small and `Copy` for everyone else.
    aliases: Option<&'static Aliases>,
}

impl Default for Addressing {
    fn default() -> Self {
        Addressing {
            net_v4: Ipv4Addr::new(10, 0, 2, 0),
            prefix_v4: PREFIX_LEN_V4,
            net_v6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0),
            aliases: None,
        }
    }
}

impl Addressing {
    /// The default addressing with the IPv4 network `cidr` (`--cidr`, e.g. "10.0.3.0/24").
    pub fn with_cidr_v4(self, cidr: &str) -> Result<Addressing, AddressingError> {
        let (addr, len) = split_cidr(cidr)?;
        let IpAddr::V4(net) = addr else {
            return Err(AddressingError::Syntax);
        };
        if !(1..=MAX_PREFIX_V4).contains(&len) {
            return Err(AddressingError::PrefixV4);
        }
        if u32::from(net) & !mask_v4(len) != 0 {
            return Err(AddressingError::NotNetwork);
        }
        if net.is_loopback() || net.is_multicast() || net.is_broadcast() || net.is_unspecified() {
            return Err(AddressingError::NotUnicast);
        }
        Ok(Addressing {
            net_v4: net,
            prefix_v4: len,
            ..self
        })
    }

    /// The addressing with the IPv6 network `cidr` (`--cidr6`, e.g. "fd00:1::/64").
    pub fn with_cidr_v6(self, cidr: &str) -> Result<Addressing, AddressingError> {
        let (addr, len) = split_cidr(cidr)?;
        let IpAddr::V6(net) = addr else {
            return Err(AddressingError::Syntax);
        };
        if len != PREFIX_LEN_V6 {
            return Err(AddressingError::PrefixV6);
        }
        if u128::from(net) & !mask_v6(len) != 0 {
            return Err(AddressingError::NotNetwork);
        }
        if net.is_loopback() || net.is_multicast() || net.is_unspecified() {
            return Err(AddressingError::NotUnicast);
        }
        Ok(Addressing {
            net_v6: net,
            ..self
        })
    }

    /// The addressing with `aliases` (pasta's gateway, DNS forward and guest addresses; the
    /// caller leaks them once per process, e.g. `Box::leak`).
    pub fn with_aliases(self, aliases: &'static Aliases) -> Addressing {
        Addressing {
            aliases: Some(aliases),
            ..self
        }
    }

    fn alias(&self, ip: IpAddr) -> Option<AliasTo> {
        self.aliases.and_then(|a| a.lookup(ip))
    }

    fn host_v4(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net_v4) | u32::from(host))
    }

    fn host_v6(&self, host: u16) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.net_v6) | u128::from(host))
    }

    /// The IPv4 network address.
    pub fn network_v4(&self) -> Ipv4Addr {
        self.net_v4
    }
    /// The IPv4 prefix length.
    pub fn prefix_v4(&self) -> u8 {
        self.prefix_v4
    }
    /// The IPv6 network (/64).
    pub fn network_v6(&self) -> Ipv6Addr {
        self.net_v6
    }
    /// The IPv4 gateway (network + 2).
    pub fn gateway_v4(&self) -> Ipv4Addr {
        self.host_v4(GATEWAY_HOST)
    }
    /// The IPv4 DNS forwarder (network + 3).
    pub fn dns_v4(&self) -> Ipv4Addr {
        self.host_v4(DNS_HOST)
    }
    /// The sandbox's IPv4 address (network + 100).
    pub fn sandbox_v4(&self) -> Ipv4Addr {
        self.host_v4(SANDBOX_HOST)
    }
    /// The IPv4 broadcast address of the network.
    pub fn broadcast_v4(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net_v4) | !mask_v4(self.prefix_v4))
    }
    /// The IPv6 gateway (network ::2).
    pub fn gateway_v6(&self) -> Ipv6Addr {
        self.host_v6(u16::from(GATEWAY_HOST))
    }
    /// The IPv6 DNS forwarder (network ::3).
    pub fn dns_v6(&self) -> Ipv6Addr {
        self.host_v6(u16::from(DNS_HOST))
    }
    /// The sandbox's IPv6 address (network ::100).
    pub fn sandbox_v6(&self) -> Ipv6Addr {
        self.host_v6(SANDBOX_HOST_V6)
    }

    /// The gateway of `ip`'s family.
    pub fn gateway_for(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => IpAddr::V4(self.gateway_v4()),
            IpAddr::V6(_) => IpAddr::V6(self.gateway_v6()),
        }
    }

    /// The sandbox's address of `ip`'s family.
    pub fn sandbox_for(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => IpAddr::V4(self.sandbox_v4()),
            IpAddr::V6(_) => IpAddr::V6(self.sandbox_v6()),
        }
    }

    /// Whether `ip` is the gateway (or an alias of it).
    pub fn is_gateway(&self, ip: IpAddr) -> bool {
        ip == IpAddr::V4(self.gateway_v4())
            || ip == IpAddr::V6(self.gateway_v6())
            || self.alias(ip) == Some(AliasTo::Gateway)
    }

    /// Whether `ip` is the DNS forwarder's address (or an alias of it).
    pub fn is_dns(&self, ip: IpAddr) -> bool {
        ip == IpAddr::V4(self.dns_v4())
            || ip == IpAddr::V6(self.dns_v6())
            || self.alias(ip) == Some(AliasTo::Dns)
    }

    /// The host address `ip` stands for, when it is a host alias (`--map-guest-addr`).
    pub fn host_alias(&self, ip: IpAddr) -> Option<IpAddr> {
        match self.alias(ip) {
            Some(AliasTo::Host(host)) => Some(host),
            _ => None,
        }
    }

    /// The address a host client the sandbox cannot route back to appears from: the host
    /// alias of `ip`'s family if there is one, else the gateway.
    pub fn host_face_for(&self, ip: IpAddr) -> IpAddr {
        self.aliases
            .and_then(|a| a.host_face_for(ip))
            .unwrap_or_else(|| self.gateway_for(ip))
    }

    /// Whether `ip` lies inside either virtual network (network, broadcast and every host).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => {
                let mask = mask_v4(self.prefix_v4);
                u32::from(a) & mask == u32::from(self.net_v4)
            }
            IpAddr::V6(a) => u128::from(a) & mask_v6(PREFIX_LEN_V6) == u128::from(self.net_v6),
        }
    }
}

fn mask_v4(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask_v6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

fn split_cidr(cidr: &str) -> Result<(IpAddr, u8), AddressingError> {
    let (addr, len) = cidr.split_once('/').ok_or(AddressingError::Syntax)?;
    let addr: IpAddr = addr.parse().map_err(|_| AddressingError::Syntax)?;
    let len: u8 = len.parse().map_err(|_| AddressingError::Syntax)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(AddressingError::Syntax);
    }
    Ok((addr, len))
}

/// What the stack needs to know about the virtual network and its own limits.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// MTU of the sandbox's tap device; bounds every frame we emit.
    pub mtu: u32,
    /// The virtual network's addresses (`--cidr`, `--cidr6`).
    pub addr: Addressing,
    /// Map the gateway address to the host's 127.0.0.1 (off: `--disable-host-loopback`).
    pub host_loopback: bool,
    /// Reach destinations outside the virtual network (off: only the gateway and DNS
    /// services are translated; everything else is refused).
    pub outbound: bool,
    /// Serve DNS at the DNS address (off: `--disable-dns`; the address is then refused).
    pub dns: bool,
    /// Resolvers the DNS forwarder relays to, in order (the host's resolv.conf by default,
    /// loopback ones included; `--dns-upstream`).
    pub dns_upstreams: Vec<SocketAddr>,
    /// Source address of outbound IPv4 sockets (`--outbound-addr`); the kernel's choice if unset.
    pub outbound_v4: Option<Ipv4Addr>,
    /// Source address of outbound IPv6 sockets (`--outbound-addr6`).
    pub outbound_v6: Option<Ipv6Addr>,
    /// Most concurrent TCP + UDP + ICMP flows; new ones past this evict the oldest idle.
    /// An upper limit: the event loop lowers it to what the fd limit allows (`fd_budget`).
    pub max_flows: usize,
    /// A TCP flow with no traffic for this long is reset on both sides.
    pub tcp_idle_timeout: Duration,
    /// A UDP or ICMP flow with no traffic for this long is closed.
    pub udp_idle_timeout: Duration,
    /// Longest busy-poll before the loop sleeps after a turn that moved little data (it
    /// adapts below this; zero disables it; it is off when only one CPU is available).
    pub busy_poll: Duration,
    /// Advertise the IPv6 prefix, the MTU and a default router (fe80::2) to the sandbox, so
    /// that its kernel configures IPv6 by itself (SLAAC), as slirp4netns does with
    /// `--enable-ipv6` (`ra`). Off: the sandbox's IPv6 is configured from inside, or not at all.
    pub router_advertisements: bool,
    /// Answer DHCPv4 on the gateway (`dhcp`): leases of network + 15 ..= network + 30, as
    /// libslirp does for slirp4netns. Off: UDP to port 67 is refused like any other.
    pub dhcp_server: bool,
    /// The egress policy (`--allow`, `--deny`, `--egress`, `--policy`, presets), shared with
    /// the DNS relay and the launcher (which reads its counters at exit). `None`: everything
    /// the NAT translates is allowed, and nothing is checked.
    pub policy: Option<crate::policy::Shared>,
}

/// Default `busy_poll`: longer than a request/response round trip through the host's
/// loopback, short enough that a sandbox talking rarely costs nothing measurable.
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(100);

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            mtu: DEFAULT_MTU,
            addr: Addressing::default(),
            host_loopback: true,
            outbound: true,
            dns: true,
            dns_upstreams: Vec::new(),
            outbound_v4: None,
            outbound_v6: None,
            max_flows: 4096,
            tcp_idle_timeout: Duration::from_secs(7200),
            udp_idle_timeout: Duration::from_secs(60),
            busy_poll: DEFAULT_BUSY_POLL,
            router_advertisements: false,
            dhcp_server: false,
            policy: None,
        }
    }
}

/// Default DNS port (RFC 1035).
const DNS_PORT: u16 = 53;

/// The host's resolvers for the DNS forwarder: the nameservers of /etc/resolv.conf, in order.
/// Loopback resolvers (e.g. systemd-resolved's 127.0.0.53) work: the stack's sockets live in
/// the host's network namespace. Empty when the file is missing or names none.
pub fn host_resolvers() -> Vec<SocketAddr> {
    match std::fs::read_to_string("/etc/resolv.conf") {
        Ok(text) => nameservers(&text),
        Err(_) => Vec::new(),
    }
}

/// The first `nameserver` of a resolv.conf text.
pub fn first_nameserver(resolv_conf: &str) -> Option<SocketAddr> {
    nameservers(resolv_conf).into_iter().next()
}

/// Every `nameserver` of a resolv.conf text, in order, as DNS upstreams (port 53).
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => {
                    let addr = addr.split('%').next().unwrap_or(addr);
                    addr.parse().ok().map(|ip| SocketAddr::new(ip, DNS_PORT))
                }
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_nameserver_skips_comments_and_scoped_suffix() {
        let text = "# generated\nsearch lan\nnameserver fe80::1%eth0\nnameserver 127.0.0.53\n";
        assert_eq!(
            first_nameserver(text),
            Some("[fe80::1]:53".parse().unwrap())
        );
        assert_eq!(first_nameserver("search x\n"), None);
        assert_eq!(nameservers(text).len(), 2);
    }

    #[test]
    fn default_addressing_is_slirp4netns() {
        let a = Addressing::default();
        assert_eq!(a.gateway_v4(), GATEWAY_V4);
        assert_eq!(a.dns_v4(), DNS_V4);
        assert_eq!(a.sandbox_v4(), SANDBOX_V4);
        assert_eq!(a.gateway_v6(), GATEWAY_V6);
        assert_eq!(a.dns_v6(), DNS_V6);
        assert_eq!(a.sandbox_v6(), SANDBOX_V6);
        assert_eq!(a.broadcast_v4(), Ipv4Addr::new(10, 0, 2, 255));
    }

    #[test]
    fn cidr_moves_every_address_and_checks_the_network() {
        let a = Addressing::default().with_cidr_v4("10.0.3.0/24").unwrap();
        assert_eq!(a.gateway_v4(), Ipv4Addr::new(10, 0, 3, 2));
        assert_eq!(a.sandbox_v4(), Ipv4Addr::new(10, 0, 3, 100));
        assert!(a.contains("10.0.3.255".parse().unwrap()));
        assert!(!a.contains("10.0.2.3".parse().unwrap()));
        let a = Addressing::default()
            .with_cidr_v4("192.168.64.0/25")
            .unwrap();
        assert_eq!(a.broadcast_v4(), Ipv4Addr::new(192, 168, 64, 127));
        let bad = |c: &str| Addressing::default().with_cidr_v4(c).unwrap_err();
        assert_eq!(bad("10.0.2.100/24"), AddressingError::NotNetwork);
        assert_eq!(bad("10.0.2.0/26"), AddressingError::PrefixV4);
        assert_eq!(bad("10.0.2.0"), AddressingError::Syntax);
        assert_eq!(bad("10.0.2.0/x"), AddressingError::Syntax);
        assert_eq!(bad("fd00::/64"), AddressingError::Syntax);
        assert_eq!(bad("127.0.0.0/8"), AddressingError::NotUnicast);
        let a = Addressing::default()
            .with_cidr_v6("fd00:1:2:3::/64")
            .unwrap();
        assert_eq!(
            a.sandbox_v6(),
            "fd00:1:2:3::100".parse::<Ipv6Addr>().unwrap()
        );
        let bad6 = |c: &str| Addressing::default().with_cidr_v6(c).unwrap_err();
        assert_eq!(bad6("fd00::/48"), AddressingError::PrefixV6);
        assert_eq!(bad6("fd00::1/64"), AddressingError::NotNetwork);
    }
}
