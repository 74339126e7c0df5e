//! Kernel mode's nftables table `inet rootless_run`: built as typed JSON with the `nftables`
//! crate and applied by `nft -j -f -` in one transaction. We only ever add to, delete from, or
//! delete our own table; nobody else's table is listed for writing, flushed or changed.
//!
//! Chains (created with the table, shared by every sandbox):
//! - `guard`   filter, prerouting, priority -300 (raw): drops packets from the bridge addressed
//!   to 127.0.0.0/8 before any DNAT, so `route_localnet` on the bridge admits only what our own
//!   DNAT turns into loopback traffic.
//! - `prerouting` nat, dstnat (-100): per sandbox, gateway -> 127.0.0.1 (unless
//!   `--disable-host-loopback`); DNS address port 53 (UDP, TCP) -> the run's own forwarder
//!   (`netstack::dns::SocketFront`: 127.0.0.1:PORT for IPv4, [DNS address]:PORT for IPv6,
//!   which has no route_localnet), added by `dns_objects` once the forwarder runs.
//! - `input` filter (0): per sandbox, rejects what the gateway or DNS address must not serve.
//! - `output` nat, dstnat (-100): per `--publish` forward, the same DNAT as in `prerouting` for
//!   clients on the host itself.
//! - `postrouting` nat, srcnat (100): per sandbox, masquerade of its address leaving by any link
//!   but the bridge (SNAT to the `--outbound-addr[6]` address instead when given); with
//!   `--publish`, SNAT of host-loopback clients to the IPv4 gateway.
//!
//! `--publish` (see `publish_objects`): for each forward, a DNAT of HOSTIP:HOSTPORT (without
//! HOSTIP: any address of the host, `fib daddr type local`) to the sandbox's leased address and
//! port, in `prerouting` for packets that do not come from the bridge and in `output` for local
//! clients. The client's address is kept, except that a client on 127.0.0.0/8 is SNATed to the
//! gateway (a loopback source cannot be routed back to), so it appears inside as 10.0.2.2, as on
//! the rootless path. IPv6 has no route_localnet: `[::1]` is not DNATed (it is refused).
//!
//! Every per-sandbox rule carries the comment `rootless-run owner=PID/START` (the launcher's pid
//! and its start time in clock ticks, /proc/PID/stat field 22), so rules of a run that died
//! without cleaning up are recognised (the pid is gone or was reused) and removed by the next
//! run or `rootless-run --cleanup`. Called by `kernelnet`; no links, no sysctls.

use std::borrow::Cow;
use std::net::IpAddr;

use netstack::dns::Endpoint;

use netstack::forward::ForwardSpec;
use nftables::batch::Batch;
use nftables::expr::{
    Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload, PayloadField,
    Prefix,
};
use nftables::schema::{Chain, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{Match, Operator, Statement, NAT};
use nftables::types::{NfChainType, NfFamily, NfHook};

/// Our table's name (family inet).
pub const TABLE: &str = "rootless_run";
/// Prefix of every owner comment.
pub const OWNER_PREFIX: &str = "rootless-run owner=";
/// DNS port (RFC 1035).
const DNS_PORT: u16 = 53;

/// Who owns a rule: a launcher's pid and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The launcher's pid.
    pub pid: i32,
    /// Its start time (clock ticks after boot).
    pub start: u64,
}

impl Owner {
    /// The comment that tags rules.
    pub fn tag(&self) -> String {
        format!("{OWNER_PREFIX}{}/{}", self.pid, self.start)
    }

    /// Parses a tag written by `tag`.
    pub fn parse(comment: &str) -> Option<Owner> {
        let (pid, start) = comment.strip_prefix(OWNER_PREFIX)?.split_once('/')?;
        Some(Owner {
            pid: pid.parse().ok()?,
            start: start.parse().ok()?,
        })
    }

    /// The owner of process `pid` now, from /proc (None: no such process).
    pub fn of(pid: i32) -> Option<Owner> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces) start at field 3.
        let rest = stat.rsplit_once(')')?.1;
        let start = rest.split_whitespace().nth(19)?.parse().ok()?;
        Some(Owner { pid, start })
    }

    /// Whether the process that wrote this tag still runs.
    pub fn alive(&self) -> bool {
        Owner::of(self.pid) == Some(*self)
    }
}

