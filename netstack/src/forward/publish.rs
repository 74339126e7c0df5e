//! The `--publish` grammar, `[HOSTIP:]HOSTPORT[-END]:SANDBOXPORT[-END][/tcp|/udp]`: parsing one
//! value into a `Rule`, expanding it into the forwards the network stack binds
//! (`netstack::forward::ForwardSpec`, one per port and family), and refusing forwards that
//! claim the same host address, port and protocol twice.
//! Called by the launcher's `cli::net` during validation, and by the `publish_spec` fuzz
//! target. Pure: binding the host sockets is the launcher's `network`. Grows only with the
//! grammar.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::Addressing;
use crate::forward::{ForwardSpec, Transport};

/// One `--publish` value and the forwards it expands to (one per port, and per family when
/// it names no host address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The value as given, for error messages.
    pub value: String,
    /// The forwards, in order.
    pub specs: Vec<ForwardSpec>,
}

/// Why a `--publish` value is refused (printed as `--publish VALUE: <this>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Not of the shape `[HOSTIP:]HOSTPORT[-END]:SANDBOXPORT[-END][/tcp|/udp]`.
    #[error("expected [HOSTIP:]HOSTPORT[-END]:SANDBOXPORT[-END][/tcp|/udp]")]
    Syntax,
    /// A protocol other than tcp or udp.
    #[error("unknown protocol '{0}' (tcp or udp)")]
    Proto(String),
    /// The host address does not parse.
    #[error("'{0}' is not an IP address")]
    HostIp(String),
    /// An IPv6 host address without brackets.
    #[error("write IPv6 host addresses in brackets, e.g. [::1]:8080:80")]
    Unbracketed,
    /// A port that is not a decimal number.
    #[error("'{0}' is not a port number")]
    Port(String),
    /// Port 0 or above 65535.
    #[error("port {0} is out of range (1-65535)")]
    PortRange(String),
    /// A range whose end is below its start.
    #[error("range {start}-{end} ends before it starts")]
    Reversed {
        /// First port.
        start: u16,
        /// Last port.
        end: u16,
    },
    /// Host and sandbox ranges of different lengths.
    #[error("the host range has {host} ports and the sandbox range {sandbox}; they must match")]
    Lengths {
        /// Ports in the host range.
        host: u32,
        /// Ports in the sandbox range.
        sandbox: u32,
    },
    /// An IPv6 host address while the sandbox has no IPv6.
    #[error("IPv6 is off in the sandbox (--disable-ipv6, or --mtu below 1280)")]
    Ipv6Off,
    /// A multicast or broadcast host address.
    #[error("{0} is not a unicast address")]
    NotUnicast(IpAddr),
    /// The same host address (or a wildcard of its family), port and protocol as an earlier
    /// forward.
    #[error("{proto} port {port} on {addr} is already published by --publish {other}")]
    Overlap {
        /// "tcp" or "udp".
        proto: &'static str,
        /// The host port.
        port: u16,
        /// The host address of this value.
        addr: IpAddr,
        /// The earlier `--publish` value that claims it.
        other: String,
    },
}

/// An inclusive port range (one port when `start == end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port.
    pub end: u16,
}

impl PortRange {
    fn len(self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }
}

/// One parsed `--publish` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The host address; `None`: every host address, IPv4 and (when on) IPv6.
    pub host_ip: Option<IpAddr>,
    /// Host ports.
    pub host: PortRange,
    /// Sandbox ports, as many as host ports.
    pub sandbox: PortRange,
    /// TCP (the default) or UDP.
    pub proto: Transport,
}

/// Parses one value.
pub fn parse(value: &str) -> Result<Rule, PublishError> {
    let (body, proto) = match value.rsplit_once('/') {
        Some((body, "tcp")) => (body, Transport::Tcp),
        Some((body, "udp")) => (body, Transport::Udp),
        Some((_, other)) => return Err(PublishError::Proto(other.into())),
        None => (value, Transport::Tcp),
    };
    let (host_ip, ports) = split_host(body)?;
    let (host, sandbox) = ports.split_once(':').ok_or(PublishError::Syntax)?;
    let (host, sandbox) = (port_range(host)?, port_range(sandbox)?);
    if host.len() != sandbox.len() {
        return Err(PublishError::Lengths {
            host: host.len(),
            sandbox: sandbox.len(),
        });
    }
    if let Some(ip) = host_ip {
        let broadcast = ip == IpAddr::V4(Ipv4Addr::BROADCAST);
        if ip.is_multicast() || broadcast {
            return Err(PublishError::NotUnicast(ip));
        }
    }
    Ok(Rule {
        host_ip,
        host,
        sandbox,
        proto,
    })
}

