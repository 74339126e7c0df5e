//! Address rules compiled for lookup: which rule comes first among those whose address block
//! holds a destination and whose protocol and ports cover the flow.
//! Built by `policy::Rules` whenever the rule list changes (O(n log n)); `first` is called
//! once per new flow, never per packet, and allocates nothing.
//!
//! Shape: one hash map per family keyed by (prefix length, network address), plus the list of
//! prefix lengths in use. A lookup masks the destination with each length in use and probes
//! the map: at most 33 probes for IPv4 and 129 for IPv6, however many rules there are. Each
//! block's entry holds, per protocol, the port space cut into ranges labelled with the first
//! rule covering them (a sweep over the rules' port ranges at build time), so the ports cost a
//! binary search: `first` is O(prefix lengths x log(rules per block)), bounded for 100,000
//! rules. Memory: at most 2 ranges per rule per protocol. Measured with 100,000 rules
//! (`cargo run --release -p netstack --example policy_lookup`): see docs/egress.md.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use super::rule::{mask_v4, mask_v6, Proto, Rule, Target};

/// No rule covers this range.
const NONE: u32 = u32::MAX;

/// Multiplier of the block hash (FxHash's, from rustc: a 64-bit odd constant that spreads bits).
const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// The blocks' hasher: a multiply-rotate over the (length, network) key and a finaliser, some
/// times cheaper than SipHash, which matters at up to 129 probes per lookup. Flooding resistance
/// is not needed: the keys in the map are the user's rules, and a lookup's cost is bounded by
/// the probes whatever the destination.
#[derive(Debug, Default, Clone, Copy)]
struct BlockHasher(u64);

impl BlockHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for BlockHasher {
    /// MurmurHash3's 64-bit finaliser: the map takes its bucket from the low bits, which a
    /// bare multiply leaves alike for networks that differ only in their high bits.
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u128(&mut self, n: u128) {
        self.add(n as u64);
        self.add((n >> 64) as u64);
    }
}

/// Map from (prefix length, network) to a block.
type Blocks = HashMap<(u8, u128), Block, BuildHasherDefault<BlockHasher>>;

/// The port space of one protocol in one block: `starts[i]..starts[i+1]` is decided by
/// `first[i]` (a rule index, or `NONE`).
#[derive(Debug, Default, Clone)]
struct PortMap {
    starts: Vec<u16>,
    first: Vec<u32>,
}

impl PortMap {
    /// Builds the map from (rule index, first port, last port), by a sweep over range ends.
    fn build(ranges: &[(u32, u16, u16)]) -> PortMap {
        let mut edges: Vec<(u32, bool, u32)> = Vec::with_capacity(ranges.len() * 2);
        for &(idx, a, b) in ranges {
            edges.push((u32::from(a), true, idx));
            edges.push((u32::from(b) + 1, false, idx));
        }
        edges.sort_unstable_by_key(|e| e.0);
        let mut active: BTreeMap<u32, usize> = BTreeMap::new();
        let mut map = PortMap::default();
        let mut i = 0;
        while i < edges.len() {
            let at = edges[i].0;
            while i < edges.len() && edges[i].0 == at {
                let (_, open, idx) = edges[i];
                let n = active.entry(idx).or_insert(0);
                if open {
                    *n += 1;
                } else {
                    *n -= 1;
                    if *n == 0 {
                        active.remove(&idx);
                    }
                }
                i += 1;
            }
            if at > u32::from(u16::MAX) {
                break;
            }
            let first = active.keys().next().copied().unwrap_or(NONE);
            if map.first.last() != Some(&first) {
                map.starts.push(at as u16);
                map.first.push(first);
            }
        }
        map
    }

    fn get(&self, port: u16) -> Option<u32> {
        let i = self.starts.partition_point(|&s| s <= port).checked_sub(1)?;
        self.first.get(i).copied().filter(|&f| f != NONE)
    }
}

/// The rules of one address block.
#[derive(Debug, Default, Clone)]
struct Block {
    tcp: PortMap,
    udp: PortMap,
    icmp: Option<u32>,
}

impl Block {
    fn first(&self, proto: Proto, port: u16) -> Option<u32> {
        match proto {
            Proto::Tcp => self.tcp.get(port),
            Proto::Udp => self.udp.get(port),
            Proto::Icmp => self.icmp,
        }
    }
}

/// Blocks of one family, keyed by (prefix length, network as u128).
#[derive(Debug, Default, Clone)]
struct Family {
    lens: Vec<u8>,
    blocks: Blocks,
}

/// The compiled address rules.
#[derive(Debug, Default, Clone)]
pub struct AddrTable {
    v4: Family,
    v6: Family,
}

/// Rule ranges gathered for one block before compiling.
#[derive(Default)]
struct Gather {
    tcp: Vec<(u32, u16, u16)>,
    udp: Vec<(u32, u16, u16)>,
    icmp: Option<u32>,
}