/// One sandbox's part of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRules {
    /// The bridge's name.
    pub bridge: String,
    /// The sandbox's addresses (IPv4, and IPv6 when configured).
    pub sandbox: Vec<IpAddr>,
    /// The gateway address of each family, in `sandbox`'s order.
    pub gateway: Vec<IpAddr>,
    /// The DNS address of each family, in `sandbox`'s order.
    pub dns: Vec<IpAddr>,
    /// DNAT the gateway to the host's loopback (IPv4 only: IPv6 has no route_localnet).
    pub host_loopback: bool,
    /// Whether the DNS address is served (by `dns_objects`' DNAT); if not, it is refused.
    pub serve_dns: bool,
    /// `--outbound-addr[6]`: the source address leaving traffic is SNATed to, per family;
    /// a family without one is masqueraded.
    pub outbound: Vec<IpAddr>,
    /// `--publish` forwards, their `guest` already the sandbox's leased address.
    pub publish: Vec<ForwardSpec>,
}

fn family_proto(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

fn payload(proto: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(proto),
            field: Cow::Borrowed(field),
        },
    )))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn is(left: Expression<'static>, right: Expression<'static>, op: Operator) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn text(s: impl ToString) -> Expression<'static> {
    Expression::String(Cow::Owned(s.to_string()))
}

fn addr_is(ip: IpAddr, field: &'static str) -> Statement<'static> {
    is(payload(family_proto(ip), field), text(ip), Operator::EQ)
}

fn rule(
    chain: &'static str,
    expr: Vec<Statement<'static>>,
    comment: &str,
) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: NfFamily::INet,
        table: Cow::Borrowed(TABLE),
        chain: Cow::Borrowed(chain),
        expr: Cow::Owned(expr),
        handle: None,
        index: None,
        comment: Some(Cow::Owned(comment.to_owned())),
    })
}

/// The table and its chains, in the order they are added (adding an existing one is a no-op).
pub fn base_objects(bridge: &str, with_guard_rule: bool) -> Vec<NfListObject<'static>> {
    let mut v = vec![NfListObject::Table(Table {
        family: NfFamily::INet,
        name: Cow::Borrowed(TABLE),
        handle: None,
    })];
    for (name, kind, hook, prio) in [
        ("guard", NfChainType::Filter, NfHook::Prerouting, -300),
        ("prerouting", NfChainType::NAT, NfHook::Prerouting, -100),
        ("input", NfChainType::Filter, NfHook::Input, 0),
        ("output", NfChainType::NAT, NfHook::Output, -100),
        ("postrouting", NfChainType::NAT, NfHook::Postrouting, 100),
    ] {
        v.push(NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: Cow::Borrowed(TABLE),
            name: Cow::Borrowed(name),
            _type: Some(kind),
            hook: Some(hook),
            prio: Some(prio),
            ..Default::default()
        }));
    }
    if with_guard_rule {
        v.push(rule(
            "guard",
            vec![
                is(meta(MetaKey::Iifname), text(bridge), Operator::EQ),
                is(
                    payload("ip", "daddr"),
                    Expression::Named(NamedExpression::Prefix(Prefix {
                        addr: Box::new(text("127.0.0.0")),
                        len: 8,
                    })),
                    Operator::EQ,
                ),
                Statement::Drop(None),
            ],
            "rootless-run guard",
        ));
    }
    v
}

/// One sandbox's rules, each tagged with `owner`.
pub fn sandbox_objects(r: &SandboxRules, owner: &Owner) -> Vec<NfListObject<'static>> {
    let tag = owner.tag();
    let from_bridge = || is(meta(MetaKey::Iifname), text(&r.bridge), Operator::EQ);
    let mut v = Vec::new();
    for ((&me, &gw), &dns) in r.sandbox.iter().zip(&r.gateway).zip(&r.dns) {
        let p = family_proto(me);
        let icmp = if me.is_ipv4() { "icmp" } else { "ipv6-icmp" };
        let refuse = |dst: IpAddr| {
            rule(
                "input",
                vec![
                    from_bridge(),
                    addr_is(me, "saddr"),
                    addr_is(dst, "daddr"),
                    is(meta(MetaKey::L4proto), text(icmp), Operator::NEQ),
                    Statement::Reject(None),
                ],
                &tag,
            )
        };
        if r.host_loopback && me.is_ipv4() {
            v.push(rule(
                "prerouting",
                vec![
                    from_bridge(),
                    addr_is(me, "saddr"),
                    addr_is(gw, "daddr"),
                    Statement::DNAT(Some(NAT {
                        addr: Some(text("127.0.0.1")),
                        family: Some(nftables::stmt::NATFamily::IP),
                        port: None,
                        flags: None,
                    })),
                ],
                &tag,
            ));
        } else if !r.host_loopback {
            v.push(refuse(gw));
        }
        if !r.serve_dns {
            v.push(refuse(dns));
        }
        v.push(rule(
            "postrouting",
            vec![
                is(payload(p, "saddr"), text(me), Operator::EQ),
                is(meta(MetaKey::Oifname), text(&r.bridge), Operator::NEQ),
                match r.outbound.iter().find(|o| o.is_ipv4() == me.is_ipv4()) {
                    Some(&out) => Statement::SNAT(Some(NAT {
                        addr: Some(text(out)),
                        family: Some(nat_family(out)),
                        port: None,
                        flags: None,
                    })),
                    None => Statement::Masquerade(None),
                },
            ],
            &tag,
        ));
    }
    v.extend(publish_objects(r, &tag));
    v
}

