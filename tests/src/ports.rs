//! Host ports for `--publish` and the API socket, which need a number before anything binds it.
//! Ports come from below the kernel's ephemeral range (ip_local_port_range starts at 32768 by
//! default, ip-sysctl.rst), so a port-0 bind by another test can never take one; parallel tests
//! in one binary take disjoint blocks from a process-wide counter, and every port handed out was
//! free for TCP and UDP on both wildcard addresses a moment before.
//! Called by the forwarding, API and bad-input tests; binds nothing beyond the check.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

/// First port handed out: well above the privileged ports and the well-known services.
const FIRST: u16 = 20000;

/// One past the last port handed out: the start of the default ephemeral range.
const END: u16 = 32768;

/// The largest block handed out at once.
pub const MAX_BLOCK: u16 = 16;

/// A block of `n` consecutive host ports, free for TCP and UDP on 0.0.0.0 and [::].
/// Panics if the whole range is exhausted (no test needs that many).
pub fn free_block(n: u16) -> u16 {
    assert!(
        (1..=MAX_BLOCK).contains(&n),
        "blocks are 1 to {MAX_BLOCK} ports"
    );
    static TAKEN: AtomicU32 = AtomicU32::new(0);
    // One modulus for every block size, so that blocks taken in turn never overlap.
    let span = u32::from(END - FIRST - MAX_BLOCK);
    // Each test binary starts at its own offset, so two runs on one machine rarely meet.
    let seed = std::process::id() % span;
    for _ in 0..span {
        let k = TAKEN.fetch_add(u32::from(n), Ordering::Relaxed);
        let base = FIRST + u16::try_from((seed + k) % span).expect("span fits in u16");
        if (base..base + n).all(is_free) {
            return base;
        }
    }
    panic!("no block of {n} free ports in {FIRST}..{END}");
}

/// One free host port (see `free_block`).
pub fn free_port() -> u16 {
    free_block(1)
}

/// True if `port` can be bound now for TCP and UDP on 0.0.0.0 and [::] (nothing of ours or
/// anyone else's holds it).
pub fn is_free(port: u16) -> bool {
    let addrs = [
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
    ];
    addrs
        .iter()
        .all(|a| TcpListener::bind(a).is_ok() && UdpSocket::bind(a).is_ok())
}
