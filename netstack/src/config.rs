//! Addressing and limits of the virtual network, with slirp4netns's defaults.
//! Built by the binaries from their flags and handed to `Stack::new`; plain data, no I/O.
//! Adding a knob here means adding the flag that sets it and the docs that describe it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

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

/// What the stack needs to know about the virtual network and its own limits.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// MTU of the sandbox's tap device; bounds every frame we emit.
    pub mtu: u32,
    /// Map the gateway address to the host's 127.0.0.1 (off: `--disable-host-loopback`).
    pub host_loopback: bool,
    /// Reach destinations outside the virtual network (off: only the gateway and DNS
    /// services are translated; everything else is refused).
    pub outbound: bool,
    /// Where DNS queries to the DNS address (port 53) go; `None` disables the forwarder.
    pub dns_upstream: Option<SocketAddr>,
    /// Most concurrent TCP + UDP + ICMP flows; new ones past this evict the oldest idle.
    pub max_flows: usize,
    /// A TCP flow with no traffic for this long is reset on both sides.
    pub tcp_idle_timeout: Duration,
    /// A UDP or ICMP flow with no traffic for this long is closed.
    pub udp_idle_timeout: Duration,
    /// Longest busy-poll before the loop sleeps after a turn that moved little data (it
    /// adapts below this; zero disables it; it is off when only one CPU is available).
    pub busy_poll: Duration,
}

/// Default `busy_poll`: longer than a request/response round trip through the host's
/// loopback, short enough that a sandbox talking rarely costs nothing measurable.
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(100);

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            mtu: DEFAULT_MTU,
            host_loopback: true,
            outbound: true,
            dns_upstream: None,
            max_flows: 4096,
            tcp_idle_timeout: Duration::from_secs(7200),
            udp_idle_timeout: Duration::from_secs(60),
            busy_poll: DEFAULT_BUSY_POLL,
        }
    }
}

/// Default DNS port (RFC 1035).
const DNS_PORT: u16 = 53;

/// The host's resolver for the DNS forwarder: the first nameserver in /etc/resolv.conf.
/// A loopback resolver (e.g. systemd-resolved's 127.0.0.53) works: the stack's sockets live
/// in the host's network namespace.
pub fn host_resolver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    first_nameserver(&text)
}

/// The first `nameserver` of a resolv.conf text, as the upstream for the DNS forwarder.
pub fn first_nameserver(resolv_conf: &str) -> Option<SocketAddr> {
    resolv_conf.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("nameserver"), Some(addr)) => {
                let addr = addr.split('%').next().unwrap_or(addr);
                addr.parse().ok().map(|ip| SocketAddr::new(ip, DNS_PORT))
            }
            _ => None,
        }
    })
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
    }
}
