//! Verdicts of whole policies: first match across address and name rules, queries, learnt
//! addresses and their expiry, and rule changes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

fn policy(default: Action, rules: &[(Action, &str)]) -> Policy {
    let rules = rules
        .iter()
        .map(|&(a, t)| Rule::parse(a, t).expect(t))
        .collect();
    Policy::new(rules, default)
}

fn enforcer(p: Policy) -> Enforcer {
    let ttl = TtlBounds {
        min: Duration::from_secs(5),
        max: Duration::from_secs(30),
    };
    Enforcer::new(p, ttl, None)
}

fn dst(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

use Action::{Allow, Deny};

#[test]
fn default_applies_when_no_rule_matches_and_rules_win_in_order() {
    let p = policy(
        Deny,
        &[
            (Allow, "tcp:198.51.100.0/24:443"),
            (Deny, "198.51.100.7"),
            (Allow, "198.51.100.7"),
        ],
    );
    let e = enforcer(p);
    let now = Instant::now();
    let v = e.judge(Proto::Tcp, dst("198.51.100.7:443"), now);
    assert_eq!((v.action, v.by), (Allow, By::Rule(1)));
    let v = e.judge(Proto::Tcp, dst("198.51.100.7:80"), now);
    assert_eq!((v.action, v.by), (Deny, By::Rule(2)));
    let v = e.judge(Proto::Udp, dst("198.51.100.8:443"), now);
    assert_eq!((v.action, v.by), (Deny, By::Default));
    assert_eq!(e.describe(By::Rule(2)), "deny 198.51.100.7/32");
    assert_eq!(e.describe(By::Default), "default deny");
}

#[test]
fn a_name_opens_its_answers_addresses_for_its_ports_until_the_ttl() {
    let mut e = enforcer(policy(Deny, &[(Allow, "tcp:pypi.org:443")]));
    let now = Instant::now();
    assert!(e.query(Some("pypi.org")));
    assert!(!e.query(Some("evil.org")));
    assert_eq!(
        e.judge(Proto::Tcp, dst("198.51.100.9:443"), now).action,
        Deny
    );
    let name: Arc<str> = "pypi.org".into();
    e.answer(&name, "198.51.100.9".parse().unwrap(), 1, now);
    let v = e.flow(Proto::Tcp, dst("198.51.100.9:443"), now);
    assert_eq!(
        (v.action, v.by, v.name.as_deref()),
        (Allow, By::Rule(1), Some("pypi.org"))
    );
    assert_eq!(
        e.judge(Proto::Tcp, dst("198.51.100.9:80"), now).action,
        Deny,
        "other port"
    );
    assert_eq!(
        e.judge(Proto::Udp, dst("198.51.100.9:443"), now).action,
        Deny,
        "other proto"
    );
    // TTL 1 s is raised to the 5 s floor; past it the door is shut for new flows.
    assert_eq!(
        e.judge(
            Proto::Tcp,
            dst("198.51.100.9:443"),
            now + Duration::from_secs(4)
        )
        .action,
        Allow
    );
    assert_eq!(
        e.judge(
            Proto::Tcp,
            dst("198.51.100.9:443"),
            now + Duration::from_secs(5)
        )
        .action,
        Deny
    );
    assert_eq!(
        e.stats(),
        PolicyStats {
            allowed: 1,
            denied: 0,
            queries_refused: 1,
            learned: 1,
            closed: 0
        }
    );
}

#[test]
fn ttl_is_clamped_to_floor_and_ceiling() {
    let t = TtlBounds {
        min: Duration::from_secs(60),
        max: Duration::from_secs(3600),
    };
    assert_eq!(t.clamp(0), Duration::from_secs(60));
    assert_eq!(t.clamp(300), Duration::from_secs(300));
    assert_eq!(t.clamp(u32::MAX), Duration::from_secs(3600));
    let wide = TtlBounds {
        min: Duration::from_secs(u64::MAX),
        max: Duration::from_secs(u64::MAX),
    };
    assert_eq!(
        wide.clamp(5),
        MAX_TTL,
        "never past a week, never an Instant overflow"
    );
}

#[test]
fn wildcards_cover_subdomains_and_an_earlier_deny_refuses_the_query() {
    let p = policy(
        Deny,
        &[
            (Deny, "bad.debian.org"),
            (Allow, "*.debian.org:443"),
            (Deny, "tcp:x.org:22"),
            (Allow, "x.org"),
        ],
    );
    assert!(p.query("deb.debian.org").allowed());
    assert!(p.query("a.b.debian.org").allowed());
    assert!(
        !p.query("debian.org").allowed(),
        "the apex is not below itself"
    );
    let v = p.query("bad.debian.org");
    assert_eq!((v.action, v.by), (Deny, By::Rule(1)));
    assert!(
        p.query("x.org").allowed(),
        "a deny for one port leaves the name resolvable"
    );
    let mut e = enforcer(p);
    let now = Instant::now();
    e.answer(&"x.org".into(), "198.51.100.3".parse().unwrap(), 300, now);
    assert_eq!(
        e.judge(Proto::Tcp, dst("198.51.100.3:22"), now).by,
        By::Rule(3)
    );
    assert_eq!(
        e.judge(Proto::Tcp, dst("198.51.100.3:23"), now).by,
        By::Rule(4)
    );
}

#[test]
fn an_address_rule_before_a_name_rule_wins_and_the_other_way_round() {
    let mut e = enforcer(policy(
        Allow,
        &[(Deny, "10.0.0.0/8"), (Allow, "intranet.example")],
    ));
    let now = Instant::now();
    e.answer(
        &"intranet.example".into(),
        "10.1.2.3".parse().unwrap(),
        300,
        now,
    );
    assert_eq!(e.judge(Proto::Tcp, dst("10.1.2.3:80"), now).by, By::Rule(1));
    let mut e = enforcer(policy(
        Allow,
        &[(Allow, "intranet.example"), (Deny, "10.0.0.0/8")],
    ));
    e.answer(
        &"intranet.example".into(),
        "10.1.2.3".parse().unwrap(),
        300,
        now,
    );
    let v = e.judge(Proto::Tcp, dst("10.1.2.3:80"), now);
    assert_eq!((v.action, v.by), (Allow, By::Rule(1)));
    assert_eq!(e.judge(Proto::Tcp, dst("10.1.2.4:80"), now).action, Deny);
}

#[test]
fn answers_for_names_no_rule_names_open_nothing() {
    let mut e = enforcer(policy(Allow, &[(Deny, "198.51.100.0/24")]));
    e.answer(
        &"any.example".into(),
        "198.51.100.1".parse().unwrap(),
        300,
        Instant::now(),
    );
    assert_eq!(e.stats().learned, 0);
    assert!(
        e.query(Some("any.example")),
        "default allow lets unnamed names resolve"
    );
    assert!(!e.watches_dns());
}

#[test]
fn rules_added_and_removed_at_run_time_keep_ids_and_order() {
    let mut p = policy(Allow, &[(Deny, "198.51.100.1")]);
    let id = p.insert(Some(0), Rule::parse(Allow, "tcp:198.51.100.1:80").unwrap());
    assert_eq!(id, 2);
    let ids: Vec<u32> = p.rules().iter().map(|e| e.id).collect();
    assert_eq!(ids, [2, 1]);
    let e = enforcer(p.clone());
    assert!(e
        .judge(Proto::Tcp, dst("198.51.100.1:80"), Instant::now())
        .allowed());
    assert!(p.remove(2));
    assert!(!p.remove(2));
    let e = enforcer(p.clone());
    assert!(!e
        .judge(Proto::Tcp, dst("198.51.100.1:80"), Instant::now())
        .allowed());
    assert_eq!(p.to_string(), "deny 198.51.100.1/32\negress allow\n");
}
