//! `--outbound-addr` and `--outbound-addr6`: the address outbound sockets bind to, given as
//! an address or as an interface name (its first address of the family, through
//! `netstack::hostaddr`, which the launcher uses too), checked to belong to this host so a wrong
//! value fails at start, not per connection. Called by `run` before the fork; the messages keep
//! slirp4netns's wording.

use std::net::IpAddr;

use anyhow::Context;
use netstack::hostaddr::{self, HostAddrError};

use crate::config::Outbound;

/// The address for `flag`'s value `o`, of the IPv6 family if `v6`.
pub fn resolve(flag: &str, o: &Outbound, v6: bool) -> anyhow::Result<IpAddr> {
    let family = if v6 { "IPv6" } else { "IPv4" };
    let ip = match o {
        Outbound::Addr(ip) => *ip,
        Outbound::Interface(name) => match hostaddr::interface_addr(name, v6) {
            Ok(ip) => ip,
            Err(HostAddrError::NoInterface) => {
                anyhow::bail!("{flag}={name}: has to be a valid {family} address or interface name")
            }
            Err(e) => return Err(e).with_context(|| format!("{flag}={name}")),
        },
    };
    hostaddr::check_local(ip)
        .with_context(|| format!("{flag}={ip}: not a usable {family} address of this host"))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn loopback_by_address_and_by_name() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(
            resolve("--outbound-addr", &Outbound::Addr(lo), false).unwrap(),
            lo
        );
        assert_eq!(
            resolve("--outbound-addr", &Outbound::Interface("lo".into()), false).unwrap(),
            lo
        );
    }

    #[test]
    fn unknown_interface_and_foreign_address_fail_naming_the_flag() {
        let e = resolve(
            "--outbound-addr",
            &Outbound::Interface("nosuch0".into()),
            false,
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").starts_with("--outbound-addr=nosuch0: "),
            "{e:#}"
        );
        // 192.0.2.77 (TEST-NET-1) is on no interface here.
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77));
        let e = resolve("--outbound-addr", &Outbound::Addr(ip), false).unwrap_err();
        assert!(
            format!("{e:#}").contains("not a usable IPv4 address"),
            "{e:#}"
        );
    }
}
