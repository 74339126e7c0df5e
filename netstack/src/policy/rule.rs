//! One egress rule and its grammar: `[tcp:|udp:|icmp:]TARGET[:PORT[-END]]`, where TARGET is
//! an IPv4/IPv6 address or CIDR (IPv6 in brackets when a port follows), a host name, or
//! `*.domain` (every name below `domain`, at any depth, not `domain` itself).
//! Called by the policy file parser, the launcher's `--allow`/`--deny` and the API socket;
//! pure: no I/O, no allocation beyond the rule's own name. Every malformed input is one
//! `RuleError` variant, so callers name the rule and the reason in one line.
//!
//! Without a protocol a rule covers TCP, UDP and ICMP echo; with a port it covers TCP and
//! UDP (ICMP has no ports, so `icmp:` with a port is an error). Names are kept lowercase,
//! without a trailing dot. A CIDR with host bits set is an error (like `--cidr`), since
//! `10.0.2.100/8` more likely hides a typo than means `10.0.0.0/8`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest host name in text form (RFC 1035 2.3.4: 255 octets on the wire).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035 2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// What a rule does to what it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Let it through.
    Allow,
    /// Refuse it (RST, ICMP administratively prohibited, DNS REFUSED).
    Deny,
}

impl Action {
    /// `allow` or `deny`.
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        }
    }

    /// Parses `allow` or `deny`.
    pub fn parse(text: &str) -> Option<Action> {
        match text {
            "allow" => Some(Action::Allow),
            "deny" => Some(Action::Deny),
            _ => None,
        }
    }
}

/// The transport protocol of a flow, as rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP or ICMPv6 echo.
    Icmp,
}

impl Proto {
    /// `tcp`, `udp` or `icmp`.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Proto::Tcp => 1,
            Proto::Udp => 2,
            Proto::Icmp => 4,
        }
    }
}

/// The protocols a rule covers (a bit set of `Proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Protos(u8);

impl Protos {
    /// TCP, UDP and ICMP: a rule with neither protocol nor port.
    pub const ALL: Protos = Protos(7);
    /// TCP and UDP: a rule with a port and no protocol.
    pub const PORTED: Protos = Protos(3);

    /// Just `p`.
    pub fn one(p: Proto) -> Protos {
        Protos(p.bit())
    }

    /// Whether `p` is covered.
    pub fn has(self, p: Proto) -> bool {
        self.0 & p.bit() != 0
    }
}

/// An inclusive port range; `ANY` when the rule names no port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ports {
    /// First port.
    pub first: u16,
    /// Last port (>= first).
    pub last: u16,
}

impl Ports {
    /// Every port (ICMP flows have port 0, and match it).
    pub const ANY: Ports = Ports {
        first: 0,
        last: u16::MAX,
    };

    /// Whether `port` is inside.
    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// An address block: the network address (host bits clear) and its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length (0..=32 or 0..=128).
    pub len: u8,
}

impl Cidr {
    /// The block holding just `ip`.
    pub fn host(ip: IpAddr) -> Cidr {
        Cidr {
            addr: ip,
            len: if ip.is_ipv4() { 32 } else { 128 },
        }
    }

    /// Whether `ip` lies inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => u32::from(a) & mask_v4(self.len) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a) & mask_v6(self.len) == u128::from(n),
            _ => false,
        }
    }
}

/// Network mask of an IPv4 prefix length.
pub fn mask_v4(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

/// Network mask of an IPv6 prefix length.
pub fn mask_v6(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

/// What a rule is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Destinations inside an address block.
    Net(Cidr),
    /// Addresses a DNS answer for exactly this name gave.
    Name(Box<str>),
    /// Addresses a DNS answer for any name below this domain gave (`*.domain`).
    Below(Box<str>),
}

/// One rule: `action [proto:]target[:ports]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Allow or deny.
    pub action: Action,
    /// Protocols covered.
    pub protos: Protos,
    /// Destination.
    pub target: Target,
    /// Destination ports covered.
    pub ports: Ports,
}