/// Splits `[HOSTIP:]PORTS:PORTS` into the host address and the two port parts.
fn split_host(body: &str) -> Result<(Option<IpAddr>, &str), PublishError> {
    if let Some(rest) = body.strip_prefix('[') {
        let (ip, ports) = rest.split_once("]:").ok_or(PublishError::Syntax)?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| PublishError::HostIp(format!("[{ip}]")))?;
        return Ok((Some(IpAddr::V6(ip)), ports));
    }
    match body.matches(':').count() {
        1 => Ok((None, body)),
        2 => {
            let (ip, ports) = body.split_once(':').ok_or(PublishError::Syntax)?;
            let ip: Ipv4Addr = ip.parse().map_err(|_| PublishError::HostIp(ip.into()))?;
            Ok((Some(IpAddr::V4(ip)), ports))
        }
        _ => {
            // More colons: an IPv6 address without brackets, or nonsense.
            let mut parts = body.rsplitn(3, ':');
            let (_, _, ip) = (parts.next(), parts.next(), parts.next());
            if ip.is_some_and(|ip| ip.parse::<Ipv6Addr>().is_ok()) {
                Err(PublishError::Unbracketed)
            } else {
                Err(PublishError::Syntax)
            }
        }
    }
}

/// `PORT` or `START-END`.
fn port_range(s: &str) -> Result<PortRange, PublishError> {
    let (start, end) = match s.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(s)?;
            (p, p)
        }
    };
    if end < start {
        return Err(PublishError::Reversed { start, end });
    }
    Ok(PortRange { start, end })
}

/// A decimal port, 1 to 65535.
fn port(s: &str) -> Result<u16, PublishError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PublishError::Port(s.into()));
    }
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(PublishError::PortRange(s.into())),
        Ok(p) => Ok(p),
    }
}

impl Rule {
    /// The forwards this rule stands for: for each port in order, the IPv4 forward then the
    /// IPv6 one. Without a host address, 0.0.0.0 to the sandbox's IPv4 address and, when
    /// `ipv6`, [::] to its IPv6 address; with one, that address to the sandbox's address of
    /// its family.
    pub fn expand(&self, addr: &Addressing, ipv6: bool) -> Result<Vec<ForwardSpec>, PublishError> {
        let v4 = (
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(addr.sandbox_v4()),
        );
        let v6 = (
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::V6(addr.sandbox_v6()),
        );
        let pairs = match self.host_ip {
            None if ipv6 => vec![v4, v6],
            None => vec![v4],
            Some(IpAddr::V6(_)) if !ipv6 => return Err(PublishError::Ipv6Off),
            Some(ip) => vec![(ip, addr.sandbox_for(ip))],
        };
        let mut out = Vec::with_capacity(self.host.len() as usize * pairs.len());
        for (host_port, sandbox_port) in (self.host.start..=self.host.end).zip(self.sandbox.start..)
        {
            for &(host, guest) in &pairs {
                out.push(ForwardSpec {
                    proto: self.proto,
                    host: SocketAddr::new(host, host_port),
                    guest: SocketAddr::new(guest, sandbox_port),
                });
            }
        }
        Ok(out)
    }
}

