//! pasta's port forwarding specs (`-t`, `-u`, `-T`, `-U` SPEC), parsed into the ports to bind:
//! `none`; `auto`, `all` and exclusions only (refused with the reason: see `PortsError`); or
//! `[ADDR[%IF]/]ITEM[,ITEM]...` where ITEM is `PORT[-END][:PORT[-END]]` (the ports to listen
//! on, then the ports they reach) or `~PORT[-END]` (excluded from the ports listed).
//! As in pasta (conf.c `conf_ports`): `ADDR/` and `%IF/` are for `-t`/`-u` only (`Side::Ns`
//! refuses them); `all` is refused, as pasta refuses it ("only allowed for passt"); a spec of
//! exclusions only means "every non-ephemeral port but these", one socket per port and
//! family (ports outside net.ipv4.ip_local_port_range: some 75 000 sockets here), refused
//! rather than bound.
//! Called by `cli` once per option; pure, no I/O. Ranges are expanded here (at most 65535
//! entries per spec) because each port is one socket.

use std::net::IpAddr;

/// Longest interface name (IFNAMSIZ, include/uapi/linux/if.h, less its NUL).
pub const IFNAME_MAX: usize = 15;

/// One forwarded port: port `host` (on `addr` and `ifname`, or everywhere) reaches `guest`.
/// For `-T`/`-U`, `host` is the namespace's port and `guest` the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap {
    /// The address to bind; `None`: every address of both families.
    pub addr: Option<IpAddr>,
    /// `%IF`: the interface to bind to (SO_BINDTODEVICE).
    pub ifname: Option<String>,
    /// The port listened on.
    pub host: u16,
    /// The port it reaches.
    pub guest: u16,
}

/// Which option a SPEC came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `-t`/`-u`: host to namespace; addresses and interfaces allowed.
    Host,
    /// `-T`/`-U`: namespace to host; ports only.
    Ns,
}

/// What one SPEC asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// `none`: forward nothing.
    None,
    /// Listed ports.
    List(Vec<PortMap>),
}

/// Why a SPEC is refused; the message follows "OPTION SPEC: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortsError {
    /// `auto`: forwarding ports as they get bound.
    #[error("forwarding the ports bound in the namespace ('auto') is not supported; list them")]
    Auto,
    /// `all`: pasta itself refuses it.
    #[error(
        "'all' port forwarding is only allowed for passt (pasta refuses it too); list the ports"
    )]
    All,
    /// Exclusions only: every non-ephemeral port but these.
    #[error(
        "exclusions alone mean every non-ephemeral port, one socket per port and family: not \
         supported; list the ports"
    )]
    ExcludeOnly,
    /// `ADDR/` or `%IF/` with `-T`/`-U` (pasta: "Invalid port specifier").
    #[error("an address or interface is only allowed with -t and -u")]
    NsAddress,
    /// The interface name is empty or longer than IFNAMSIZ allows.
    #[error("bad interface name '{0}'")]
    Interface(String),
    /// The address before '/' does not parse.
    #[error("bad address '{0}'")]
    Address(String),
    /// A port or range does not parse, or is 0.
    #[error("bad port or range '{0}'")]
    Port(String),
    /// `A-B:C-D` with ranges of different lengths, or a reversed range.
    #[error("mismatched port range '{0}'")]
    Range(String),
}

/// Parses one SPEC given to an option of `side`.
pub fn parse(spec: &str, side: Side) -> Result<PortSpec, PortsError> {
    match spec {
        "none" => return Ok(PortSpec::None),
        "auto" => return Err(PortsError::Auto),
        "all" => return Err(PortsError::All),
        _ => {}
    }
    let (bind, list) = match spec.rsplit_once('/') {
        Some(_) if side == Side::Ns => return Err(PortsError::NsAddress),
        Some((a, rest)) => (parse_bind(a)?, rest),
        None => ((None, None), spec),
    };
    let mut maps = Vec::new();
    let mut excluded = Vec::new();
    for item in list.split(',') {
        match item.strip_prefix('~') {
            Some(ex) => excluded.push(range(ex)?),
            None => maps.extend(item_maps(item, &bind)?),
        }
    }
    if maps.is_empty() {
        return Err(PortsError::ExcludeOnly);
    }
    maps.retain(|m| !excluded.iter().any(|&(lo, hi)| (lo..=hi).contains(&m.host)));
    Ok(PortSpec::List(maps))
}

/// What to bind to: an address and an interface.
type Bind = (Option<IpAddr>, Option<String>);

/// `ADDR`, `ADDR%IF` or `%IF` (before the '/'); `None`s for an empty address.
fn parse_bind(text: &str) -> Result<Bind, PortsError> {
    let (addr, ifname) = match text.split_once('%') {
        Some((a, i)) => (a, Some(interface(i)?)),
        None => (text, None),
    };
    if addr.is_empty() {
        return Ok((None, ifname));
    }
    let bare = addr.trim_start_matches('[').trim_end_matches(']');
    let ip = bare.parse().map_err(|_| PortsError::Address(addr.into()))?;
    Ok((Some(ip), ifname))
}

/// An interface name as the kernel takes it: 1 to IFNAMSIZ-1 bytes, no '/', no blank.
fn interface(name: &str) -> Result<String, PortsError> {
    let bad = name.is_empty()
        || name.len() > IFNAME_MAX
        || name.contains(|c: char| c == '/' || c.is_whitespace());
    match bad {
        true => Err(PortsError::Interface(name.into())),
        false => Ok(name.into()),
    }
}

