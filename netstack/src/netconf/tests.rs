//! netconf's request building, encoding and ACK reading, on hand-built netlink bytes.
use super::*;

fn plan(ipv6: bool) -> Plan {
    Plan {
        tap_index: 7,
        mtu: 65520,
        txqueuelen: TAP_TXQUEUELEN,
        addr: Addressing::default(),
        sandbox: SandboxAddrs::of(&Addressing::default()),
        ipv6,
        mac: None,
    }
}

fn steps(reqs: &[(Step, RouteNetlinkMessage)]) -> Vec<Step> {
    reqs.iter().map(|(s, _)| *s).collect()
}

#[test]
fn link_comes_up_before_addresses_and_routes() {
    let reqs = requests(&plan(true)).expect("valid plan");
    assert_eq!(
        steps(&reqs),
        [
            Step::LoopbackUp,
            Step::TapLink,
            Step::AddressV4,
            Step::RouteV4,
            Step::AddressV6,
            Step::RouteV6
        ]
    );
    assert_eq!(steps(&requests(&plan(false)).expect("valid plan")).len(), 4);
}

#[test]
fn tap_link_sets_mtu_txqueuelen_and_up() {
    let reqs = requests(&plan(false)).expect("valid plan");
    let RouteNetlinkMessage::SetLink(link) = &reqs[1].1 else {
        panic!("second request is not a SetLink: {:?}", reqs[1].1);
    };
    assert_eq!(link.header.index, 7);
    assert_eq!(link.header.flags, LinkFlags::Up);
    assert_eq!(link.header.change_mask, LinkFlags::Up);
    assert_eq!(
        link.attributes,
        [LinkAttribute::Mtu(65520), LinkAttribute::TxQueueLen(10_000)]
    );
    let RouteNetlinkMessage::SetLink(lo) = &reqs[0].1 else {
        panic!("first request is not a SetLink");
    };
    assert_eq!(lo.header.index, LOOPBACK_IFINDEX);
}

#[test]
fn ipv6_address_skips_dad() {
    let reqs = requests(&plan(true)).expect("valid plan");
    let RouteNetlinkMessage::NewAddress(addr) = &reqs[4].1 else {
        panic!("fifth request is not a NewAddress");
    };
    assert_eq!(addr.header.family, AddressFamily::Inet6);
    assert_eq!(addr.header.prefix_len, 64);
    assert!(addr.header.flags.contains(AddressHeaderFlags::Nodad));
    assert!(addr
        .attributes
        .contains(&AddressAttribute::Address(IpAddr::V6(
            crate::config::SANDBOX_V6
        ))));
}

#[test]
fn ipv6_refused_below_minimum_mtu() {
    let mut p = plan(true);
    p.mtu = 1279;
    assert!(matches!(
        requests(&p),
        Err(NetconfError::MtuTooSmallForIpv6 { mtu: 1279 })
    ));
    p.ipv6 = false;
    assert!(requests(&p).is_ok());
}

#[test]
fn encoded_ipv4_address_request_matches_ip_addr_add() {
    let reqs = requests(&plan(false)).expect("valid plan");
    let batch = encode(&reqs[2..3]);
    // nlmsghdr: len, RTM_NEWADDR (20), REQUEST|ACK|EXCL|CREATE, seq 1, pid 0
    let mut expected = vec![];
    expected.extend_from_slice(&40u32.to_ne_bytes());
    expected.extend_from_slice(&20u16.to_ne_bytes());
    expected.extend_from_slice(&(0x1u16 | 0x4 | 0x200 | 0x400).to_ne_bytes());
    expected.extend_from_slice(&1u32.to_ne_bytes());
    expected.extend_from_slice(&0u32.to_ne_bytes());
    // ifaddrmsg: AF_INET, /24, flags 0, scope universe, index 7
    expected.extend_from_slice(&[2, 24, 0, 0]);
    expected.extend_from_slice(&7u32.to_ne_bytes());
    // IFA_LOCAL, IFA_ADDRESS: 10.0.2.100
    for kind in [2u16, 1] {
        expected.extend_from_slice(&8u16.to_ne_bytes());
        expected.extend_from_slice(&kind.to_ne_bytes());
        expected.extend_from_slice(&[10, 0, 2, 100]);
    }
    assert_eq!(batch, expected);
}

