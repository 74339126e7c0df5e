//! The one thing the test helpers need that nix offers only unsafely: a `sockaddr_ll` naming an
//! interface, to bind a packet socket to it (packet(7)). Used by `frames`; nothing else here.
//! Every `unsafe` block carries its SAFETY note; keep this file that small.

use std::mem;

use nix::libc;
use nix::sys::socket::{LinkAddr, SockaddrLike};

/// A link-layer address for interface `ifindex` and ethertype `protocol` (host byte order),
/// as `bind` on an AF_PACKET socket takes it.
pub fn link_addr(ifindex: u32, protocol: u16) -> LinkAddr {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value of it.
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::sa_family_t;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = i32::try_from(ifindex).expect("interface indexes fit in an int");
    let len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `sll` is an initialised sockaddr_ll of family AF_PACKET that lives across the
    // call, and `len` is its exact size, which is what from_raw checks and copies.
    unsafe { LinkAddr::from_raw(std::ptr::addr_of!(sll).cast::<libc::sockaddr>(), Some(len)) }
        .expect("an AF_PACKET sockaddr_ll of the right size is a LinkAddr")
}
