//! Name rules compiled for lookup: which rules a DNS name falls under.
//! Built by `policy::Rules` whenever the rule list changes; `each` is called once per DNS
//! query and answer passing the forwarder and per learnt name of a new flow's destination,
//! never per packet, and allocates nothing.
//!
//! Shape: two hash maps from a lowercase name to the indices (ascending) of the rules naming
//! it: `exact` for `name` rules, `below` for `*.domain` rules. A lookup probes `exact` once
//! with the name and `below` once per proper suffix (`a.b.example.com` probes
//! `b.example.com`, `example.com`, `com`): at most 127 probes (a 253-octet name has at most
//! 127 labels), however many rules there are.

use std::collections::HashMap;

use super::rule::{Rule, Target};

/// The compiled name rules.
#[derive(Debug, Default, Clone)]
pub struct NameTable {
    exact: HashMap<Box<str>, Vec<u32>>,
    below: HashMap<Box<str>, Vec<u32>>,
}

impl NameTable {
    /// Compiles the name rules of `rules` (address rules are skipped; indices are positions).
    pub fn build(rules: &[Rule]) -> NameTable {
        let mut t = NameTable::default();
        for (idx, rule) in rules.iter().enumerate() {
            let (map, name) = match &rule.target {
                Target::Name(n) => (&mut t.exact, n),
                Target::Below(n) => (&mut t.below, n),
                Target::Net(_) => continue,
            };
            map.entry(name.clone()).or_default().push(idx as u32);
        }
        t
    }

    /// Whether any name rule exists (else DNS needs no look at all).
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.below.is_empty()
    }

    /// Calls `f` with the index of every rule `name` (lowercase, no trailing dot) falls
    /// under, exact rules first, then wildcards from the longest suffix; not sorted.
    pub fn each(&self, name: &str, mut f: impl FnMut(u32)) {
        if self.is_empty() {
            return;
        }
        for &i in self.exact.get(name).into_iter().flatten() {
            f(i);
        }
        let mut rest = name;
        while let Some((_, suffix)) = rest.split_once('.') {
            for &i in self.below.get(suffix).into_iter().flatten() {
                f(i);
            }
            rest = suffix;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::rule::Action;
    use super::*;

    fn table(texts: &[&str]) -> NameTable {
        let rules: Vec<Rule> = texts
            .iter()
            .map(|t| Rule::parse(Action::Allow, t).expect(t))
            .collect();
        NameTable::build(&rules)
    }

    fn hits(t: &NameTable, name: &str) -> Vec<u32> {
        let mut v = Vec::new();
        t.each(name, |i| v.push(i));
        v.sort_unstable();
        v
    }

    #[test]
    fn exact_names_and_wildcards_at_any_depth_but_not_the_apex() {
        let t = table(&[
            "pypi.org",
            "*.debian.org:443",
            "10.0.0.0/8",
            "*.org",
            "deb.debian.org",
        ]);
        assert_eq!(hits(&t, "pypi.org"), [0, 3]);
        assert_eq!(hits(&t, "deb.debian.org"), [1, 3, 4]);
        assert_eq!(hits(&t, "a.b.security.debian.org"), [1, 3]);
        assert_eq!(
            hits(&t, "debian.org"),
            [3],
            "*.debian.org leaves the apex out"
        );
        assert_eq!(hits(&t, "org"), Vec::<u32>::new());
        assert_eq!(hits(&t, "example.com"), Vec::<u32>::new());
        assert_eq!(hits(&t, "xpypi.org"), [3], "no partial-label match");
    }
}
