//! The egress policy wired into the loop: a denied SYN gets a RST and the host never sees a
//! connect, a denied datagram gets ICMP administratively prohibited, a denied name gets
//! REFUSED without reaching the upstream, and removing the rule that allowed an open flow
//! resets it on both sides.

use std::net::{SocketAddr, UdpSocket};

use super::forward::prime_link;
use super::*;
use crate::policy::{Action, EgressReply, EgressRequest, Enforcer, Policy, Rule, TtlBounds};

fn policed(default: Action, rules: &[(Action, &str)], upstream: Option<SocketAddr>) -> Rig {
    let rules = rules
        .iter()
        .map(|&(a, t)| Rule::parse(a, t).expect(t))
        .collect();
    let enforcer = Enforcer::new(Policy::new(rules, default), TtlBounds::default(), None);
    let cfg = StackConfig {
        mtu: MTU,
        dns_upstreams: upstream.into_iter().collect(),
        policy: Some(enforcer.shared()),
        ..StackConfig::default()
    };
    let mut rig = Rig::with(cfg, None);
    prime_link(&mut rig);
    rig
}

fn syn() -> TcpFlags {
    TcpFlags {
        syn: true,
        ..TcpFlags::default()
    }
}

/// Turns the loop until a frame for the sandbox arrives; returns it.
fn next_frame(rig: &mut Rig) -> Vec<u8> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(&rig.sandbox, &mut buf) {
            Ok(n) => return buf[..n].to_vec(),
            Err(nix::errno::Errno::EAGAIN) => rig.turn(),
            Err(e) => panic!("read fake tap: {e}"),
        }
        assert!(start.elapsed() < DEADLINE, "no frame for the sandbox");
    }
}

#[test]
fn a_denied_syn_gets_a_rst_and_the_host_sees_no_connect() {
    let mut r = policed(Action::Deny, &[], None);
    r.listener.set_nonblocking(true).expect("nonblocking");
    r.send(IRS, 0, syn(), &[], true);
    let mut payload = [0u8; 64];
    let (_, ack, flags, _) = r.recv(&mut payload);
    assert!(flags.rst && flags.ack, "RST, not a SYN-ACK");
    assert_eq!(ack, IRS + 1);
    assert!(
        r.listener.accept().is_err(),
        "the host server was never connected to"
    );
    assert_eq!(r.lp.drops.denied, 1);
    let stats = Enforcer::lock(r.lp.cfg.policy.as_ref().unwrap()).stats();
    assert_eq!((stats.allowed, stats.denied), (0, 1));
}

#[test]
fn a_denied_datagram_gets_icmp_administratively_prohibited() {
    let mut r = policed(
        Action::Allow,
        &[(Action::Deny, "udp:198.51.100.0/24")],
        None,
    );
    send_udp(&r, 5000, "198.51.100.1:9".parse().unwrap(), b"hello");
    let frame = next_frame(&mut r);
    let eth = smoltcp::wire::EthernetFrame::new_checked(&frame[..]).unwrap();
    let ip = smoltcp::wire::Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(IpAddr::V4(ip.src_addr()), gateway_ip());
    let icmp = smoltcp::wire::Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((u8::from(icmp.msg_type()), icmp.msg_code()), (3, 13));
    assert!(icmp.verify_checksum());
    // The quote names the datagram: its destination and ports.
    let quoted = smoltcp::wire::Ipv4Packet::new_unchecked(icmp.data());
    assert_eq!(
        quoted.dst_addr(),
        "198.51.100.1".parse::<std::net::Ipv4Addr>().unwrap()
    );
    assert_eq!(
        r.lp.flows.occupied().count(),
        0,
        "no host socket was opened"
    );
}

#[test]
fn a_query_for_a_denied_name_is_refused_and_never_reaches_the_upstream() {
    let upstream = UdpSocket::bind("127.0.0.1:0").expect("upstream");
    upstream.set_nonblocking(true).expect("nonblocking");
    let mut r = policed(
        Action::Deny,
        &[(Action::Allow, "ok.test")],
        Some(upstream.local_addr().unwrap()),
    );
    // "a.test" A, id 0x1234.
    let query = [
        0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 4, b't', b'e', b's', b't', 0, 0, 1, 0, 1,
    ];
    send_udp(&r, 5353, SocketAddr::new(IpAddr::V4(DNS_V4), 53), &query);
    let (_, _, answer) = super::forward::recv_udp(&mut r);
    assert_eq!(&answer[..2], &[0x12, 0x34]);
    assert_eq!(answer[3] & 0x0f, 5, "RCODE REFUSED");
    let mut buf = [0u8; 512];
    assert!(
        upstream.recv_from(&mut buf).is_err(),
        "the upstream saw the query"
    );
    assert_eq!(r.lp.dns.as_ref().unwrap().stats().refused, 1);
}

#[test]
fn removing_the_rule_that_allowed_an_open_flow_resets_it_on_both_sides() {
    let mut r = policed(Action::Deny, &[(Action::Allow, "tcp:10.0.2.2")], None);
    let (_, server) = r.connect();
    let reply =
        r.lp.egress_command(EgressRequest::List, Instant::now())
            .expect("listed");
    let EgressReply::Listing { rules, .. } = reply else {
        panic!("{reply:?}");
    };
    let removed =
        r.lp.egress_command(EgressRequest::Remove(rules[0].id), Instant::now());
    assert_eq!(removed, Ok(EgressReply::Removed { closed: 1 }));
    let mut payload = [0u8; 64];
    let (_, _, flags, _) = r.recv(&mut payload);
    assert!(flags.rst, "the sandbox's side is reset");
    let mut one = [0u8; 1];
    let err = (&server).read(&mut one);
    assert!(
        matches!(&err, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{err:?}"
    );
    assert_eq!(
        r.lp.egress_command(EgressRequest::Remove(rules[0].id), Instant::now()),
        Err(crate::policy::EgressError::UnknownId(rules[0].id))
    );
}

#[test]
fn a_repeated_denied_datagram_is_answered_each_time_but_judged_and_logged_once() {
    let mut r = policed(Action::Deny, &[], None);
    for _ in 0..3 {
        send_udp(&r, 5001, "198.51.100.1:9".parse().unwrap(), b"again");
        let frame = next_frame(&mut r);
        let eth = smoltcp::wire::EthernetFrame::new_checked(&frame[..]).unwrap();
        let ip = smoltcp::wire::Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.next_header(), smoltcp::wire::IpProtocol::Icmp);
    }
    assert_eq!(r.lp.drops.denied, 3, "every datagram counted");
    let stats = Enforcer::lock(r.lp.cfg.policy.as_ref().unwrap()).stats();
    assert_eq!(stats.denied, 1, "one verdict (and log line) for the flow");
}
