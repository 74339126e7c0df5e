//! Egress policy: which destinations the sandbox may reach, by address block, protocol, port
//! and DNS name. `--allow`/`--deny` rules (first match wins, in order) and a default
//! (`--egress allow|deny`) for what matches none. See docs/egress.md for the user's view.
//!
//! # Theory of operation
//!
//! `Policy` holds the rules and their compiled forms: `table::AddrTable` for address rules,
//! `names::NameTable` for name rules, rebuilt whenever the list changes (start, API socket).
//! `Enforcer` (enforcer.rs) adds what the run learns: the addresses DNS answers gave for
//! names (`learned::Learned`, kept for the answer's TTL clamped to a floor and a ceiling),
//! counters, and the audit log (`audit.rs`). The event loop asks it once per new flow; the
//! DNS forwarder once per query (a name no rule allows is answered REFUSED and never reaches
//! the upstream) and once per answer (its A/AAAA records open their addresses for the rules
//! of the question's name). Nothing here runs per packet.
//!
//! A flow's verdict: the first rule, by position, among (a) address rules whose block holds
//! the destination and which cover its protocol and port, and (b) name rules covering the
//! protocol and port whose name an unexpired answer gave the destination for; the default
//! when there is none. A query's verdict: allowed when a name rule allowing the name comes
//! before any deny rule for the whole name (all protocols and ports); refused when such a
//! deny comes first; the default when no name rule names it. A deny for part of a name
//! (`--deny tcp:x.org:22`) does not refuse the query: its flows are judged by port.
//!
//! The enforcer is shared, behind one mutex, by the event loop and the DNS-over-TCP relay's
//! threads (`Shared`); the lock is taken per new flow and per DNS message, never per packet,
//! and is uncontended but for DNS over TCP, which is rare.

mod audit;
pub mod control;
mod enforcer;
pub mod file;
mod learned;
mod names;
pub mod presets;
pub mod rule;
mod table;

pub use audit::Audit;
pub use control::{EgressControl, EgressError, EgressReply, EgressRequest};
pub use enforcer::{Enforcer, PolicyStats, Shared, TtlBounds, MAX_TTL};
pub use rule::{Action, Proto, Rule, RuleError};

use std::fmt;
use std::sync::Arc;

use names::NameTable;
use table::AddrTable;

/// A rule in force, with the id the API socket names it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleEntry {
    /// Stable id: 1, 2, ... in the order rules were added, never reused.
    pub id: u32,
    /// The rule.
    pub rule: Rule,
}

/// What decided a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// The rule with this id.
    Rule(u32),
    /// No rule matched: the default.
    Default,
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Allow or deny.
    pub action: Action,
    /// The rule or default that decided.
    pub by: By,
    /// The name the destination was resolved from, when a name rule decided.
    pub name: Option<Arc<str>>,
}

impl Verdict {
    /// Whether the flow or query may go on.
    pub fn allowed(&self) -> bool {
        self.action == Action::Allow
    }
}

/// The rules in force and the default, compiled for lookup.
#[derive(Debug, Clone)]
pub struct Policy {
    entries: Vec<RuleEntry>,
    default: Action,
    addrs: AddrTable,
    names: NameTable,
    next_id: u32,
}

impl Policy {
    /// A policy of `rules`, in order, with `default` for what matches none.
    pub fn new(rules: Vec<Rule>, default: Action) -> Policy {
        let mut p = Policy {
            entries: Vec::with_capacity(rules.len()),
            default,
            addrs: AddrTable::default(),
            names: NameTable::default(),
            next_id: 1,
        };
        for rule in rules {
            let id = p.take_id();
            p.entries.push(RuleEntry { id, rule });
        }
        p.rebuild();
        p
    }

    fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        id
    }

    fn rebuild(&mut self) {
        let rules: Vec<Rule> = self.entries.iter().map(|e| e.rule.clone()).collect();
        self.addrs = AddrTable::build(&rules);
        self.names = NameTable::build(&rules);
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[RuleEntry] {
        &self.entries
    }

    /// The default action.
    pub fn default_action(&self) -> Action {
        self.default
    }

    /// Inserts `rule` before position `at` (appended when `None` or past the end); its id.
    pub fn insert(&mut self, at: Option<usize>, rule: Rule) -> u32 {
        let id = self.take_id();
        let at = at.unwrap_or(usize::MAX).min(self.entries.len());
        self.entries.insert(at, RuleEntry { id, rule });
        self.rebuild();
        id
    }

    /// Removes the rule with id `id`; whether it existed.
    pub fn remove(&mut self, id: u32) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.id != id);
        let removed = self.entries.len() != before;
        if removed {
            self.rebuild();
        }
        removed
    }

    /// Sets the default action.
    pub fn set_default(&mut self, action: Action) {
        self.default = action;
    }

    /// Whether a query for `name` (lowercase, no trailing dot) may go upstream.
    pub fn query(&self, name: &str) -> Verdict {
        let mut allow: Option<u32> = None;
        let mut deny: Option<u32> = None;
        self.names.each(name, |i| {
            let Some(e) = self.entries.get(i as usize) else {
                return;
            };
            match e.rule.action {
                Action::Allow => allow = Some(allow.map_or(i, |a| a.min(i))),
                Action::Deny if e.rule.is_whole() => deny = Some(deny.map_or(i, |d| d.min(i))),
                Action::Deny => {}
            }
        });
        let decider = match (allow, deny) {
            (Some(a), Some(d)) => Some(a.min(d)),
            (a, d) => a.or(d),
        };
        self.verdict(decider, Some(Arc::from(name)).filter(|_| decider.is_some()))
    }

    /// The verdict of the rule at `index`, or the default.
    fn verdict(&self, index: Option<u32>, name: Option<Arc<str>>) -> Verdict {
        match index.and_then(|i| self.entries.get(i as usize)) {
            Some(e) => Verdict {
                action: e.rule.action,
                by: By::Rule(e.id),
                name,
            },
            None => Verdict {
                action: self.default,
                by: By::Default,
                name: None,
            },
        }
    }

    /// `By` in words, for logs: `deny 10.0.0.0/8` or `default deny`.
    pub fn describe(&self, by: By) -> String {
        match by {
            By::Rule(id) => match self.entries.iter().find(|e| e.id == id) {
                Some(e) => format!("{} {}", e.rule.action.name(), e.rule),
                None => format!("rule {id} (removed)"),
            },
            By::Default => format!("default {}", self.default.name()),
        }
    }

    /// Whether any name rule exists (DNS answers need reading only then).
    pub fn has_names(&self) -> bool {
        !self.names.is_empty()
    }
}

impl fmt::Display for Policy {
    /// The policy in the policy file's format: the rules in order, then the default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            writeln!(f, "{} {}", e.rule.action.name(), e.rule)?;
        }
        writeln!(f, "egress {}", self.default.name())
    }
}

#[cfg(test)]
mod tests;
