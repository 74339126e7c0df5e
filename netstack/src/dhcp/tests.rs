//! The DHCP server on hand-built messages (smoltcp's `DhcpRepr::emit`): each exchange, the
//! pool running out, leases expiring, and input that must be dropped.

use std::cell::RefCell;
use std::rc::Rc;

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, UdpPacket, DHCP_CLIENT_PORT,
};

use super::*;
use crate::config::GATEWAY_MAC;
use crate::egress::FrameSink;

const XID: u32 = 0x1234_5678;
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const FIRST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const LAST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 30);

fn mac(n: u8) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 0, n])
}

fn server() -> Server {
    Server::new(&Addressing::default(), true)
}

/// A client message of `message_type` from `chaddr`, as `udhcpc` builds it.
fn message(
    message_type: DhcpMessageType,
    chaddr: EthernetAddress,
    requested_ip: Option<Ipv4Addr>,
    server_identifier: Option<Ipv4Addr>,
    client_ip: Ipv4Addr,
) -> Vec<u8> {
    let repr = DhcpRepr {
        message_type,
        transaction_id: XID,
        secs: 0,
        client_hardware_address: chaddr,
        client_ip,
        your_ip: Ipv4Addr::UNSPECIFIED,
        server_ip: Ipv4Addr::UNSPECIFIED,
        router: None,
        subnet_mask: None,
        relay_agent_ip: Ipv4Addr::UNSPECIFIED,
        broadcast: false,
        requested_ip,
        client_identifier: Some(chaddr),
        server_identifier,
        parameter_request_list: Some(&[1, 3, 6, 15, 51]),
        dns_servers: None,
        max_size: Some(576),
        lease_duration: None,
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    };
    let mut buf = vec![0; repr.buffer_len()];
    repr.emit(&mut DhcpPacket::new_unchecked(&mut buf[..]))
        .unwrap();
    buf
}

pub(crate) fn discover(chaddr: EthernetAddress) -> Vec<u8> {
    message(
        DhcpMessageType::Discover,
        chaddr,
        None,
        None,
        Ipv4Addr::UNSPECIFIED,
    )
}

/// A REQUEST in SELECTING state: for `ip`, naming us as the chosen server.
fn select(chaddr: EthernetAddress, ip: Ipv4Addr) -> Vec<u8> {
    message(
        DhcpMessageType::Request,
        chaddr,
        Some(ip),
        Some(GATEWAY),
        Ipv4Addr::UNSPECIFIED,
    )
}

/// A REQUEST in RENEWING state: `ciaddr` set, no requested address, no server id.
fn renew(chaddr: EthernetAddress, ip: Ipv4Addr) -> Vec<u8> {
    message(DhcpMessageType::Request, chaddr, None, None, ip)
}

fn release(chaddr: EthernetAddress, ip: Ipv4Addr) -> Vec<u8> {
    message(DhcpMessageType::Release, chaddr, None, Some(GATEWAY), ip)
}

/// The reply's bytes, parsed back.
fn wire(s: &Server, reply: &Reply) -> Vec<u8> {
    let mut buf = vec![0xaa; 1500];
    let len = s.emit(reply, &mut buf).unwrap();
    buf.truncate(len);
    buf
}

