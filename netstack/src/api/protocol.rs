//! slirp4netns's API socket protocol: one JSON request in, one compact JSON reply out.
//! Called by `api::server` once per connection (and by the `api_request` fuzz target); pure:
//! no I/O, no state, and it never talks to the network stack — `server` carries a parsed
//! `Request` to `ForwardControl` and turns the outcome into a `Reply`.
//! Limits: a request is under `MAX_REQUEST` bytes; JSON nesting is bounded by serde_json's
//! recursion limit (128), so hostile input cannot exhaust the stack.
//!
//! Wire format (slirp4netns api.c, checked against 1.2.0):
//! ```text
//! {"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,
//!                                       "guest_addr":"10.0.2.100","guest_port":80}}
//!     -> {"return":{"id":1}}
//! {"execute":"list_hostfwd"}
//!     -> {"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,
//!                     "guest_addr":"10.0.2.100","guest_port":80}]}      (no "return" wrapper)
//! {"execute":"remove_hostfwd","arguments":{"id":1}}
//!     -> {"return":{}}
//! anything wrong
//!     -> {"error":{"desc":"bad request: ..."}}                          (`RequestError::desc`)
//! ```
//! Where we differ from slirp4netns, on purpose: `host_addr` and `guest_addr` may be IPv6
//! (`"::1"`, `"[::1]"`); a missing `proto` is an error reply, not a NULL dereference; a
//! `host_addr`/`guest_addr` that is present but not a string (nor null) is refused rather than
//! read as "missing"; an explicit `guest_addr` must be the sandbox's own address (we forward to
//! nothing else); ports and ids must be JSON integers in range, not numbers truncated to `int`.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::de::IgnoredAny;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::Addressing;
use crate::forward::{ForwardEntry, ForwardSpec, Transport};
use crate::policy::{EgressError, EgressReply, Rule};

pub use egress::EgressArgument;

/// Requests of this many bytes or more are refused with `TooLarge`: slirp4netns reads into a
/// 4096-byte buffer and refuses a read that fills it (api.c `api_handler`).
pub const MAX_REQUEST: usize = 4096;

/// A request that parsed and whose arguments are valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `add_hostfwd`: start forwarding; the sandbox side is already resolved.
    AddHostfwd(ForwardSpec),
    /// `list_hostfwd`: the forwards in force.
    ListHostfwd,
    /// `remove_hostfwd`: stop the forward with this id (at least 1).
    RemoveHostfwd(u32),
    /// `list_egress`: the egress policy in force (`egress.rs`).
    ListEgress,
    /// `add_egress_rule`: insert a rule before `index` (appended when absent).
    AddEgressRule {
        /// The rule, its action included.
        rule: Rule,
        /// 0-based position.
        index: Option<usize>,
    },
    /// `remove_egress_rule`: remove the rule with this id.
    RemoveEgressRule(u32),
}

/// An argument of `add_hostfwd`, named in the error when it is missing or invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddArgument {
    /// `proto`: "tcp" or "udp".
    Proto,
    /// `host_addr`: an IPv4 or IPv6 address, or empty.
    HostAddr,
    /// `host_port`: an integer 1..=65535.
    HostPort,
    /// `guest_addr`: the sandbox's address of `host_addr`'s family, or empty.
    GuestAddr,
    /// `guest_port`: an integer 1..=65535.
    GuestPort,
}

/// Why a request got an error reply. `desc()` is the exact text slirp4netns sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// Not JSON (or not UTF-8, or JSON followed by more than whitespace).
    Json,
    /// JSON, but not an object.
    NotObject,
    /// No `execute` member, or it is not a string.
    NoExecute,
    /// `execute` names no command we know.
    UnknownExecute,
    /// `MAX_REQUEST` bytes or more.
    TooLarge,
    /// An `add_hostfwd` argument is missing or invalid.
    BadAddArgument(AddArgument),
    /// The forward could not be added (the host port is in use, the stack is gone, ...).
    AddFailed,
    /// `remove_hostfwd`'s `id` is missing, not a positive integer, or names no forward
    /// (slirp4netns answers an unknown id with this one, not with `RemoveFailed`).
    BadRemoveId,
    /// The forward exists but could not be removed (the stack is gone).
    RemoveFailed,
    /// The forwards could not be listed (the stack is gone). Ours: slirp4netns's list cannot
    /// fail, so it has no text for this.
    ListFailed,
    /// An egress command's argument is missing or invalid (ours).
    BadEgressArgument(EgressArgument),
    /// An egress command failed (ours): the command and why.
    EgressFailed(&'static str, EgressError),
}

