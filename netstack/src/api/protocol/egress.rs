//! The egress policy's commands on the API socket, in slirp4netns's style (ours, not
//! slirp4netns's): parsing their arguments and writing their replies. Part of `protocol`;
//! pure. The loop carries them out (`policy::EgressControl`).
//!
//! ```text
//! {"execute":"list_egress"}
//!     -> {"return":{"egress":"deny","rules":[{"id":1,"action":"allow","rule":"pypi.org:443"}],
//!                   "allowed":3,"denied":1,"queries_refused":0,"closed":0}}
//! {"execute":"add_egress_rule","arguments":{"action":"deny","rule":"198.51.100.0/24","index":0}}
//!     -> {"return":{"id":2,"closed":1}}       (index optional: appended; closed: open flows
//!                                              the change denied, reset)
//! {"execute":"remove_egress_rule","arguments":{"id":2}}
//!     -> {"return":{"closed":0}}
//! errors: "bad request: add_egress_rule: bad arguments.rule: port must be a number from 1 to
//!          65535", "... bad arguments.action", "... bad arguments.index",
//!          "bad request: remove_egress_rule: bad arguments.id" (also for an unknown id),
//!          "bad request: list_egress: no egress policy in force (...)"
//! ```

use serde::Serialize;
use serde_json::{Map, Value};

use super::{arg, Request, RequestError, Return};
use crate::policy::{Action, EgressError, EgressReply, Rule, RuleError};

/// An argument of an egress command, named in its error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressArgument {
    /// `action`: "allow" or "deny".
    Action,
    /// `rule`: a rule in the command line's grammar.
    Rule(RuleError),
    /// `index`: a non-negative integer.
    Index,
    /// `id`: a positive integer naming a rule.
    Id,
}

/// The egress command `execute` names, if it names one.
pub fn parse(
    execute: &str,
    args: Option<&Map<String, Value>>,
) -> Option<Result<Request, RequestError>> {
    let bad = |a| RequestError::BadEgressArgument(a);
    Some(match execute {
        "list_egress" => Ok(Request::ListEgress),
        "add_egress_rule" => parse_add(args).map_err(bad),
        "remove_egress_rule" => arg(args, "id")
            .and_then(Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .filter(|&id| id > 0)
            .map(Request::RemoveEgressRule)
            .ok_or(bad(EgressArgument::Id)),
        _ => return None,
    })
}

fn parse_add(args: Option<&Map<String, Value>>) -> Result<Request, EgressArgument> {
    let action = arg(args, "action")
        .and_then(Value::as_str)
        .and_then(Action::parse)
        .ok_or(EgressArgument::Action)?;
    let text = arg(args, "rule")
        .and_then(Value::as_str)
        .ok_or(EgressArgument::Rule(RuleError::Empty))?;
    let rule = Rule::parse(action, text).map_err(EgressArgument::Rule)?;
    let index = match arg(args, "index") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|i| usize::try_from(i).ok())
                .ok_or(EgressArgument::Index)?,
        ),
    };
    Ok(Request::AddEgressRule { rule, index })
}

/// The `desc` of an egress argument error.
pub fn desc(arg: EgressArgument) -> String {
    match arg {
        EgressArgument::Action => "bad request: add_egress_rule: bad arguments.action".into(),
        EgressArgument::Rule(e) => format!("bad request: add_egress_rule: bad arguments.rule: {e}"),
        EgressArgument::Index => "bad request: add_egress_rule: bad arguments.index".into(),
        EgressArgument::Id => "bad request: remove_egress_rule: bad arguments.id".into(),
    }
}

/// The `desc` of a failed egress command.
pub fn failed_desc(execute: &str, error: EgressError) -> String {
    match error {
        EgressError::UnknownId(_) => desc(EgressArgument::Id),
        other => format!("bad request: {execute}: {other}"),
    }
}

#[derive(Serialize)]
struct Listing {
    egress: &'static str,
    rules: Vec<ListedRule>,
    allowed: u64,
    denied: u64,
    queries_refused: u64,
    closed: u64,
}

#[derive(Serialize)]
struct ListedRule {
    id: u32,
    action: &'static str,
    rule: String,
}

#[derive(Serialize)]
struct Added {
    id: u32,
    closed: usize,
}

#[derive(Serialize)]
struct Closed {
    closed: usize,
}

/// The reply to a successful egress command: `{"return":...}`, fields in the order above.
pub fn to_json(reply: &EgressReply) -> serde_json::Result<Vec<u8>> {
    let wrap = |value| serde_json::to_vec(&Return { value });
    match reply {
        EgressReply::Listing {
            default,
            rules,
            stats,
            ..
        } => wrap(Body::Listing(Listing {
            egress: default.name(),
            rules: rules
                .iter()
                .map(|e| ListedRule {
                    id: e.id,
                    action: e.rule.action.name(),
                    rule: e.rule.to_string(),
                })
                .collect(),
            allowed: stats.allowed,
            denied: stats.denied,
            queries_refused: stats.queries_refused,
            closed: stats.closed,
        })),
        EgressReply::Added { id, closed } => wrap(Body::Added(Added {
            id: *id,
            closed: *closed,
        })),
        EgressReply::Removed { closed } => wrap(Body::Closed(Closed { closed: *closed })),
    }
}

/// The three reply bodies, serialized as the one they hold.
#[derive(Serialize)]
#[serde(untagged)]
enum Body {
    Listing(Listing),
    Added(Added),
    Closed(Closed),
}