/// `reply` as the client parses it, after checking what every reply carries.
fn parsed(s: &Server, reply: &Reply, f: impl FnOnce(&DhcpRepr<'_>)) {
    let bytes = wire(s, reply);
    assert!(bytes.len() >= 300, "padded to the BOOTP minimum");
    let packet = DhcpPacket::new_checked(&bytes[..]).unwrap();
    let repr = DhcpRepr::parse(&packet).unwrap();
    assert_eq!(repr.transaction_id, XID);
    assert_eq!(repr.server_identifier, Some(GATEWAY));
    f(&repr);
}

fn offer_of(s: &mut Server, chaddr: EthernetAddress, now: Instant) -> Ipv4Addr {
    let reply = s.answer(&discover(chaddr), now).expect("an offer");
    assert_eq!(reply.kind, Kind::Offer);
    reply.your_ip
}

#[test]
fn discover_gets_an_offer_of_the_first_pool_address_with_every_option() {
    let mut s = server();
    let reply = s.answer(&discover(mac(1)), Instant::now()).unwrap();
    assert_eq!(reply.your_ip, FIRST);
    parsed(&s, &reply, |r| {
        assert_eq!(r.message_type, DhcpMessageType::Offer);
        assert_eq!(r.client_hardware_address, mac(1));
        assert_eq!(r.your_ip, FIRST);
        assert_eq!(r.client_ip, Ipv4Addr::UNSPECIFIED);
        assert_eq!(r.router, Some(GATEWAY));
        assert_eq!(r.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(r.lease_duration, Some(86400));
        let dns = r.dns_servers.as_ref().expect("a DNS option");
        assert_eq!(dns.as_slice(), [Ipv4Addr::new(10, 0, 2, 3)]);
    });
    assert_eq!(s.stats().offers, 1);
}

#[test]
fn request_for_the_offered_address_is_acked() {
    let mut s = server();
    let now = Instant::now();
    let ip = offer_of(&mut s, mac(1), now);
    let reply = s.answer(&select(mac(1), ip), now).unwrap();
    assert_eq!((reply.kind, reply.your_ip), (Kind::Ack, FIRST));
    parsed(&s, &reply, |r| {
        assert_eq!(r.message_type, DhcpMessageType::Ack);
        assert_eq!(r.your_ip, FIRST);
        assert_eq!(r.router, Some(GATEWAY));
        assert_eq!(r.lease_duration, Some(86400));
    });
    // Asked again, the client is offered the address it holds.
    assert_eq!(offer_of(&mut s, mac(1), now), FIRST);
    assert_eq!(s.stats().acks, 1);
}

#[test]
fn renewing_client_is_acked_with_its_ciaddr() {
    let mut s = server();
    let now = Instant::now();
    let ip = offer_of(&mut s, mac(1), now);
    s.answer(&select(mac(1), ip), now).unwrap();
    let later = now + LEASE_TIME / 2;
    let reply = s.answer(&renew(mac(1), ip), later).unwrap();
    assert_eq!(
        (reply.kind, reply.your_ip, reply.ciaddr),
        (Kind::Ack, ip, ip)
    );
    // The lease was extended: past the first lease's end nobody else may take it.
    let other = offer_of(&mut s, mac(2), now + LEASE_TIME + Duration::from_secs(1));
    assert_ne!(other, ip);
}

#[test]
fn request_for_an_address_outside_the_pool_is_naked() {
    let mut s = server();
    let now = Instant::now();
    for ip in [Ipv4Addr::new(10, 0, 2, 100), Ipv4Addr::new(10, 0, 2, 31)] {
        let reply = s.answer(&select(mac(1), ip), now).unwrap();
        assert_eq!(
            (reply.kind, reply.your_ip),
            (Kind::Nak, Ipv4Addr::UNSPECIFIED)
        );
        parsed(&s, &reply, |r| {
            assert_eq!(r.message_type, DhcpMessageType::Nak);
            assert_eq!(r.router, None);
            assert_eq!(r.lease_duration, None);
            assert!(r.dns_servers.is_none());
        });
    }
    assert_eq!(s.stats().naks, 2);
}

#[test]
fn request_for_an_address_held_by_another_client_is_naked() {
    let mut s = server();
    let now = Instant::now();
    let ip = offer_of(&mut s, mac(1), now);
    assert_eq!(s.answer(&select(mac(2), ip), now).unwrap().kind, Kind::Nak);
    assert_eq!(s.answer(&renew(mac(2), ip), now).unwrap().kind, Kind::Nak);
    // The holder still gets it.
    assert_eq!(s.answer(&select(mac(1), ip), now).unwrap().kind, Kind::Ack);
}

#[test]
fn request_naming_another_server_withdraws_our_offer() {
    let mut s = server();
    let now = Instant::now();
    let ip = offer_of(&mut s, mac(1), now);
    let elsewhere = message(
        DhcpMessageType::Request,
        mac(1),
        Some(Ipv4Addr::new(10, 0, 2, 200)),
        Some(Ipv4Addr::new(10, 0, 2, 1)),
        Ipv4Addr::UNSPECIFIED,
    );
    assert_eq!(s.answer(&elsewhere, now), None);
    assert_eq!(offer_of(&mut s, mac(2), now), ip);
    assert_eq!(s.stats().released, 1);
}

#[test]
fn release_frees_the_address_for_another_client() {
    let mut s = server();
    let now = Instant::now();
    let ip = offer_of(&mut s, mac(1), now);
    s.answer(&select(mac(1), ip), now).unwrap();
    // Someone else's release of it changes nothing.
    assert_eq!(s.answer(&release(mac(2), ip), now), None);
    assert_eq!(offer_of(&mut s, mac(2), now), Ipv4Addr::new(10, 0, 2, 16));
    assert_eq!(s.answer(&release(mac(1), ip), now), None);
    assert_eq!(offer_of(&mut s, mac(3), now), ip);
    let st = s.stats();
    assert_eq!((st.released, st.ignored), (1, 1));
}

#[test]
fn pool_of_sixteen_runs_out_and_expired_offers_are_reused() {
    let mut s = server();
    let now = Instant::now();
    for n in 0..16u8 {
        let ip = offer_of(&mut s, mac(n), now);
        assert_eq!(ip, Ipv4Addr::new(10, 0, 2, 15 + n));
        if n > 0 {
            s.answer(&select(mac(n), ip), now).unwrap();
        }
    }
    assert_eq!(s.find(mac(15)).map(|i| s.addr(i)), Some(LAST));
    assert_eq!(s.answer(&discover(mac(100)), now), None);
    assert_eq!(s.stats().pool_full, 1);
    // mac(0) never requested its offer: once the hold passes, its address goes to the next
    // client; the bound ones stay.
    let later = now + OFFER_HOLD;
    assert_eq!(offer_of(&mut s, mac(100), later), FIRST);
    assert_eq!(s.answer(&discover(mac(101)), later), None);
    // After a lease's time every address is free again, the first one first.
    let much_later = now + LEASE_TIME + OFFER_HOLD;
    assert_eq!(offer_of(&mut s, mac(101), much_later), FIRST);
    assert_eq!(s.stats().pool_full, 2);
}

#[test]
fn discover_asking_for_a_free_pool_address_is_offered_it() {
    let mut s = server();
    let now = Instant::now();
    let want = Ipv4Addr::new(10, 0, 2, 20);
    let msg = message(
        DhcpMessageType::Discover,
        mac(1),
        Some(want),
        None,
        Ipv4Addr::UNSPECIFIED,
    );
    assert_eq!(s.answer(&msg, now).unwrap().your_ip, want);
}

#[test]
fn pool_follows_the_cidr_and_dns_can_be_left_out() {
    let addr = Addressing::default()
        .with_cidr_v4("192.168.7.0/25")
        .unwrap();
    let mut s = Server::new(&addr, false);
    let reply = s.answer(&discover(mac(1)), Instant::now()).unwrap();
    assert_eq!(reply.your_ip, Ipv4Addr::new(192, 168, 7, 15));
    let bytes = wire(&s, &reply);
    let packet = DhcpPacket::new_checked(&bytes[..]).unwrap();
    let r = DhcpRepr::parse(&packet).unwrap();
    assert_eq!(r.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 128)));
    assert_eq!(r.router, Some(Ipv4Addr::new(192, 168, 7, 2)));
    assert!(r.dns_servers.is_none());
}