/// The DNS address's DNAT for one sandbox: for each of its addresses, queries to the DNS
/// address of that family (UDP and TCP port 53) go to the `SocketFront` endpoint of the same
/// family, on the host's loopback (IPv4) or the bridge's own DNS address (IPv6).
pub fn dns_objects(
    bridge: &str,
    pairs: &[(IpAddr, IpAddr, Endpoint)],
    owner: &Owner,
) -> Vec<NfListObject<'static>> {
    let tag = owner.tag();
    let mut v = Vec::new();
    for &(me, dns, ends) in pairs {
        for (l4, to) in [("udp", ends.udp), ("tcp", ends.tcp)] {
            v.push(rule(
                "prerouting",
                vec![
                    is(meta(MetaKey::Iifname), text(bridge), Operator::EQ),
                    addr_is(me, "saddr"),
                    addr_is(dns, "daddr"),
                    is(meta(MetaKey::L4proto), text(l4), Operator::EQ),
                    is(
                        payload("th", "dport"),
                        Expression::Number(u32::from(DNS_PORT)),
                        Operator::EQ,
                    ),
                    Statement::DNAT(Some(NAT {
                        addr: Some(text(to.ip())),
                        family: Some(nat_family(me)),
                        port: Some(Expression::Number(u32::from(to.port()))),
                        flags: None,
                    })),
                ],
                &tag,
            ));
        }
    }
    v
}

fn nat_family(ip: IpAddr) -> nftables::stmt::NATFamily {
    if ip.is_ipv4() {
        nftables::stmt::NATFamily::IP
    } else {
        nftables::stmt::NATFamily::IP6
    }
}

/// The `--publish` rules of one sandbox: per forward a DNAT in `prerouting` (from any link but
/// the bridge) and in `output`; then, if any IPv4 forward exists, the SNAT of loopback clients.
fn publish_objects(r: &SandboxRules, tag: &str) -> Vec<NfListObject<'static>> {
    let mut v = Vec::new();
    for f in &r.publish {
        let host = f.host.ip();
        let mut matches = if host.is_unspecified() {
            vec![
                is(
                    meta(MetaKey::Nfproto),
                    text(if host.is_ipv4() { "ipv4" } else { "ipv6" }),
                    Operator::EQ,
                ),
                is(
                    Expression::Named(NamedExpression::Fib(Fib {
                        result: FibResult::Type,
                        flags: [FibFlag::Daddr].into_iter().collect(),
                    })),
                    text("local"),
                    Operator::EQ,
                ),
            ]
        } else {
            vec![addr_is(host, "daddr")]
        };
        matches.push(is(
            meta(MetaKey::L4proto),
            text(f.proto.name()),
            Operator::EQ,
        ));
        matches.push(is(
            payload("th", "dport"),
            Expression::Number(u32::from(f.host.port())),
            Operator::EQ,
        ));
        let dnat = Statement::DNAT(Some(NAT {
            addr: Some(text(f.guest.ip())),
            family: Some(nat_family(f.guest.ip())),
            port: Some(Expression::Number(u32::from(f.guest.port()))),
            flags: None,
        }));
        let mut pre = vec![is(meta(MetaKey::Iifname), text(&r.bridge), Operator::NEQ)];
        pre.extend(matches.iter().cloned());
        pre.push(dnat.clone());
        v.push(rule("prerouting", pre, tag));
        let mut out = matches;
        if host.is_ipv6() {
            // ::1 cannot leave by the bridge (IPv6 has no route_localnet): leave it refused.
            out.push(is(
                payload("ip6", "saddr"),
                text(std::net::Ipv6Addr::LOCALHOST),
                Operator::NEQ,
            ));
        }
        out.push(dnat);
        v.push(rule("output", out, tag));
    }
    let v4 = r.sandbox.iter().zip(&r.gateway).find(|(s, _)| s.is_ipv4());
    if let (Some((&me, &gw)), true) = (v4, r.publish.iter().any(|f| f.host.is_ipv4())) {
        v.push(rule(
            "postrouting",
            vec![
                is(
                    payload("ip", "saddr"),
                    Expression::Named(NamedExpression::Prefix(Prefix {
                        addr: Box::new(text("127.0.0.0")),
                        len: 8,
                    })),
                    Operator::EQ,
                ),
                addr_is(me, "daddr"),
                is(meta(MetaKey::Oifname), text(&r.bridge), Operator::EQ),
                Statement::SNAT(Some(NAT {
                    addr: Some(text(gw)),
                    family: Some(nat_family(gw)),
                    port: None,
                    flags: None,
                })),
            ],
            tag,
        ));
    }
    v
}