impl AddrTable {
    /// Compiles the address rules of `rules` (name rules are skipped; indices are positions).
    pub fn build(rules: &[Rule]) -> AddrTable {
        let mut v4: HashMap<(u8, u128), Gather> = HashMap::new();
        let mut v6: HashMap<(u8, u128), Gather> = HashMap::new();
        for (idx, rule) in rules.iter().enumerate() {
            let Target::Net(c) = &rule.target else {
                continue;
            };
            let (map, key) = match c.addr {
                IpAddr::V4(a) => (&mut v4, (c.len, u128::from(u32::from(a)))),
                IpAddr::V6(a) => (&mut v6, (c.len, u128::from(a))),
            };
            let g = map.entry(key).or_default();
            let idx = idx as u32;
            let range = (idx, rule.ports.first, rule.ports.last);
            if rule.protos.has(Proto::Tcp) {
                g.tcp.push(range);
            }
            if rule.protos.has(Proto::Udp) {
                g.udp.push(range);
            }
            if rule.protos.has(Proto::Icmp) {
                g.icmp = Some(g.icmp.map_or(idx, |i| i.min(idx)));
            }
        }
        AddrTable {
            v4: compile(v4),
            v6: compile(v6),
        }
    }

    /// The index of the first address rule covering `proto` to `ip`:`port`.
    pub fn first(&self, proto: Proto, ip: IpAddr, port: u16) -> Option<u32> {
        let (fam, bits) = match ip {
            IpAddr::V4(a) => (&self.v4, u128::from(u32::from(a))),
            IpAddr::V6(a) => (&self.v6, u128::from(a)),
        };
        let mut best: Option<u32> = None;
        for &len in &fam.lens {
            let net = match ip {
                IpAddr::V4(_) => bits & u128::from(mask_v4(len)),
                IpAddr::V6(_) => bits & mask_v6(len),
            };
            if let Some(found) = fam
                .blocks
                .get(&(len, net))
                .and_then(|b| b.first(proto, port))
            {
                best = Some(best.map_or(found, |b| b.min(found)));
            }
        }
        best
    }
}

fn compile(gathered: HashMap<(u8, u128), Gather>) -> Family {
    let mut fam = Family::default();
    for (key, g) in gathered {
        if !fam.lens.contains(&key.0) {
            fam.lens.push(key.0);
        }
        let block = Block {
            tcp: PortMap::build(&g.tcp),
            udp: PortMap::build(&g.udp),
            icmp: g.icmp,
        };
        fam.blocks.insert(key, block);
    }
    fam.lens.sort_unstable();
    fam
}

#[cfg(test)]
mod tests {
    use super::super::rule::Action;
    use super::*;

    fn rules(texts: &[&str]) -> Vec<Rule> {
        texts
            .iter()
            .map(|t| Rule::parse(Action::Deny, t).expect(t))
            .collect()
    }

    fn first(t: &AddrTable, p: Proto, dst: &str) -> Option<u32> {
        let sa: std::net::SocketAddr = dst.parse().unwrap();
        t.first(p, sa.ip(), sa.port())
    }

    #[test]
    fn first_matching_rule_wins_across_nested_blocks() {
        let t = AddrTable::build(&rules(&[
            "tcp:198.51.100.7:443",
            "198.51.100.0/24:400-500",
            "198.51.100.0/24",
            "0.0.0.0/0:22",
            "name.example",
        ]));
        assert_eq!(first(&t, Proto::Tcp, "198.51.100.7:443"), Some(0));
        assert_eq!(first(&t, Proto::Udp, "198.51.100.7:443"), Some(1));
        assert_eq!(first(&t, Proto::Tcp, "198.51.100.7:80"), Some(2));
        assert_eq!(first(&t, Proto::Icmp, "198.51.100.9:0"), Some(2));
        assert_eq!(first(&t, Proto::Tcp, "192.0.2.1:22"), Some(3));
        assert_eq!(first(&t, Proto::Tcp, "192.0.2.1:23"), None);
        assert_eq!(first(&t, Proto::Icmp, "192.0.2.1:0"), None);
        assert_eq!(
            first(&t, Proto::Tcp, "[2001:db8::1]:22"),
            None,
            "families apart"
        );
    }

    #[test]
    fn overlapping_port_ranges_take_the_earliest_rule() {
        let t = AddrTable::build(&rules(&[
            "[2001:db8::/32]:1000-2000",
            "[2001:db8::/32]:1-65535",
            "[2001:db8::/32]:1500",
        ]));
        assert_eq!(first(&t, Proto::Tcp, "[2001:db8::5]:1500"), Some(0));
        assert_eq!(first(&t, Proto::Tcp, "[2001:db8::5]:2001"), Some(1));
        assert_eq!(first(&t, Proto::Udp, "[2001:db8::5]:65535"), Some(1));
        assert_eq!(first(&t, Proto::Udp, "[2001:db9::5]:1500"), None);
    }

    #[test]
    fn a_hundred_thousand_rules_still_find_the_right_one() {
        let mut texts: Vec<String> = (0..100_000u32)
            .map(|i| {
                format!(
                    "tcp:{}:{}",
                    std::net::Ipv4Addr::from(0x0a00_0000 + i),
                    1 + i % 60000
                )
            })
            .collect();
        texts.push("0.0.0.0/0".into());
        let rules: Vec<Rule> = texts
            .iter()
            .map(|t| Rule::parse(Action::Deny, t).unwrap())
            .collect();
        let t = AddrTable::build(&rules);
        assert_eq!(first(&t, Proto::Tcp, "10.0.3.232:1001"), Some(1000));
        assert_eq!(first(&t, Proto::Tcp, "10.0.3.232:1002"), Some(100_000));
    }
}