/// nlmsghdr for request `seq` of `len` bytes, type `kind`, with `flags`.
fn header(len: u32, kind: u16, flags: u16, seq: u32) -> Vec<u8> {
    let mut v = vec![];
    v.extend_from_slice(&len.to_ne_bytes());
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(&flags.to_ne_bytes());
    v.extend_from_slice(&seq.to_ne_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes());
    v
}

/// NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE
const CREATE: u16 = 0x1 | 0x4 | 0x200 | 0x400;

fn moved_plan() -> Plan {
    let addr = Addressing::default()
        .with_cidr_v4("192.168.64.0/25")
        .and_then(|a| a.with_cidr_v6("fd42:0:0:1::/64"))
        .expect("valid cidrs");
    Plan {
        addr,
        sandbox: SandboxAddrs::of(&addr),
        ..plan(true)
    }
}

#[test]
fn encoded_ipv4_address_and_route_follow_a_moved_cidr() {
    let reqs = requests(&moved_plan()).expect("valid plan");
    // RTM_NEWADDR (20): AF_INET, /25, index 7, IFA_LOCAL and IFA_ADDRESS 192.168.64.100
    let mut expected = header(40, 20, CREATE, 1);
    expected.extend_from_slice(&[2, 25, 0, 0]);
    expected.extend_from_slice(&7u32.to_ne_bytes());
    for kind in [2u16, 1] {
        expected.extend_from_slice(&8u16.to_ne_bytes());
        expected.extend_from_slice(&kind.to_ne_bytes());
        expected.extend_from_slice(&[192, 168, 64, 100]);
    }
    assert_eq!(encode(&reqs[2..3]), expected);
    // RTM_NEWROUTE (24): rtmsg AF_INET, dst_len 0, table main (254), proto boot (3),
    // scope universe, type unicast; RTA_GATEWAY (5) 192.168.64.2, RTA_OIF (4) 7.
    let mut expected = header(44, 24, CREATE, 1);
    expected.extend_from_slice(&[2, 0, 0, 0, 254, 3, 0, 1]);
    expected.extend_from_slice(&0u32.to_ne_bytes());
    expected.extend_from_slice(&8u16.to_ne_bytes());
    expected.extend_from_slice(&5u16.to_ne_bytes());
    expected.extend_from_slice(&[192, 168, 64, 2]);
    expected.extend_from_slice(&8u16.to_ne_bytes());
    expected.extend_from_slice(&4u16.to_ne_bytes());
    expected.extend_from_slice(&7u32.to_ne_bytes());
    assert_eq!(encode(&reqs[3..4]), expected);
}

#[test]
fn encoded_ipv6_address_and_route_follow_a_moved_cidr6() {
    let reqs = requests(&moved_plan()).expect("valid plan");
    let sandbox: Ipv6Addr = "fd42:0:0:1::100".parse().expect("address");
    let gateway: Ipv6Addr = "fd42:0:0:1::2".parse().expect("address");
    // RTM_NEWADDR: AF_INET6 (10), /64, IFA_F_NODAD (2), index 7; IFA_LOCAL, IFA_ADDRESS,
    // IFA_FLAGS (8) = IFA_F_NODAD.
    let mut expected = header(72, 20, CREATE, 1);
    expected.extend_from_slice(&[10, 64, 2, 0]);
    expected.extend_from_slice(&7u32.to_ne_bytes());
    for kind in [2u16, 1] {
        expected.extend_from_slice(&20u16.to_ne_bytes());
        expected.extend_from_slice(&kind.to_ne_bytes());
        expected.extend_from_slice(&sandbox.octets());
    }
    expected.extend_from_slice(&8u16.to_ne_bytes());
    expected.extend_from_slice(&8u16.to_ne_bytes());
    expected.extend_from_slice(&2u32.to_ne_bytes());
    assert_eq!(encode(&reqs[4..5]), expected);
    let RouteNetlinkMessage::NewRoute(route) = &reqs[5].1 else {
        panic!("sixth request is not a NewRoute");
    };
    assert!(route
        .attributes
        .contains(&RouteAttribute::Gateway(RouteAddress::from(IpAddr::V6(
            gateway
        )))));
}