/// The rules in `listing` (our table, as `nft -j list table` prints it) whose owner tag is
/// `stale`: their chain and handle, for deletion.
pub fn owned_rules(listing: &Nftables<'_>, stale: &dyn Fn(&Owner) -> bool) -> Vec<(String, u32)> {
    listing
        .objects
        .iter()
        .filter_map(|o| match o {
            NfObject::ListObject(NfListObject::Rule(r)) => Some(r),
            _ => None,
        })
        .filter(|r| r.table == TABLE)
        .filter_map(|r| {
            let owner = Owner::parse(r.comment.as_deref()?)?;
            Some((stale(&owner), r.chain.to_string(), r.handle?))
        })
        .filter(|(s, _, _)| *s)
        .map(|(_, c, h)| (c, h))
        .collect()
}

/// Whether `listing` has a rule in chain `chain`.
pub fn has_rule_in(listing: &Nftables<'_>, chain: &str) -> bool {
    listing
        .objects
        .iter()
        .any(|o| matches!(o, NfObject::ListObject(NfListObject::Rule(r)) if r.chain == chain))
}

/// The deletion of rule `handle` in `chain`.
pub fn delete_rule(chain: &str, handle: u32) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: NfFamily::INet,
        table: Cow::Borrowed(TABLE),
        chain: Cow::Owned(chain.to_owned()),
        expr: Cow::Owned(Vec::new()),
        handle: Some(handle),
        index: None,
        comment: None,
    })
}

/// The deletion of our table.
pub fn delete_table() -> NfListObject<'static> {
    NfListObject::Table(Table {
        family: NfFamily::INet,
        name: Cow::Borrowed(TABLE),
        handle: None,
    })
}

/// Failure to read or change our table.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` refused the batch (or is missing, or the kernel has no nf_tables).
    #[error("nft cannot apply rootless-run's rules ({0}); does the kernel have nf_tables (CONFIG_NF_TABLES, nft_nat, nft_masq)?")]
    Apply(String),
    /// Listing our table failed.
    #[error("nft cannot list table inet {TABLE} ({0})")]
    List(String),
}

fn short(e: &nftables::helper::NftablesError) -> String {
    let s = match e {
        nftables::helper::NftablesError::NftFailed { stderr, .. } => stderr.clone(),
        other => other.to_string(),
    };
    s.lines()
        .next()
        .unwrap_or("no reason given")
        .trim()
        .to_owned()
}

/// Our table as it is now; `None` when it does not exist.
pub fn list() -> Result<Option<Nftables<'static>>, NftError> {
    let args = ["list", "table", "inet", TABLE];
    match nftables::helper::get_current_ruleset_with_args(nftables::helper::DEFAULT_NFT, args) {
        Ok(n) => Ok(Some(n)),
        Err(nftables::helper::NftablesError::NftFailed { stderr, .. })
            if stderr.contains("No such file or directory") =>
        {
            Ok(None)
        }
        Err(e) => Err(NftError::List(short(&e))),
    }
}

/// Applies `adds` then `deletes` as one transaction.
pub fn apply(
    adds: Vec<NfListObject<'static>>,
    deletes: Vec<NfListObject<'static>>,
) -> Result<(), NftError> {
    let mut batch = Batch::new();
    for o in adds {
        batch.add(o);
    }
    for o in deletes {
        batch.delete(o);
    }
    nftables::helper::apply_ruleset(&batch.to_nftables()).map_err(|e| NftError::Apply(short(&e)))
}

#[cfg(test)]
mod tests;
