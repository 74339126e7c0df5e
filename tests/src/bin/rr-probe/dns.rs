//! rr-probe's DNS jobs: `dns-query` (one query over UDP or TCP, its answers and timing) and
//! `dns-garbage` (malformed messages the forwarder must drop).
//! Called by `main`'s dispatch; message encoding and parsing are `rr_tests::dns_wire`'s.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use rr_tests::dns_wire::{self, TYPE_A, TYPE_AAAA};

use crate::{connect_tcp, io_fail, resolve, Fail};

/// Default bound for a `dns-query` reply, in seconds.
pub const DNS_TIMEOUT_S: &str = "30";
/// The ID of every `dns-query` query.
pub const DNS_ID: u16 = 0x7272;

pub fn dns_query(
    server: &str,
    proto: &str,
    name: &str,
    qtype: &str,
    secs: &str,
) -> Result<u8, Fail> {
    let sa = resolve(server)?;
    let qtype = match qtype {
        "a" => TYPE_A,
        "aaaa" => TYPE_AAAA,
        _ => return Err(Fail::Usage(format!("{qtype}: not a or aaaa"))),
    };
    let timeout = Duration::from_secs(
        secs.parse()
            .map_err(|_| Fail::Usage(format!("{secs}: not a number of seconds")))?,
    );
    let query = dns_wire::query(DNS_ID, name, qtype);
    let start = Instant::now();
    let reply = match proto {
        "udp" => dns_over_udp(sa, &query, timeout)?,
        "tcp" => dns_over_tcp(sa, &query, timeout)?,
        _ => return Err(Fail::Usage(format!("{proto}: not udp or tcp"))),
    };
    let elapsed = start.elapsed();
    let parsed = dns_wire::parse_reply(&reply)
        .map_err(|e| Fail::Failed(format!("a malformed reply ({e}): {reply:02x?}")))?;
    if parsed.header.id != DNS_ID {
        return Err(Fail::Failed(format!(
            "the reply's id {:#06x} is not the query's",
            parsed.header.id
        )));
    }
    println!("rcode {}", parsed.header.rcode());
    for a in parsed.addrs {
        println!("answer {a}");
    }
    println!("elapsed_ms {}", elapsed.as_millis());
    Ok(0)
}

pub fn dns_over_udp(server: SocketAddr, query: &[u8], timeout: Duration) -> Result<Vec<u8>, Fail> {
    let any: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("a literal address")
    } else {
        "[::]:0".parse().expect("a literal address")
    };
    let sock = UdpSocket::bind(any).map_err(|e| Fail::Failed(format!("bind: {e}")))?;
    sock.connect(server)
        .and_then(|()| sock.send(query))
        .map_err(|e| io_fail(&format!("send the query to {server}"), e))?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Fail::Timeout(format!("no DNS reply from {server}")));
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| Fail::Failed(format!("SO_RCVTIMEO: {e}")))?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                // Anything but a reply to our query (a stray datagram) is passed over.
                if dns_wire::Header::parse(&buf[..n]).is_ok_and(|h| h.id == DNS_ID) {
                    return Ok(buf[..n].to_vec());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_fail(&format!("no DNS reply from {server}"), e)),
        }
    }
}

pub fn dns_over_tcp(server: SocketAddr, query: &[u8], timeout: Duration) -> Result<Vec<u8>, Fail> {
    let mut s = TcpStream::connect_timeout(&server, timeout)
        .map_err(|e| io_fail(&format!("connect {server}"), e))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .map_err(|e| Fail::Failed(format!("set timeouts: {e}")))?;
    s.write_all(&dns_wire::tcp_frame(query))
        .map_err(|e| io_fail(&format!("send the query to {server}"), e))?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)
        .map_err(|e| io_fail(&format!("no DNS reply from {server} over TCP"), e))?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut reply)
        .map_err(|e| io_fail(&format!("read the reply from {server} over TCP"), e))?;
    Ok(reply)
}

/// Malformed DNS messages, each one the forwarder must drop (and keep serving).
pub fn garbage() -> Vec<Vec<u8>> {
    let good = dns_wire::query(0x6666, "garbage.rr-test.example", TYPE_A);
    let mut bad_label = good.clone();
    bad_label[dns_wire::HEADER_LEN] = 0x47;
    let mut looped = good[..dns_wire::HEADER_LEN].to_vec();
    looped.extend_from_slice(&[0xc0, dns_wire::HEADER_LEN as u8, 0, 1, 0, 1]);
    vec![
        vec![0x12],                                // shorter than a header
        good[..dns_wire::HEADER_LEN].to_vec(),     // a header promising a question
        good[..dns_wire::HEADER_LEN + 5].to_vec(), // a name cut short
        bad_label,                                 // a label length over 63
        looped,                                    // a compression pointer to itself
    ]
}

pub fn dns_garbage(server: &str, proto: &str) -> Result<u8, Fail> {
    let sa = resolve(server)?;
    let msgs = garbage();
    match proto {
        "udp" => {
            let any: SocketAddr = if sa.is_ipv4() {
                "0.0.0.0:0".parse().expect("a literal address")
            } else {
                "[::]:0".parse().expect("a literal address")
            };
            let sock = UdpSocket::bind(any).map_err(|e| Fail::Failed(format!("bind: {e}")))?;
            for m in &msgs {
                sock.send_to(m, sa)
                    .map_err(|e| io_fail(&format!("send to {sa}"), e))?;
            }
            println!("sent {} udp", msgs.len());
        }
        "tcp" => {
            // Each malformed message on its own connection, and one connection that promises
            // 300 bytes and sends 10 before closing.
            for m in &msgs {
                let mut s = connect_tcp(server)?;
                s.write_all(&dns_wire::tcp_frame(m))
                    .map_err(|e| io_fail("send a malformed message over TCP", e))?;
            }
            let mut s = connect_tcp(server)?;
            s.write_all(&[1, 44, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
                .map_err(|e| io_fail("send a short message over TCP", e))?;
            println!("sent {} tcp", msgs.len() + 1);
        }
        _ => return Err(Fail::Usage(format!("{proto}: not udp or tcp"))),
    }
    Ok(0)
}
