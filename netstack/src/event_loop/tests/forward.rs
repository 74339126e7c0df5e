//! Forwards through the whole loop, in-process: a host client on loopback reaches the
//! sandbox's service through a bound forward socket, appearing from the gateway; the sandbox's
//! answers reach the client; the command channel adds, lists and removes forwards while the
//! loop runs.

use std::net::{SocketAddr, UdpSocket};
use std::thread;

use super::*;
use crate::command;
use crate::forward::{local_addr, ForwardControl, ForwardSpec, Listener, Transport};

const GUEST_PORT: u16 = 8080;

fn guest() -> SocketAddr {
    SocketAddr::new(sandbox_ip(), GUEST_PORT)
}

/// Lets the loop learn the sandbox's MAC (as the sandbox's start-up ND/ARP does for real).
pub(super) fn prime_link(rig: &mut Rig) {
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&SANDBOX_MAC.0);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&SANDBOX_MAC.0);
    arp.extend_from_slice(&[10, 0, 2, 100, 0, 0, 0, 0, 0, 0, 10, 0, 2, 2]);
    nix::unistd::write(&rig.sandbox, &arp).expect("write to fake tap");
    rig.turn();
    let mut buf = [0u8; 2048];
    while nix::unistd::read(&rig.sandbox, &mut buf).is_ok() {} // the ARP reply
}

/// Binds a forward from 127.0.0.1:(any port) to the sandbox's GUEST_PORT and publishes it.
fn publish(rig: &mut Rig, proto: Transport) -> (u32, SocketAddr) {
    let spec = ForwardSpec {
        proto,
        host: "127.0.0.1:0".parse().unwrap(),
        guest: guest(),
    };
    let mut listener = Listener::bind(spec).expect("bind forward");
    let host = local_addr(listener.bound_mut()).expect("bound address");
    let id = rig.lp.publish(listener).expect("publish");
    (id, host)
}

/// Turns the loop until the sandbox receives a UDP datagram; returns (src, dst, payload).
pub(super) fn recv_udp(rig: &mut Rig) -> (SocketAddr, SocketAddr, Vec<u8>) {
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    loop {
        match nix::unistd::read(&rig.sandbox, &mut buf) {
            Ok(n) => {
                if let Ok((
                    _,
                    Frame::Ip {
                        meta,
                        l4:
                            L4::Udp {
                                src_port,
                                dst_port,
                                payload,
                            },
                    },
                )) = wire::parse(&buf[..n])
                {
                    let src = SocketAddr::new(meta.src, src_port);
                    let dst = SocketAddr::new(meta.dst, dst_port);
                    return (src, dst, payload.to_vec());
                }
            }
            Err(nix::errno::Errno::EAGAIN) => rig.turn(),
            Err(e) => panic!("read fake tap: {e}"),
        }
        assert!(start.elapsed() < DEADLINE, "no datagram for the sandbox");
    }
}

fn udp_round_trip(cfg: StackConfig) {
    let mut rig = Rig::with(cfg, None);
    prime_link(&mut rig);
    let (id, host) = publish(&mut rig, Transport::Udp);
    assert_eq!(id, 1, "the first forward's id");
    let client = UdpSocket::bind("127.0.0.1:0").expect("client");
    client.set_read_timeout(Some(DEADLINE)).expect("timeout");
    client.send_to(b"ping", host).expect("send");
    let (src, dst, payload) = recv_udp(&mut rig);
    let client_port = client.local_addr().unwrap().port();
    assert_eq!(
        src,
        SocketAddr::new(gateway_ip(), client_port),
        "loopback client appears from the gateway"
    );
    assert_eq!(dst, guest());
    assert_eq!(payload, b"ping");
    send_udp_from(&rig, guest(), src, b"pong");
    rig.turn();
    let mut got = [0u8; 16];
    let (n, from) = client
        .recv_from(&mut got)
        .expect("the reply reaches the client");
    assert_eq!(&got[..n], b"pong");
    assert_eq!(
        from, host,
        "the reply comes from the address the client used"
    );
}

#[test]
fn udp_forward_round_trips_from_the_gateway_address() {
    udp_round_trip(StackConfig {
        mtu: MTU,
        ..StackConfig::default()
    });
}

