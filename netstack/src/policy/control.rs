//! Changing the policy at run time: the requests the API socket carries to the event loop
//! (list, add, remove rules) and their answers. The loop owns the change because it also
//! closes the open flows a change denies (`event_loop::policy`). Plain data and one trait;
//! `command::Control` implements it over the command channel.

use super::{Action, PolicyStats, Rule, RuleEntry};

/// A runtime change or question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressRequest {
    /// The rules in force, the default and the counters.
    List,
    /// Insert `rule` before position `index` (appended when `None`).
    Add {
        /// The rule (its action included).
        rule: Rule,
        /// 0-based position; past the end appends.
        index: Option<usize>,
    },
    /// Remove the rule with this id.
    Remove(u32),
}

/// The answer to an `EgressRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressReply {
    /// The policy in force.
    Listing {
        /// Default action.
        default: Action,
        /// Rules in order.
        rules: Vec<RuleEntry>,
        /// Counters so far.
        stats: PolicyStats,
        /// Flows closed by this request (0 for a list).
        closed: usize,
    },
    /// The new rule's id, and how many open flows it closed.
    Added {
        /// Id of the new rule.
        id: u32,
        /// Open flows now denied and closed.
        closed: usize,
    },
    /// The rule was removed; open flows it alone allowed were closed.
    Removed {
        /// Open flows now denied and closed.
        closed: usize,
    },
}

/// Why an `EgressRequest` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// The stack runs without a policy.
    #[error("no egress policy in force (start with --egress, --allow, --deny, --policy, --no-lan, --no-host or --log-egress)")]
    NoPolicy,
    /// No rule has this id.
    #[error("no rule with id {0}")]
    UnknownId(u32),
    /// The stack is not running.
    #[error("the network stack is not running")]
    StackGone,
}

/// Something that can carry `EgressRequest`s to the stack.
pub trait EgressControl {
    /// Carries `req` and returns the answer. The default: there is no policy to change.
    fn egress(&self, req: EgressRequest) -> Result<EgressReply, EgressError> {
        let _ = req;
        Err(EgressError::NoPolicy)
    }
}
