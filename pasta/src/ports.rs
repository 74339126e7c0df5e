//! pasta's port forwarding specs (`-t`, `-u`, `-T`, `-U` SPEC), parsed into the ports to bind:
//! `none`; `auto` and `all` (refused with the reason: see `PortsError`); or
//! `[ADDR[%IF]/]ITEM[,ITEM]...` where ITEM is `PORT[-END][:PORT[-END]]` (host ports, then the
//! namespace ports they reach) or `~PORT[-END]` (excluded from the ports listed). A spec of
//! exclusions only means "every port but these" to pasta (as `auto`), refused like `auto`.
//! Called by `cli` once per option; pure, no I/O. Ranges are expanded here (at most 65535
//! entries per spec) because each port is one host socket.

use std::net::IpAddr;

/// One forwarded port: host port `host` (on `addr`, or every address) reaches `guest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMap {
    /// The host address to bind; `None`: every address of both families.
    pub addr: Option<IpAddr>,
    /// Host port.
    pub host: u16,
    /// Namespace port.
    pub guest: u16,
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
    /// `auto`, or exclusions only: forwarding ports as they get bound in the namespace.
    #[error("forwarding the ports bound in the namespace ('auto') is not supported; list them")]
    Auto,
    /// `all`: every non-ephemeral port, one socket each.
    #[error("'all' is not supported (one host socket per port); list the ports")]
    All,
    /// `ADDR%IF/`: binding to an interface.
    #[error("binding to an interface ('%{0}') is not supported")]
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

/// Parses one SPEC.
pub fn parse(spec: &str) -> Result<PortSpec, PortsError> {
    match spec {
        "none" => return Ok(PortSpec::None),
        "auto" => return Err(PortsError::Auto),
        "all" => return Err(PortsError::All),
        _ => {}
    }
    let (addr, list) = match spec.rsplit_once('/') {
        Some((a, rest)) => (Some(parse_addr(a)?), rest),
        None => (None, spec),
    };
    let addr = addr.flatten();
    let mut maps = Vec::new();
    let mut excluded = Vec::new();
    for item in list.split(',') {
        match item.strip_prefix('~') {
            Some(ex) => {
                let (lo, hi) = range(ex)?;
                excluded.push((lo, hi));
            }
            None => maps.extend(item_maps(item, addr)?),
        }
    }
    if maps.is_empty() {
        return Err(PortsError::Auto);
    }
    maps.retain(|m| !excluded.iter().any(|&(lo, hi)| (lo..=hi).contains(&m.host)));
    Ok(PortSpec::List(maps))
}

/// `ADDR`, `ADDR%IF` or `%IF` (before the '/'); `None` for an empty address.
fn parse_addr(text: &str) -> Result<Option<IpAddr>, PortsError> {
    if let Some((_, ifname)) = text.split_once('%') {
        return Err(PortsError::Interface(ifname.into()));
    }
    if text.is_empty() {
        return Ok(None);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    bare.parse()
        .map(Some)
        .map_err(|_| PortsError::Address(text.into()))
}

/// `PORT[-END][:PORT[-END]]` expanded to one map per port.
fn item_maps(item: &str, addr: Option<IpAddr>) -> Result<Vec<PortMap>, PortsError> {
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
            addr,
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

    fn list(spec: &str) -> Vec<(Option<IpAddr>, u16, u16)> {
        match parse(spec).unwrap() {
            PortSpec::List(m) => m.iter().map(|m| (m.addr, m.host, m.guest)).collect(),
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
        assert_eq!(parse("none"), Ok(PortSpec::None));
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
        assert_eq!(list("[::1]/80"), [(Some("::1".parse().unwrap()), 80, 80)]);
    }

    #[test]
    fn unsupported_and_malformed_specs_say_why() {
        assert_eq!(parse("auto"), Err(PortsError::Auto));
        assert_eq!(parse("~25"), Err(PortsError::Auto));
        assert_eq!(parse("all"), Err(PortsError::All));
        assert_eq!(
            parse("192.0.2.1%eth0/80"),
            Err(PortsError::Interface("eth0".into()))
        );
        assert_eq!(parse("x/80"), Err(PortsError::Address("x".into())));
        assert_eq!(parse("0"), Err(PortsError::Port("0".into())));
        assert_eq!(parse("70000"), Err(PortsError::Port("70000".into())));
        assert_eq!(parse("22-24:32"), Err(PortsError::Range("22-24:32".into())));
        assert_eq!(parse("24-22"), Err(PortsError::Range("24-22".into())));
    }
}