#[test]
fn malformed_and_server_messages_are_dropped_and_counted() {
    let mut s = server();
    let now = Instant::now();
    let good = discover(mac(1));
    assert_eq!(s.answer(&[], now), None);
    assert_eq!(s.answer(&good[..239], now), None, "no magic cookie");
    let mut bad_magic = good.clone();
    bad_magic[236] ^= 1;
    assert_eq!(s.answer(&bad_magic, now), None);
    let mut reply_op = good.clone();
    reply_op[0] = 2; // BOOTREPLY carrying a DISCOVER type
    assert_eq!(s.answer(&reply_op, now), None);
    let mut token_ring = good.clone();
    token_ring[1] = 6;
    assert_eq!(s.answer(&token_ring, now), None);
    assert_eq!(s.stats().malformed, 5);
    let inform = message(
        DhcpMessageType::Inform,
        mac(1),
        None,
        None,
        Ipv4Addr::new(10, 0, 2, 100),
    );
    assert_eq!(s.answer(&inform, now), None);
    assert_eq!(s.stats().ignored, 1);
    assert_eq!(s.stats().offers, 0);
}

#[test]
fn truncated_or_mutated_messages_never_panic() {
    let mut s = server();
    let now = Instant::now();
    let frames = [
        discover(mac(1)),
        select(mac(1), FIRST),
        renew(mac(2), FIRST),
    ];
    let mut out = [0u8; 1500];
    for frame in &frames {
        for len in 0..frame.len() {
            if let Some(r) = s.answer(&frame[..len], now) {
                s.emit(&r, &mut out).unwrap();
            }
        }
        for i in 0..frame.len() {
            for bit in 0..8 {
                let mut m = frame.clone();
                m[i] ^= 1 << bit;
                if let Some(r) = s.answer(&m, now) {
                    s.emit(&r, &mut out).unwrap();
                }
            }
        }
    }
}

