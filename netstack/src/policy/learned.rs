//! Addresses opened by DNS answers: which names an address was given for, until when.
//! Filled by `Enforcer::answer` (once per A/AAAA record of an answer to an allowed name) and
//! read by `Enforcer::flow` (once per new flow); the policy then finds the rules of each name.
//! Keeping names rather than rule indices lets rules change at run time without losing what
//! was learnt, and gives the audit log the name a flow was resolved from.
//!
//! Bounds: `MAX_ADDRS` addresses, `MAX_NAMES` names per address. A full address list drops
//! its soonest-expiring name; a full table first forgets what has expired, then the address
//! whose names expire first (a scan of the table, only when it is full). Expired entries are
//! otherwise ignored on lookup and forgotten by `purge`, which the event loop runs on its
//! timer. Allocates one entry per new address; never on lookup.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// Most addresses remembered: far more than a sandbox resolves in a TTL's time.
pub const MAX_ADDRS: usize = 65_536;
/// Most names remembered per address (CDN addresses serve many names).
pub const MAX_NAMES: usize = 8;

/// One name an address was given for, and until when.
#[derive(Debug, Clone)]
struct Seen {
    name: Arc<str>,
    until: Instant,
}

/// The learnt addresses.
#[derive(Debug, Default)]
pub struct Learned {
    map: HashMap<IpAddr, Vec<Seen>>,
}

impl Learned {
    /// Records that an answer for `name` gave `ip`, valid until `until`; a later expiry for
    /// a known pair extends it, an earlier one does not shorten it.
    pub fn learn(&mut self, ip: IpAddr, name: &Arc<str>, until: Instant, now: Instant) {
        if !self.map.contains_key(&ip) && self.map.len() >= MAX_ADDRS {
            self.make_room(now);
        }
        let names = self.map.entry(ip).or_default();
        if let Some(seen) = names.iter_mut().find(|s| *s.name == **name) {
            seen.until = seen.until.max(until);
            return;
        }
        let seen = Seen {
            name: name.clone(),
            until,
        };
        if names.len() < MAX_NAMES {
            names.push(seen);
        } else if let Some(soonest) = names.iter_mut().min_by_key(|s| s.until) {
            *soonest = seen;
        }
    }

    /// Calls `f` with each name `ip` was given for that has not expired at `now`.
    pub fn each(&self, ip: IpAddr, now: Instant, mut f: impl FnMut(&Arc<str>)) {
        for seen in self.map.get(&ip).into_iter().flatten() {
            if seen.until > now {
                f(&seen.name);
            }
        }
    }

    /// Forgets everything expired at `now`.
    pub fn purge(&mut self, now: Instant) {
        self.map.retain(|_, names| {
            names.retain(|s| s.until > now);
            !names.is_empty()
        });
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    fn make_room(&mut self, now: Instant) {
        self.purge(now);
        if self.map.len() < MAX_ADDRS {
            return;
        }
        let victim = self
            .map
            .iter()
            .min_by_key(|(_, names)| names.iter().map(|s| s.until).max())
            .map(|(ip, _)| *ip);
        if let Some(ip) = victim {
            self.map.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn names(l: &Learned, ip: &str, now: Instant) -> Vec<String> {
        let mut v = Vec::new();
        l.each(ip.parse().unwrap(), now, |n| v.push(n.to_string()));
        v
    }

    #[test]
    fn an_address_is_open_until_its_expiry_and_extended_not_shortened() {
        let now = Instant::now();
        let s = Duration::from_secs(1);
        let mut l = Learned::default();
        let a: Arc<str> = "a.example".into();
        let ip = "198.51.100.1".parse().unwrap();
        l.learn(ip, &a, now + 10 * s, now);
        l.learn(ip, &a, now + 5 * s, now);
        assert_eq!(names(&l, "198.51.100.1", now + 9 * s), ["a.example"]);
        assert!(names(&l, "198.51.100.1", now + 10 * s).is_empty());
        assert!(names(&l, "198.51.100.2", now).is_empty());
        l.purge(now + 11 * s);
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn a_full_name_list_drops_the_soonest_expiring() {
        let now = Instant::now();
        let mut l = Learned::default();
        let ip = "2001:db8::1".parse().unwrap();
        for i in 0..=MAX_NAMES as u64 {
            let n: Arc<str> = format!("n{i}.example").into();
            l.learn(ip, &n, now + Duration::from_secs(100 - i), now);
        }
        let got = names(&l, "2001:db8::1", now);
        assert_eq!(got.len(), MAX_NAMES);
        let dropped = format!("n{}.example", MAX_NAMES - 1);
        assert!(!got.contains(&dropped), "{got:?}");
        assert!(got.contains(&format!("n{MAX_NAMES}.example")));
    }

    #[test]
    fn a_full_table_forgets_the_address_expiring_first() {
        let now = Instant::now();
        let mut l = Learned::default();
        let n: Arc<str> = "x.example".into();
        for i in 0..MAX_ADDRS as u32 {
            let until = now + Duration::from_secs(if i == 0 { 5 } else { 10 + u64::from(i % 7) });
            l.learn(IpAddr::from(std::net::Ipv4Addr::from(i)), &n, until, now);
        }
        l.learn(
            "198.51.100.1".parse().unwrap(),
            &n,
            now + Duration::from_secs(60),
            now,
        );
        assert_eq!(l.len(), MAX_ADDRS);
        assert_eq!(names(&l, "198.51.100.1", now), ["x.example"]);
        assert!(
            names(&l, "0.0.0.0", now).is_empty(),
            "the first to expire went"
        );
    }
}
