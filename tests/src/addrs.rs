//! The addresses the forwarding, DNS and addressing tests assert, in one place: the sandbox's
//! virtual network as slirp4netns lays it out (research/anchors-features.md §1.5: gateway .2,
//! DNS .3, sandbox .100, fd00::/64 likewise), and the sealed namespace's own non-loopback
//! addresses (scripts/sealed-netns), which the tests use as "a host address that is not
//! loopback". Constants only.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The sandbox's IPv4 address (10.0.2.0/24 + 100).
pub const SANDBOX_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
/// The gateway (10.0.2.0/24 + 2): the host's loopback as the sandbox sees it.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// The DNS forwarder (10.0.2.0/24 + 3).
pub const DNS_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// The sandbox's IPv6 address (fd00::/64 + 0x100).
pub const SANDBOX_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);
/// The IPv6 gateway (fd00::2): the host's ::1 as the sandbox sees it.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
/// The IPv6 DNS forwarder (fd00::3).
pub const DNS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3);
/// The sealed namespace's address on ext0 (TEST-NET-1): a host address that is not loopback.
pub const HOST_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The sealed namespace's IPv6 address on ext0 (RFC 3849).
pub const HOST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