impl RequestError {
    /// The `desc` of the error reply, byte for byte what slirp4netns sends (the egress
    /// commands are ours).
    pub fn desc(self) -> Cow<'static, str> {
        match self {
            RequestError::BadEgressArgument(a) => Cow::Owned(egress::desc(a)),
            RequestError::EgressFailed(execute, e) => Cow::Owned(egress::failed_desc(execute, e)),
            other => Cow::Borrowed(other.slirp_desc()),
        }
    }

    fn slirp_desc(self) -> &'static str {
        match self {
            RequestError::Json => "bad request: cannot parse JSON",
            RequestError::NotObject => "bad request: json_object() failed",
            RequestError::NoExecute => "bad request: no execute found",
            RequestError::UnknownExecute => "bad request: unknown execute",
            RequestError::TooLarge => "bad request: too large message",
            RequestError::BadAddArgument(arg) => match arg {
                AddArgument::Proto => "bad request: add_hostfwd: bad arguments.proto",
                AddArgument::HostAddr => "bad request: add_hostfwd: bad arguments.host_addr",
                AddArgument::HostPort => "bad request: add_hostfwd: bad arguments.host_port",
                AddArgument::GuestAddr => "bad request: add_hostfwd: bad arguments.guest_addr",
                AddArgument::GuestPort => "bad request: add_hostfwd: bad arguments.guest_port",
            },
            RequestError::AddFailed => "bad request: add_hostfwd: slirp_add_hostfwd failed",
            RequestError::BadRemoveId => "bad request: remove_hostfwd: bad arguments.id",
            RequestError::RemoveFailed => {
                "bad request: remove_hostfwd: slirp_remove_hostfwd failed"
            }
            RequestError::ListFailed => "bad request: list_hostfwd: failed",
            RequestError::BadEgressArgument(_) | RequestError::EgressFailed(..) => {
                "bad request: egress"
            }
        }
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.desc())
    }
}

impl std::error::Error for RequestError {}

/// Whether `bytes` hold a whole request already: a complete JSON value, or input that no more
/// bytes could turn into one (a syntax error). Lets the server answer clients that never
/// half-close. Leading whitespace alone is not complete.
pub fn is_complete(bytes: &[u8]) -> bool {
    let mut values = serde_json::Deserializer::from_slice(bytes).into_iter::<IgnoredAny>();
    match values.next() {
        None => false,
        Some(Ok(_)) => true,
        Some(Err(e)) => !e.is_eof(),
    }
}

/// Parses one request. `addr` supplies the sandbox's addresses: the default `guest_addr`, and
/// the only one an explicit `guest_addr` may name. Checks run in slirp4netns's order (size,
/// JSON, object, execute; then proto, host_addr, host_port, guest_addr, guest_port), so a
/// request with several faults gets the same error from both.
pub fn parse(bytes: &[u8], addr: &Addressing) -> Result<Request, RequestError> {
    if bytes.len() >= MAX_REQUEST {
        return Err(RequestError::TooLarge);
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|_| RequestError::Json)?;
    let Value::Object(request) = value else {
        return Err(RequestError::NotObject);
    };
    let Some(Value::String(execute)) = request.get("execute") else {
        return Err(RequestError::NoExecute);
    };
    let args = request.get("arguments").and_then(Value::as_object);
    if let Some(result) = egress::parse(execute, args) {
        return result;
    }
    match execute.as_str() {
        "add_hostfwd" => parse_add(args, addr)
            .map(Request::AddHostfwd)
            .map_err(RequestError::BadAddArgument),
        "list_hostfwd" => Ok(Request::ListHostfwd),
        "remove_hostfwd" => arg(args, "id")
            .and_then(Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .filter(|&id| id > 0)
            .map(Request::RemoveHostfwd)
            .ok_or(RequestError::BadRemoveId),
        _ => Err(RequestError::UnknownExecute),
    }
}

fn parse_add(
    args: Option<&Map<String, Value>>,
    addr: &Addressing,
) -> Result<ForwardSpec, AddArgument> {
    let proto = match arg(args, "proto").and_then(Value::as_str) {
        Some("tcp") => Transport::Tcp,
        Some("udp") => Transport::Udp,
        _ => return Err(AddArgument::Proto),
    };
    let host_ip = optional_ip(arg(args, "host_addr"))
        .ok_or(AddArgument::HostAddr)?
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let host_port = port(arg(args, "host_port")).ok_or(AddArgument::HostPort)?;
    let sandbox = addr.sandbox_for(host_ip);
    let guest_ip = optional_ip(arg(args, "guest_addr"))
        .ok_or(AddArgument::GuestAddr)?
        .unwrap_or(sandbox);
    if guest_ip != sandbox {
        return Err(AddArgument::GuestAddr);
    }
    let guest_port = port(arg(args, "guest_port")).ok_or(AddArgument::GuestPort)?;
    Ok(ForwardSpec {
        proto,
        host: SocketAddr::new(host_ip, host_port),
        guest: SocketAddr::new(guest_ip, guest_port),
    })
}

/// Member `key` of `arguments`; JSON null counts as absent.
fn arg<'a>(args: Option<&'a Map<String, Value>>, key: &str) -> Option<&'a Value> {
    args?.get(key).filter(|v| !v.is_null())
}

