//! The DHCP server wired into the loop: with `dhcp_server` a DISCOVER broadcast from
//! 0.0.0.0:68 is answered by an OFFER from the gateway, port 67, to 255.255.255.255:68;
//! without it the datagram is refused like any other and nothing comes back. The messages
//! themselves are checked in `crate::dhcp`'s tests.

use std::net::{Ipv4Addr, SocketAddr};

use smoltcp::wire::{DhcpMessageType, DhcpPacket, DhcpRepr};

use super::*;

fn rig(dhcp_server: bool) -> Rig {
    Rig::with(
        StackConfig {
            mtu: MTU,
            dhcp_server,
            ..StackConfig::default()
        },
        None,
    )
}

fn send_discover(rig: &Rig) {
    let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 68);
    let to = SocketAddr::new(IpAddr::V4(Ipv4Addr::BROADCAST), 67);
    send_udp_from(rig, from, to, &crate::dhcp::tests::discover(SANDBOX_MAC));
}

#[test]
fn discover_is_offered_a_pool_address_from_the_gateway() {
    let mut r = rig(true);
    send_discover(&r);
    let (src, dst, payload) = super::forward::recv_udp(&mut r);
    assert_eq!(src, SocketAddr::new(gateway_ip(), 67));
    assert_eq!(dst, SocketAddr::new(IpAddr::V4(Ipv4Addr::BROADCAST), 68));
    let packet = DhcpPacket::new_checked(&payload[..]).expect("a DHCP message");
    let offer = DhcpRepr::parse(&packet).expect("parses");
    assert_eq!(offer.message_type, DhcpMessageType::Offer);
    assert_eq!(offer.your_ip, Ipv4Addr::new(10, 0, 2, 15));
    assert_eq!(offer.client_hardware_address, SANDBOX_MAC);
    assert_eq!(r.lp.drops.refused, 0);
}

#[test]
fn discover_is_refused_without_the_server() {
    let mut r = rig(false);
    send_discover(&r);
    let mut buf = [0u8; 2048];
    for _ in 0..5 {
        r.turn();
        assert!(
            nix::unistd::read(&r.sandbox, &mut buf).is_err(),
            "nothing comes back"
        );
    }
    assert_eq!(r.lp.drops.refused, 1);
}
