//! Extra addresses the stack answers besides `Addressing`'s derived ones, for a sandbox that
//! carries the host's own addressing (the pasta drop-in, `rr-pasta`): its gateway is the
//! host's gateway, its DNS forwarder sits at `--dns-forward ADDR`, and `--map-guest-addr ADDR`
//! reaches the host as itself. Held by `Addressing` (so `is_gateway` and `is_dns` see them) and
//! read by `nat::host_target` and the forwards' `visible_source`. Plain data, fixed capacity
//! (`MAX_ALIASES`), `Copy` like `Addressing`; empty by default, which changes nothing.

use std::net::IpAddr;

/// Most aliases one network carries: a gateway, a DNS and a host address per family, with
/// room to spare.
pub const MAX_ALIASES: usize = 8;

/// What an alias stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasTo {
    /// The gateway: reaches the host's loopback (pasta's gateway address with `--map-gw`).
    Gateway,
    /// The DNS forwarder (pasta's `--dns-forward ADDR`).
    Dns,
    /// This host address, reached as itself (pasta's `--map-guest-addr ADDR`: the host's own
    /// address, which inside the sandbox is the sandbox's).
    Host(IpAddr),
}

/// Why an alias cannot be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AliasError {
    /// All `MAX_ALIASES` slots are taken.
    #[error("more than {MAX_ALIASES} address aliases")]
    Full,
}

/// A small set of `(address, meaning)` pairs; the first entry for an address wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Aliases {
    entries: [Option<(IpAddr, AliasTo)>; MAX_ALIASES],
}

impl Aliases {
    /// Adds `ip` standing for `to`.
    pub fn add(&mut self, ip: IpAddr, to: AliasTo) -> Result<(), AliasError> {
        let free = self
            .entries
            .iter_mut()
            .find(|e| e.is_none())
            .ok_or(AliasError::Full)?;
        *free = Some((ip, to));
        Ok(())
    }

    /// What `ip` stands for, if it is an alias.
    pub fn lookup(&self, ip: IpAddr) -> Option<AliasTo> {
        self.entries
            .iter()
            .flatten()
            .find(|(a, _)| *a == ip)
            .map(|(_, to)| *to)
    }

    /// The first alias of `ip`'s family that reaches the host as itself: the address a host
    /// client the sandbox cannot route back to appears from.
    pub fn host_face_for(&self, ip: IpAddr) -> Option<IpAddr> {
        self.entries.iter().flatten().find_map(|(a, to)| {
            (matches!(to, AliasTo::Host(_)) && a.is_ipv4() == ip.is_ipv4()).then_some(*a)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lookup_finds_the_meaning_and_the_first_entry_wins() {
        let mut a = Aliases::default();
        assert_eq!(a.lookup(ip("169.254.1.1")), None);
        a.add(ip("169.254.1.1"), AliasTo::Dns).unwrap();
        a.add(ip("169.254.1.2"), AliasTo::Host(ip("192.0.2.1")))
            .unwrap();
        a.add(ip("169.254.1.1"), AliasTo::Gateway).unwrap();
        assert_eq!(a.lookup(ip("169.254.1.1")), Some(AliasTo::Dns));
        assert_eq!(
            a.lookup(ip("169.254.1.2")),
            Some(AliasTo::Host(ip("192.0.2.1")))
        );
    }

    #[test]
    fn host_face_is_per_family_and_capacity_is_bounded() {
        let mut a = Aliases::default();
        a.add(ip("169.254.1.2"), AliasTo::Host(ip("192.0.2.1")))
            .unwrap();
        assert_eq!(a.host_face_for(ip("10.0.0.1")), Some(ip("169.254.1.2")));
        assert_eq!(a.host_face_for(ip("::1")), None);
        for _ in 1..MAX_ALIASES {
            a.add(ip("198.51.100.1"), AliasTo::Gateway).unwrap();
        }
        assert_eq!(
            a.add(ip("198.51.100.2"), AliasTo::Dns),
            Err(AliasError::Full)
        );
    }
}