/// Why a rule does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Nothing given.
    #[error("empty rule")]
    Empty,
    /// `[` without its `]`, or text between `]` and `:PORT`.
    #[error("an IPv6 address in brackets must be followed by nothing or :PORT")]
    Brackets,
    /// Brackets around something that is not an IPv6 address or CIDR.
    #[error("only an IPv6 address or CIDR goes in brackets")]
    NotV6,
    /// The prefix length is not a number in range.
    #[error("prefix length must be 0-32 (IPv4) or 0-128 (IPv6)")]
    PrefixLen,
    /// `ADDRESS/LEN` with bits set past LEN.
    #[error("host bits are set past the prefix length (give the network address)")]
    HostBits,
    /// Not an address, CIDR or valid host name.
    #[error("not an IP address, CIDR, host name or *.domain")]
    Target,
    /// A `*` anywhere but a leading `*.`.
    #[error("a wildcard is only allowed as a leading '*.' (e.g. *.example.com)")]
    Wildcard,
    /// Not a port number 1-65535.
    #[error("port must be a number from 1 to 65535")]
    Port,
    /// `PORT-END` with END below PORT.
    #[error("port range ends before it starts")]
    PortRange,
    /// `icmp:` with a port.
    #[error("icmp rules take no port")]
    IcmpPort,
}

impl Rule {
    /// Parses `text` as a rule doing `action`.
    pub fn parse(action: Action, text: &str) -> Result<Rule, RuleError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(RuleError::Empty);
        }
        let (proto, rest) = split_proto(text);
        let (target, port) = split_port(rest)?;
        let target = parse_target(target)?;
        let ports = match port {
            Some(p) => parse_ports(p)?,
            None => Ports::ANY,
        };
        let protos = match (proto, port) {
            (Some(Proto::Icmp), Some(_)) => return Err(RuleError::IcmpPort),
            (Some(p), _) => Protos::one(p),
            (None, Some(_)) => Protos::PORTED,
            (None, None) => Protos::ALL,
        };
        Ok(Rule {
            action,
            protos,
            target,
            ports,
        })
    }

    /// Whether the rule covers `proto` to `port` (the address or name is matched elsewhere).
    pub fn covers(&self, proto: Proto, port: u16) -> bool {
        self.protos.has(proto) && (proto == Proto::Icmp || self.ports.contains(port))
    }

    /// Whether the rule covers every protocol and port of its target.
    pub fn is_whole(&self) -> bool {
        self.protos == Protos::ALL && self.ports == Ports::ANY
    }
}

impl fmt::Display for Rule {
    /// The rule in the grammar it was parsed from (without the action), canonical form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut prefixed = false;
        for p in PROTOS {
            if self.protos == Protos::one(p) {
                write!(f, "{}:", p.name())?;
                prefixed = true;
            }
        }
        let ported = self.ports != Ports::ANY;
        match &self.target {
            Target::Net(c) => match (c.addr, ported) {
                (IpAddr::V6(a), true) => write!(f, "[{a}/{}]", c.len)?,
                (a, _) => write!(f, "{a}/{}", c.len)?,
            },
            // A host named like a protocol ("udp:53" is UDP to nothing) is written fully
            // qualified, as parsing allows ("udp.:53").
            Target::Name(n) if !prefixed && PROTOS.iter().any(|p| p.name() == &**n) => {
                write!(f, "{n}.")?
            }
            Target::Name(n) => write!(f, "{n}")?,
            Target::Below(n) => write!(f, "*.{n}")?,
        }
        match (ported, self.ports.first == self.ports.last) {
            (false, _) => Ok(()),
            (true, true) => write!(f, ":{}", self.ports.first),
            (true, false) => write!(f, ":{}-{}", self.ports.first, self.ports.last),
        }
    }
}

/// The protocols a rule may name, as its `PROTO:` prefix.
const PROTOS: [Proto; 3] = [Proto::Tcp, Proto::Udp, Proto::Icmp];

/// Takes a leading `tcp:`, `udp:` or `icmp:`.
fn split_proto(text: &str) -> (Option<Proto>, &str) {
    for p in PROTOS {
        if let Some(rest) = text
            .strip_prefix(p.name())
            .and_then(|r| r.strip_prefix(':'))
        {
            return (Some(p), rest);
        }
    }
    (None, text)
}