/// `PORT[-END][:PORT[-END]]` expanded to one map per port.
fn item_maps(item: &str, bind: &Bind) -> Result<Vec<PortMap>, PortsError> {
    let (host, guest) = match item.split_once(':') {
        Some((h, g)) => (range(h)?, Some(range(g)?)),
        None => (range(item)?, None),
    };
    let guest = guest.unwrap_or(host);
    if guest.1 - guest.0 != host.1 - host.0 {
        return Err(PortsError::Range(item.into()));
    }
    Ok((host.0..=host.1)
        .zip(guest.0..=guest.1)
        .map(|(h, g)| PortMap {
            addr: bind.0,
            ifname: bind.1.clone(),
            host: h,
            guest: g,
        })
        .collect())
}

/// `PORT` or `PORT-END`, 1..=65535, not reversed.
fn range(text: &str) -> Result<(u16, u16), PortsError> {
    let port = |p: &str| match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(PortsError::Port(text.into())),
    };
    let (lo, hi) = match text.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(text)?;
            (p, p)
        }
    };
    if hi < lo {
        return Err(PortsError::Range(text.into()));
    }
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list_on(spec: &str, side: Side) -> Vec<(Option<IpAddr>, u16, u16)> {
        match parse(spec, side).unwrap() {
            PortSpec::List(m) => m.iter().map(|m| (m.addr, m.host, m.guest)).collect(),
            PortSpec::None => panic!("none"),
        }
    }

    fn list(spec: &str) -> Vec<(Option<IpAddr>, u16, u16)> {
        list_on(spec, Side::Host)
    }

    fn ifname(spec: &str) -> Option<String> {
        match parse(spec, Side::Host).unwrap() {
            PortSpec::List(m) => m[0].ifname.clone(),
            PortSpec::None => panic!("none"),
        }
    }

    #[test]
    fn podmans_specs_parse_with_address_and_ranges() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            list("127.0.0.1/18080-18080:8080-8080"),
            [(Some(lo), 18080, 8080)]
        );
        assert_eq!(
            list("::1/18082-18082:8082-8082"),
            [(Some("::1".parse().unwrap()), 18082, 8082)]
        );
        assert_eq!(list("18081-18081:8080-8080"), [(None, 18081, 8080)]);
        assert_eq!(parse("none", Side::Host), Ok(PortSpec::None));
        assert_eq!(parse("none", Side::Ns), Ok(PortSpec::None));
    }

    #[test]
    fn lists_ranges_and_exclusions_expand_per_port() {
        assert_eq!(list("22"), [(None, 22, 22)]);
        assert_eq!(list("22:23"), [(None, 22, 23)]);
        assert_eq!(list("22,25"), [(None, 22, 22), (None, 25, 25)]);
        assert_eq!(
            list("22-24:32-34"),
            [(None, 22, 32), (None, 23, 33), (None, 24, 34)]
        );
        let ports: Vec<u16> = list("5-25,~10-20").iter().map(|m| m.1).collect();
        assert_eq!(ports, [5, 6, 7, 8, 9, 21, 22, 23, 24, 25]);
        // Exclusions may come first, as pasta marks them before the ranges.
        let ports: Vec<u16> = list("~7,5-8").iter().map(|m| m.1).collect();
        assert_eq!(ports, [5, 6, 8]);
        assert_eq!(list("[::1]/80"), [(Some("::1".parse().unwrap()), 80, 80)]);
    }

    #[test]
    fn namespace_specs_take_ports_mappings_and_exclusions() {
        assert_eq!(
            list_on("8080-8082:9080-9082,~8081", Side::Ns),
            [(None, 8080, 9080), (None, 8082, 9082)]
        );
        assert_eq!(parse("127.0.0.1/80", Side::Ns), Err(PortsError::NsAddress));
        assert_eq!(parse("%lo/80", Side::Ns), Err(PortsError::NsAddress));
    }

    #[test]
    fn interfaces_bind_with_or_without_an_address() {
        assert_eq!(ifname("%lo/80"), Some("lo".into()));
        assert_eq!(list("%lo/80"), [(None, 80, 80)]);
        assert_eq!(ifname("192.0.2.1%ext0/80"), Some("ext0".into()));
        assert_eq!(
            list("192.0.2.1%ext0/80"),
            [(Some("192.0.2.1".parse().unwrap()), 80, 80)]
        );
        assert_eq!(ifname("[::1]%lo/80"), Some("lo".into()));
        assert_eq!(ifname("127.0.0.1/80"), None);
        assert_eq!(
            parse("%/80", Side::Host),
            Err(PortsError::Interface(String::new()))
        );
        assert_eq!(
            parse("%a234567890123456/80", Side::Host),
            Err(PortsError::Interface("a234567890123456".into()))
        );
    }

    #[test]
    fn unsupported_and_malformed_specs_say_why() {
        assert_eq!(parse("auto", Side::Host), Err(PortsError::Auto));
        assert_eq!(parse("~25", Side::Host), Err(PortsError::ExcludeOnly));
        assert_eq!(parse("~25", Side::Ns), Err(PortsError::ExcludeOnly));
        assert_eq!(parse("all", Side::Host), Err(PortsError::All));
        assert_eq!(parse("all", Side::Ns), Err(PortsError::All));
        assert_eq!(
            parse("x/80", Side::Host),
            Err(PortsError::Address("x".into()))
        );
        assert_eq!(parse("0", Side::Host), Err(PortsError::Port("0".into())));
        assert_eq!(
            parse("70000", Side::Host),
            Err(PortsError::Port("70000".into()))
        );
        assert_eq!(
            parse("22-24:32", Side::Host),
            Err(PortsError::Range("22-24:32".into()))
        );
        assert_eq!(
            parse("24-22", Side::Host),
            Err(PortsError::Range("24-22".into()))
        );
    }
}