/// Parses and expands every value, in order, refusing overlaps between any two forwards:
/// the same protocol and host port on the same address, or on a wildcard and any address of
/// the same family (the second bind would fail, or steal the first one's traffic).
pub fn expand_all(
    values: &[String],
    addr: &Addressing,
    ipv6: bool,
) -> Result<Vec<Publish>, (String, PublishError)> {
    // (proto, is IPv6, port) -> host addresses already claimed, with the value claiming each.
    let mut claimed: HashMap<(Transport, bool, u16), Vec<(IpAddr, usize)>> = HashMap::new();
    let mut out: Vec<Publish> = Vec::with_capacity(values.len());
    for value in values {
        let fail = |e| (value.clone(), e);
        let specs = parse(value)
            .and_then(|r| r.expand(addr, ipv6))
            .map_err(fail)?;
        for spec in &specs {
            let (ip, port) = (spec.host.ip(), spec.host.port());
            let slot = claimed.entry((spec.proto, ip.is_ipv6(), port)).or_default();
            let clash = slot
                .iter()
                .find(|(other, _)| *other == ip || other.is_unspecified() || ip.is_unspecified());
            if let Some(&(_, index)) = clash {
                return Err(fail(PublishError::Overlap {
                    proto: spec.proto.name(),
                    port,
                    addr: ip,
                    other: out.get(index).map(|p| p.value.clone()).unwrap_or_default(),
                }));
            }
            slot.push((ip, out.len()));
        }
        out.push(Publish {
            value: value.clone(),
            specs,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn spec(proto: Transport, host: &str, guest: &str) -> ForwardSpec {
        ForwardSpec {
            proto,
            host: sa(host),
            guest: sa(guest),
        }
    }

    fn expand(v: &str, ipv6: bool) -> Result<Vec<ForwardSpec>, PublishError> {
        parse(v)?.expand(&Addressing::default(), ipv6)
    }

    #[test]
    fn without_host_ip_listens_on_every_ipv4_and_ipv6_address() {
        assert_eq!(
            expand("8080:80", true).expect("valid"),
            [
                spec(Transport::Tcp, "0.0.0.0:8080", "10.0.2.100:80"),
                spec(Transport::Tcp, "[::]:8080", "[fd00::100]:80"),
            ]
        );
        assert_eq!(
            expand("8080:80", false).expect("valid"),
            [spec(Transport::Tcp, "0.0.0.0:8080", "10.0.2.100:80")]
        );
    }

    #[test]
    fn host_ip_picks_the_sandbox_address_of_its_family() {
        assert_eq!(
            expand("127.0.0.1:8080:80/udp", true).expect("valid"),
            [spec(Transport::Udp, "127.0.0.1:8080", "10.0.2.100:80")]
        );
        assert_eq!(
            expand("[::1]:8080:80", true).expect("valid"),
            [spec(Transport::Tcp, "[::1]:8080", "[fd00::100]:80")]
        );
        assert_eq!(expand("[::1]:8080:80", false), Err(PublishError::Ipv6Off));
    }

    #[test]
    fn a_moved_cidr_moves_the_guest_address() {
        let addr = Addressing::default()
            .with_cidr_v4("192.168.7.0/24")
            .and_then(|a| a.with_cidr_v6("fd42::/64"))
            .expect("valid cidrs");
        let specs = parse("9000:90").expect("valid").expand(&addr, true);
        assert_eq!(
            specs.expect("valid"),
            [
                spec(Transport::Tcp, "0.0.0.0:9000", "192.168.7.100:90"),
                spec(Transport::Tcp, "[::]:9000", "[fd42::100]:90"),
            ]
        );
    }

    #[test]
    fn ranges_expand_port_by_port_in_order() {
        assert_eq!(
            expand("127.0.0.1:8000-8002:80-82", true).expect("valid"),
            [
                spec(Transport::Tcp, "127.0.0.1:8000", "10.0.2.100:80"),
                spec(Transport::Tcp, "127.0.0.1:8001", "10.0.2.100:81"),
                spec(Transport::Tcp, "127.0.0.1:8002", "10.0.2.100:82"),
            ]
        );
        let both = expand("65534-65535:1-2/udp", true).expect("valid");
        assert_eq!(both.len(), 4);
        assert_eq!(both[3], spec(Transport::Udp, "[::]:65535", "[fd00::100]:2"));
    }

    #[test]
    fn malformed_values_are_refused_with_the_reason() {
        let err = |v: &str| parse(v).expect_err(v);
        assert_eq!(err("8080"), PublishError::Syntax);
        assert_eq!(err(""), PublishError::Syntax);
        assert_eq!(err("8080:80/sctp"), PublishError::Proto("sctp".into()));
        assert_eq!(err("8080:80/"), PublishError::Proto(String::new()));
        assert_eq!(err("x:80"), PublishError::Port("x".into()));
        assert_eq!(err("+80:80"), PublishError::Port("+80".into()));
        assert_eq!(
            err("localhost:8080:80"),
            PublishError::HostIp("localhost".into())
        );
        assert_eq!(err("[::1:8080:80"), PublishError::Syntax);
        assert_eq!(err("[x]:8080:80"), PublishError::HostIp("[x]".into()));
        assert_eq!(err("::1:8080:80"), PublishError::Unbracketed);
        assert_eq!(err("1:2:3:4"), PublishError::Syntax);
        assert_eq!(err("8080:80-"), PublishError::Port(String::new()));
        assert_eq!(
            err("224.0.0.1:8080:80"),
            PublishError::NotUnicast("224.0.0.1".parse().expect("ip"))
        );
    }

    #[test]
    fn port_zero_and_above_65535_are_out_of_range() {
        let err = |v: &str| parse(v).expect_err(v);
        assert_eq!(err("0:80"), PublishError::PortRange("0".into()));
        assert_eq!(err("8080:0"), PublishError::PortRange("0".into()));
        assert_eq!(err("65536:80"), PublishError::PortRange("65536".into()));
        assert_eq!(
            err("99999999999:80"),
            PublishError::PortRange("99999999999".into())
        );
        assert_eq!(
            PublishError::PortRange("0".into()).to_string(),
            "port 0 is out of range (1-65535)"
        );
    }

    #[test]
    fn reversed_and_unequal_ranges_are_refused() {
        let err = |v: &str| parse(v).expect_err(v);
        assert_eq!(
            err("8002-8000:80-82"),
            PublishError::Reversed {
                start: 8002,
                end: 8000
            }
        );
        assert_eq!(
            err("8000-8002:80"),
            PublishError::Lengths {
                host: 3,
                sandbox: 1
            }
        );
        assert_eq!(
            err("8000:80-81").to_string(),
            "the host range has 1 ports and the sandbox range 2; they must match"
        );
    }

    fn all(values: &[&str], ipv6: bool) -> Result<Vec<Publish>, (String, PublishError)> {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        expand_all(&values, &Addressing::default(), ipv6)
    }

    #[test]
    fn overlapping_forwards_name_the_earlier_value() {
        let (value, e) = all(&["8080:80", "127.0.0.1:8080:81"], true).expect_err("overlap");
        assert_eq!(value, "127.0.0.1:8080:81");
        assert_eq!(
            e.to_string(),
            "tcp port 8080 on 127.0.0.1 is already published by --publish 8080:80"
        );
        // A specific address first, then the wildcard of its family.
        let (value, _) = all(&["[::1]:8080:80", "8079-8081:79-81"], true).expect_err("overlap");
        assert_eq!(value, "8079-8081:79-81");
        // The same address and port twice, inside ranges.
        let (_, e) =
            all(&["127.0.0.1:10-20:10-20", "127.0.0.1:20-30:20-30"], true).expect_err("overlap");
        assert!(matches!(e, PublishError::Overlap { port: 20, .. }), "{e:?}");
    }

    #[test]
    fn different_protocols_families_or_addresses_do_not_overlap() {
        let p = all(
            &[
                "8080:80",
                "8080:80/udp",
                "127.0.0.1:9090:90",
                "127.0.0.2:9090:90",
                "[::1]:9090:90",
            ],
            true,
        )
        .expect("no overlap");
        assert_eq!(p.len(), 5);
        assert_eq!(p[0].value, "8080:80");
        assert_eq!(p[0].specs.len(), 2);
        assert_eq!(
            p[4].specs,
            [spec(Transport::Tcp, "[::1]:9090", "[fd00::100]:90")]
        );
        // Without IPv6, a wildcard IPv4 forward leaves IPv6 addresses free.
        assert!(all(&["9090:90", "127.0.0.1:9091:90"], false).is_ok());
    }
}