/// Splits `TARGET[:PORT]`: brackets first, then a bare IPv6 (two or more colons, no port),
/// else the last colon.
fn split_port(text: &str) -> Result<(&str, Option<&str>), RuleError> {
    if let Some(inner) = text.strip_prefix('[') {
        let (addr, after) = inner.split_once(']').ok_or(RuleError::Brackets)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(RuleError::Brackets)?),
        };
        let (a, _) = addr.split_once('/').unwrap_or((addr, ""));
        if a.parse::<Ipv6Addr>().is_err() {
            return Err(RuleError::NotV6);
        }
        return Ok((addr, port));
    }
    if text.matches(':').count() >= 2 {
        return Ok((text, None));
    }
    match text.rsplit_once(':') {
        Some((t, p)) => Ok((t, Some(p))),
        None => Ok((text, None)),
    }
}

fn parse_target(text: &str) -> Result<Target, RuleError> {
    if let Some((addr, len)) = text.split_once('/') {
        let addr: IpAddr = addr.parse().map_err(|_| RuleError::Target)?;
        let len = parse_len(len, addr)?;
        let cidr = Cidr { addr, len };
        if !cidr.contains(addr) {
            return Err(RuleError::HostBits);
        }
        return Ok(Target::Net(cidr));
    }
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(Target::Net(Cidr::host(addr)));
    }
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    if let Some(domain) = name.strip_prefix("*.") {
        check_name(domain)?;
        return Ok(Target::Below(domain.into()));
    }
    check_name(&name)?;
    Ok(Target::Name(name.into()))
}

fn parse_len(text: &str, addr: IpAddr) -> Result<u8, RuleError> {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match text.parse::<u8>() {
        Ok(len) if len <= max && text.bytes().all(|b| b.is_ascii_digit()) => Ok(len),
        _ => Err(RuleError::PrefixLen),
    }
}

/// A host name: dot-separated labels of letters, digits, `-` and `_` (SRV-style names), each
/// 1-63 long, 253 in all, not all digits in the last label (that is a mistyped address).
fn check_name(name: &str) -> Result<(), RuleError> {
    if name.contains('*') {
        return Err(RuleError::Wildcard);
    }
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(RuleError::Target);
    }
    let label_ok = |l: &str| {
        (1..=MAX_LABEL_LEN).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name.split('.').all(label_ok) {
        return Err(RuleError::Target);
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RuleError::Target);
    }
    Ok(())
}

fn parse_ports(text: &str) -> Result<Ports, RuleError> {
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (parse_port(a)?, parse_port(b)?),
        None => {
            let p = parse_port(text)?;
            (p, p)
        }
    };
    if last < first {
        return Err(RuleError::PortRange);
    }
    Ok(Ports { first, last })
}

fn parse_port(text: &str) -> Result<u16, RuleError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RuleError::Port);
    }
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(RuleError::Port),
    }
}