/// An optional address: `Some(None)` when absent or "", `None` when invalid.
fn optional_ip(value: Option<&Value>) -> Option<Option<IpAddr>> {
    match value {
        None => Some(None),
        Some(Value::String(s)) if s.is_empty() => Some(None),
        Some(Value::String(s)) => ip(s).map(Some),
        Some(_) => None,
    }
}

/// "10.0.2.100", "::1", or IPv6 in brackets ("[::1]", as in URLs and `podman -p`).
fn ip(text: &str) -> Option<IpAddr> {
    match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        Some(inner) => inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => text.parse().ok(),
    }
}

/// A port: a JSON integer 1..=65535 (not a string, a float, zero or negative).
fn port(value: Option<&Value>) -> Option<u16> {
    value
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
}

/// What the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `add_hostfwd` succeeded with this id.
    Added(u32),
    /// `list_hostfwd`'s forwards, in the order given.
    Entries(Vec<ForwardEntry>),
    /// `remove_hostfwd` succeeded.
    Removed,
    /// An egress command succeeded.
    Egress(EgressReply),
    /// Any failure.
    Failed(RequestError),
}

#[derive(Serialize)]
struct Return<T> {
    #[serde(rename = "return")]
    value: T,
}

#[derive(Serialize)]
struct Id {
    id: u32,
}

#[derive(Serialize)]
struct Nothing {}

#[derive(Serialize)]
struct Entries {
    entries: Vec<Entry>,
}

/// One forward as slirp4netns lists it; the field order is the wire's.
#[derive(Serialize)]
struct Entry {
    id: u32,
    proto: &'static str,
    host_addr: IpAddr,
    host_port: u16,
    guest_addr: IpAddr,
    guest_port: u16,
}

#[derive(Serialize)]
struct Error {
    error: Desc,
}

#[derive(Serialize)]
struct Desc {
    desc: Cow<'static, str>,
}

impl Reply {
    /// The reply's bytes: compact JSON, no trailing newline (as slirp4netns writes it).
    pub fn to_json(&self) -> Vec<u8> {
        let encoded = match self {
            Reply::Added(id) => serde_json::to_vec(&Return {
                value: Id { id: *id },
            }),
            Reply::Entries(list) => serde_json::to_vec(&Entries {
                entries: list
                    .iter()
                    .map(|e| Entry {
                        id: e.id,
                        proto: e.spec.proto.name(),
                        host_addr: e.spec.host.ip(),
                        host_port: e.spec.host.port(),
                        guest_addr: e.spec.guest.ip(),
                        guest_port: e.spec.guest.port(),
                    })
                    .collect(),
            }),
            Reply::Removed => serde_json::to_vec(&Return { value: Nothing {} }),
            Reply::Egress(reply) => egress::to_json(reply),
            Reply::Failed(e) => serde_json::to_vec(&Error {
                error: Desc { desc: e.desc() },
            }),
        };
        encoded.expect("structs of strings, integers and addresses always serialize to JSON")
    }
}

mod egress;
#[cfg(test)]
mod tests;
