//! The policy at run time: the rules (`Policy`), the addresses DNS answers opened
//! (`Learned`), the TTL floor and ceiling, counters and the audit log. The event loop calls
//! `flow` once per new flow; the DNS forwarder and the DNS-over-TCP relay call `query` per
//! query and `answer` per A/AAAA record of an allowed answer; the API socket (through the
//! loop) changes the rules. Shared as `Shared` (one mutex; see the module header of
//! `policy`). Logs each denial at info with the destination and the rule or default.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::learned::Learned;
use super::{Action, Audit, By, Policy, Proto, Verdict};

/// The enforcer as the loop, the DNS relay's threads and the launcher hold it.
pub type Shared = Arc<Mutex<Enforcer>>;

/// How long an answer's addresses stay open: its TTL, clamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlBounds {
    /// Floor: programs cache answers longer than short TTLs say (Java 30 s, browsers 60 s),
    /// and a door closing under them looks like a random failure.
    pub min: Duration,
    /// Ceiling: a day-long TTL should not keep an address open after the name moved.
    pub max: Duration,
}

impl Default for TtlBounds {
    fn default() -> Self {
        TtlBounds {
            min: Duration::from_secs(60),
            max: Duration::from_secs(3600),
        }
    }
}

/// Longest time an answer may keep its addresses open, whatever the bounds say: a week, far
/// beyond any useful ceiling, and far from overflowing an `Instant`.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

impl TtlBounds {
    /// `ttl` seconds, clamped to the bounds (and to `MAX_TTL`).
    pub fn clamp(&self, ttl: u32) -> Duration {
        let max = self.max.max(self.min).min(MAX_TTL);
        Duration::from_secs(u64::from(ttl)).clamp(self.min.min(max), max)
    }
}

/// What the policy decided over the run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PolicyStats {
    /// New flows allowed.
    pub allowed: u64,
    /// New flows denied.
    pub denied: u64,
    /// DNS queries answered REFUSED.
    pub queries_refused: u64,
    /// Addresses opened by DNS answers (records, counting repeats).
    pub learned: u64,
    /// Open flows closed because a rule change denied them.
    pub closed: u64,
}

/// The policy at run time.
#[derive(Debug)]
pub struct Enforcer {
    policy: Policy,
    learned: Learned,
    ttl: TtlBounds,
    stats: PolicyStats,
    audit: Option<Audit>,
}

impl Enforcer {
    /// An enforcer of `policy`, logging flows to `audit` when given.
    pub fn new(policy: Policy, ttl: TtlBounds, audit: Option<Audit>) -> Enforcer {
        Enforcer {
            policy,
            learned: Learned::default(),
            ttl,
            stats: PolicyStats::default(),
            audit,
        }
    }

    /// This enforcer, shared.
    pub fn shared(self) -> Shared {
        Arc::new(Mutex::new(self))
    }

    /// Locks `shared`; a panic elsewhere while holding it leaves consistent data (every
    /// update is a single assignment or push), so poisoning is ignored.
    pub fn lock(shared: &Shared) -> MutexGuard<'_, Enforcer> {
        shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The rules.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The rules, to change (the caller then re-checks open flows with `recheck`).
    pub fn policy_mut(&mut self) -> &mut Policy {
        &mut self.policy
    }

    /// Counters.
    pub fn stats(&self) -> PolicyStats {
        self.stats
    }

    /// The verdict on `proto` to `dst` without counting or logging it.
    pub fn judge(&self, proto: Proto, dst: SocketAddr, now: Instant) -> Verdict {
        let (ip, port) = (dst.ip(), dst.port());
        let mut best = self.policy.addrs.first(proto, ip, port);
        let mut via: Option<Arc<str>> = None;
        let rules = &self.policy.entries;
        self.learned.each(ip, now, |name| {
            self.policy.names.each(name, |i| {
                let covers = rules
                    .get(i as usize)
                    .is_some_and(|e| e.rule.covers(proto, port));
                if covers && best.map_or(true, |b| i < b) {
                    best = Some(i);
                    via = Some(name.clone());
                }
            });
        });
        self.policy.verdict(best, via)
    }

    /// Judges a new flow of `proto` to `dst`: counts it, logs a denial at info and writes
    /// the audit line.
    pub fn flow(&mut self, proto: Proto, dst: SocketAddr, now: Instant) -> Verdict {
        let v = self.judge(proto, dst, now);
        if v.allowed() {
            self.stats.allowed += 1;
        } else {
            self.stats.denied += 1;
            tracing::info!(proto = proto.name(), dst = %dst, name = v.name.as_deref(),
                           rule = %self.policy.describe(v.by), "egress denied");
        }
        if let Some(audit) = self.audit.as_mut() {
            let rule = self.policy.describe(v.by);
            audit.flow(proto, dst, &v, &rule);
        }
        v
    }

    /// Re-judges an open flow after a rule change; counts it when now denied.
    pub fn recheck(&mut self, proto: Proto, dst: SocketAddr, now: Instant) -> bool {
        let v = self.judge(proto, dst, now);
        if !v.allowed() {
            self.stats.closed += 1;
            tracing::info!(proto = proto.name(), dst = %dst,
                           rule = %self.policy.describe(v.by), "egress now denied; flow closed");
            if let Some(audit) = self.audit.as_mut() {
                let rule = self.policy.describe(v.by);
                audit.closed(proto, dst, &v, &rule);
            }
        }
        v.allowed()
    }

    /// Whether a DNS query for `name` (lowercase, no trailing dot; `None` for a name no rule
    /// can match) may go upstream; counts and logs a refusal.
    pub fn query(&mut self, name: Option<&str>) -> bool {
        let v = match name {
            Some(n) => self.policy.query(n),
            None => self.policy.verdict(None, None),
        };
        if !v.allowed() {
            self.stats.queries_refused += 1;
            tracing::info!(name, rule = %self.policy.describe(v.by), "dns query refused");
        }
        v.allowed()
    }

    /// Records that an allowed answer for `name` gave `ip` with `ttl` seconds. Only names
    /// some rule names are remembered: without one, the address could open nothing.
    pub fn answer(&mut self, name: &Arc<str>, ip: IpAddr, ttl: u32, now: Instant) {
        let mut named = false;
        self.policy.names.each(name, |_| named = true);
        if !named {
            return;
        }
        self.stats.learned += 1;
        let until = now + self.ttl.clamp(ttl);
        self.learned.learn(ip, name, until, now);
        tracing::debug!(%name, %ip, ttl, "egress: address learnt from dns");
    }

    /// Forgets expired answers.
    pub fn purge(&mut self, now: Instant) {
        self.learned.purge(now);
    }

    /// Whether the policy has anything to say about DNS (a name rule, or a deny default).
    pub fn watches_dns(&self) -> bool {
        self.policy.has_names() || self.policy.default == Action::Deny
    }

    /// Addresses currently opened by DNS answers.
    pub fn learned_count(&self) -> usize {
        self.learned.len()
    }

    /// `By` in words (see `Policy::describe`).
    pub fn describe(&self, by: By) -> String {
        self.policy.describe(by)
    }
}