/// The unspecified address of `ip`'s family (a `/0` network).
pub fn any_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(t: &str) -> Rule {
        Rule::parse(Action::Allow, t).unwrap_or_else(|e| panic!("{t}: {e}"))
    }

    fn err(t: &str) -> RuleError {
        Rule::parse(Action::Deny, t).expect_err(t)
    }

    #[test]
    fn addresses_and_cidrs_with_ports_and_protocols() {
        let r = allow("10.0.0.0/8");
        assert_eq!(r.protos, Protos::ALL);
        assert_eq!(r.ports, Ports::ANY);
        assert_eq!(
            r.target,
            Target::Net(Cidr {
                addr: "10.0.0.0".parse().unwrap(),
                len: 8
            })
        );
        let r = allow("tcp:198.51.100.7:443");
        assert_eq!(r.protos, Protos::one(Proto::Tcp));
        assert_eq!(
            r.ports,
            Ports {
                first: 443,
                last: 443
            }
        );
        assert!(
            r.covers(Proto::Tcp, 443) && !r.covers(Proto::Udp, 443) && !r.covers(Proto::Tcp, 80)
        );
        let r = allow("198.51.100.0/24:8000-8080");
        assert_eq!(r.protos, Protos::PORTED);
        assert!(r.covers(Proto::Udp, 8080) && !r.covers(Proto::Icmp, 0));
        let r = allow("[2001:db8::/32]:53");
        assert_eq!(r.ports.first, 53);
        let r = allow("2001:db8::1");
        assert_eq!(
            r.target,
            Target::Net(Cidr::host("2001:db8::1".parse().unwrap()))
        );
        assert_eq!(allow("udp:[::1]").protos, Protos::one(Proto::Udp));
        assert!(allow("icmp:198.51.100.1").covers(Proto::Icmp, 0));
    }

    #[test]
    fn names_and_wildcards_are_lowercased_without_the_root_dot() {
        assert_eq!(
            allow("PyPI.org.:443").target,
            Target::Name("pypi.org".into())
        );
        assert_eq!(
            allow("*.Debian.org").target,
            Target::Below("debian.org".into())
        );
        assert_eq!(
            allow("_sip._tcp.example.com").target,
            Target::Name("_sip._tcp.example.com".into())
        );
        assert_eq!(allow("localhost").target, Target::Name("localhost".into()));
    }

    #[test]
    fn canonical_text_parses_back_to_the_same_rule() {
        for t in [
            "10.0.0.0/8",
            "tcp:198.51.100.7/32:443",
            "[2001:db8::/32]:53-54",
            "udp:pypi.org:53",
            "*.debian.org:443",
            "icmp:0.0.0.0/0",
            "::/0",
            "udp.:02",
            "tcp.",
            "udp:udp",
        ] {
            let r = allow(t);
            assert_eq!(allow(&r.to_string()), r, "{t} -> {r}");
        }
        assert_eq!(
            allow("tcp:198.51.100.7:443").to_string(),
            "tcp:198.51.100.7/32:443"
        );
        // Found by the policy_file fuzz target: printed as "udp:2", this rule read back as
        // UDP to no target.
        assert_eq!(allow("udp.:02").to_string(), "udp.:2");
    }

    #[test]
    fn every_malformed_rule_has_its_own_error() {
        assert_eq!(err(""), RuleError::Empty);
        assert_eq!(err("   "), RuleError::Empty);
        assert_eq!(err("[2001:db8::1"), RuleError::Brackets);
        assert_eq!(err("[2001:db8::1]x"), RuleError::Brackets);
        assert_eq!(err("[10.0.0.1]:80"), RuleError::NotV6);
        assert_eq!(err("10.0.0.0/33"), RuleError::PrefixLen);
        assert_eq!(err("10.0.0.0/+8"), RuleError::PrefixLen);
        assert_eq!(err("2001:db8::/129"), RuleError::PrefixLen);
        assert_eq!(err("10.0.0.1/8"), RuleError::HostBits);
        assert_eq!(err("10.0.0.256"), RuleError::Target);
        assert_eq!(err("bad..name"), RuleError::Target);
        assert_eq!(err("x/8"), RuleError::Target);
        assert_eq!(err("ex ample.com"), RuleError::Target);
        assert_eq!(err(&"a".repeat(64)), RuleError::Target);
        assert_eq!(err("foo.*.com"), RuleError::Wildcard);
        assert_eq!(err("*"), RuleError::Wildcard);
        assert_eq!(err("**.com"), RuleError::Wildcard);
        assert_eq!(err("example.com:0"), RuleError::Port);
        assert_eq!(err("example.com:65536"), RuleError::Port);
        assert_eq!(err("example.com:"), RuleError::Port);
        assert_eq!(err("example.com:+80"), RuleError::Port);
        assert_eq!(err("example.com:http"), RuleError::Port);
        assert_eq!(err("example.com:90-80"), RuleError::PortRange);
        assert_eq!(err("icmp:example.com:80"), RuleError::IcmpPort);
        assert_eq!(err("sctp:example.com:80"), RuleError::Target);
    }
}