#[test]
fn encoded_tap_link_carries_the_mac_as_ifla_address() {
    let p = Plan {
        mac: Some([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
        ..plan(false)
    };
    let reqs = requests(&p).expect("valid plan");
    // RTM_SETLINK (19), REQUEST|ACK; ifinfomsg: family 0, type 0, index 7, IFF_UP in
    // flags and change mask; IFLA_MTU (4), IFLA_TXQLEN (13), IFLA_ADDRESS (1, 6 bytes
    // padded to 8).
    let mut expected = header(60, 19, 0x1 | 0x4, 1);
    expected.extend_from_slice(&[0, 0, 0, 0]);
    expected.extend_from_slice(&7i32.to_ne_bytes());
    expected.extend_from_slice(&1u32.to_ne_bytes());
    expected.extend_from_slice(&1u32.to_ne_bytes());
    for (kind, value) in [(4u16, 65520u32), (13, 10_000)] {
        expected.extend_from_slice(&8u16.to_ne_bytes());
        expected.extend_from_slice(&kind.to_ne_bytes());
        expected.extend_from_slice(&value.to_ne_bytes());
    }
    expected.extend_from_slice(&10u16.to_ne_bytes());
    expected.extend_from_slice(&1u16.to_ne_bytes());
    expected.extend_from_slice(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0, 0]);
    assert_eq!(encode(&reqs[1..2]), expected);
    // Without a MAC the kernel's random address stays: no IFLA_ADDRESS.
    let reqs = requests(&plan(false)).expect("valid plan");
    assert_eq!(encode(&reqs[1..2]).len(), 48);
}

#[test]
fn a_failed_step_names_the_address_it_was_adding() {
    let p = moved_plan();
    let e = Step::AddressV4.error(&p, io::Error::from_raw_os_error(libc::EEXIST));
    assert_eq!(
        e.to_string(),
        "cannot add 192.168.64.100/25 to the tap device"
    );
    let e = Step::RouteV6.error(&p, io::Error::from_raw_os_error(libc::ENETUNREACH));
    assert_eq!(
        e.to_string(),
        "cannot add the default route via fd42:0:0:1::2"
    );
}

#[test]
fn encoded_batch_numbers_requests_in_order() {
    let reqs = requests(&plan(true)).expect("valid plan");
    let batch = encode(&reqs);
    let mut seqs = vec![];
    let mut data = &batch[..];
    while !data.is_empty() {
        let buf = NetlinkBuffer::new_checked(data).expect("own output parses");
        seqs.push(buf.sequence_number());
        data = &data[buf.length() as usize..];
    }
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
}

fn ack(seq: u32, errno: i32) -> Vec<u8> {
    let mut v = vec![];
    v.extend_from_slice(&36u32.to_ne_bytes());
    v.extend_from_slice(&2u16.to_ne_bytes()); // NLMSG_ERROR
    v.extend_from_slice(&0x100u16.to_ne_bytes()); // NLM_F_CAPPED
    v.extend_from_slice(&seq.to_ne_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes());
    v.extend_from_slice(&(-errno).to_ne_bytes());
    v.extend_from_slice(&[0; 16]); // capped copy of the request header
    v
}

#[test]
fn acks_and_nacks_land_on_their_request() {
    let mut data = ack(2, 0);
    data.extend(ack(1, libc::EEXIST));
    let mut acked = vec![None; 3];
    record_acks(&data, &mut acked).expect("well-formed acks");
    assert_eq!(acked, [Some(Some(libc::EEXIST)), Some(None), None]);
}

#[test]
fn ack_for_unknown_sequence_or_cut_short_is_refused() {
    let mut acked = vec![None; 2];
    assert!(matches!(
        record_acks(&ack(9, 0), &mut acked),
        Err(NetconfError::UnknownSequence { seq: 9 })
    ));
    assert!(record_acks(&ack(1, 0)[..10], &mut acked).is_err());
    assert!(record_acks(&ack(1, 0)[..30], &mut acked).is_err());
    assert_eq!(acked, [None, None]);
}

#[test]
fn an_error_code_of_i32_min_is_recorded_not_overflowed() {
    let mut data = ack(1, 0);
    data[16..20].copy_from_slice(&i32::MIN.to_ne_bytes());
    let mut acked = vec![None; 1];
    record_acks(&data, &mut acked).expect("a well-formed ack");
    assert_eq!(acked, [Some(Some(i32::MAX))]);
}