#[test]
fn udp_forward_replies_reach_the_client_with_host_loopback_disabled() {
    udp_round_trip(StackConfig {
        mtu: MTU,
        host_loopback: false,
        ..StackConfig::default()
    });
}

#[test]
fn tcp_forward_opens_a_flow_toward_the_sandbox_from_the_gateway() {
    let mut rig = Rig::new();
    prime_link(&mut rig);
    let (_, host) = publish(&mut rig, Transport::Tcp);
    let mut client = TcpStream::connect(host).expect("connect to the forward");
    client.set_read_timeout(Some(DEADLINE)).expect("timeout");
    client
        .write_all(b"early")
        .expect("data before the handshake completes");
    let client_port = client.local_addr().unwrap().port();
    let mut buf = [0u8; 64];
    let (iss, _, flags, _) = rig.recv_for(GUEST_PORT, &mut buf);
    assert!(
        flags.syn && !flags.ack,
        "a SYN toward the sandbox's service"
    );
    // The sandbox's service answers SYN-ACK, from GUEST_PORT to the client's port.
    let l2 = L2 {
        src: SANDBOX_MAC,
        dst: EthernetAddress(GATEWAY_MAC),
    };
    let mut frame = [0u8; 200];
    let hdr = TcpHeader {
        src_port: GUEST_PORT,
        dst_port: client_port,
        seq: IRS,
        ack: iss + 1,
        flags: TcpFlags {
            syn: true,
            ack: true,
            ..TcpFlags::default()
        },
        window: 1024,
        syn_options: Some((1460, Some(7))),
        timestamp: None,
    };
    let len = emit::tcp(
        &mut frame,
        l2,
        sandbox_ip(),
        gateway_ip(),
        &hdr,
        0,
        Csum::Full,
    )
    .expect("emit");
    nix::unistd::write(&rig.sandbox, &frame[..len]).expect("write to fake tap");
    let mut got = [0u8; 64];
    let (seq, ack, flags, n) = rig.recv_for(GUEST_PORT, &mut got);
    let (seq, ack, flags, n) = if n == 0 {
        // The handshake's ACK may come on its own, before the data.
        assert!(flags.ack && !flags.syn);
        assert_eq!((seq, ack), (iss + 1, IRS + 1));
        rig.recv_for(GUEST_PORT, &mut got)
    } else {
        (seq, ack, flags, n)
    };
    assert_eq!(
        &got[..n],
        b"early",
        "host data sent before the handshake follows it"
    );
    assert_eq!((seq, ack), (iss + 1, IRS + 1));
    assert!(flags.ack);
}

#[test]
fn commands_add_list_and_remove_forwards_while_the_loop_runs() {
    let (control, commands) = command::channel().expect("channel");
    let cfg = StackConfig {
        mtu: MTU,
        ..StackConfig::default()
    };
    let mut rig = Rig::with(cfg, Some(commands));
    let (first, _) = publish(&mut rig, Transport::Tcp);
    let worker = thread::spawn(move || {
        let spec = ForwardSpec {
            proto: Transport::Udp,
            host: "127.0.0.1:0".parse().unwrap(),
            guest: guest(),
        };
        let added = control.add(spec).expect("add");
        let listed = control.list().expect("list");
        control.remove(added).expect("remove");
        let unknown = control.remove(added);
        let after = control.list().expect("list again");
        (added, listed, unknown, after)
    });
    let start = Instant::now();
    while !worker.is_finished() {
        rig.turn();
        assert!(start.elapsed() < DEADLINE, "commands were not answered");
    }
    let (added, listed, unknown, after) = worker.join().expect("worker");
    assert_eq!((first, added), (1, 2), "ids count from 1 in order");
    let ids: Vec<u32> = listed.iter().map(|e| e.id).collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(listed[1].spec.proto, Transport::Udp);
    assert!(matches!(
        unknown,
        Err(crate::forward::ForwardError::UnknownId(2))
    ));
    let ids: Vec<u32> = after.iter().map(|e| e.id).collect();
    assert_eq!(ids, [1], "the removed forward is gone, the other stays");
}