#[test]
fn reply_too_big_for_the_buffer_is_refused() {
    let mut s = server();
    let reply = s.answer(&discover(mac(1)), Instant::now()).unwrap();
    let mut small = [0u8; 299];
    assert_eq!(s.emit(&reply, &mut small), Err(DhcpError::TooBig));
}

#[derive(Clone, Default)]
struct Sink(Rc<RefCell<Vec<Vec<u8>>>>);

impl FrameSink for Sink {
    fn send_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        self.0.borrow_mut().push(frame.to_vec());
        Ok(())
    }
}

#[test]
fn offer_goes_from_the_gateway_port_67_to_broadcast_port_68_at_the_sandbox_mac() {
    let sink = Sink::default();
    let mut egress = Egress::new(
        1500,
        EthernetAddress(GATEWAY_MAC),
        Box::new(sink.clone()),
        false,
    );
    egress.set_sandbox_mac(mac(1));
    let mut s = server();
    s.input(&discover(mac(1)), &mut egress, Instant::now());
    let frames = sink.0.borrow();
    assert_eq!(frames.len(), 1);
    let eth = EthernetFrame::new_checked(&frames[0][..]).unwrap();
    assert_eq!(eth.src_addr(), EthernetAddress(GATEWAY_MAC));
    assert_eq!(eth.dst_addr(), mac(1));
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv4);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.src_addr(), GATEWAY);
    assert_eq!(ip.dst_addr(), Ipv4Addr::BROADCAST);
    assert_eq!(ip.next_header(), IpProtocol::Udp);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(udp.verify_checksum(&GATEWAY.into(), &Ipv4Addr::BROADCAST.into()));
    assert_eq!((udp.src_port(), udp.dst_port()), (67, DHCP_CLIENT_PORT));
    let dhcp = DhcpPacket::new_checked(udp.payload()).unwrap();
    let r = DhcpRepr::parse(&dhcp).unwrap();
    assert_eq!((r.message_type, r.your_ip), (DhcpMessageType::Offer, FIRST));
}
