//! Socket calls the data path needs that nix does not wrap (or wraps with an allocation per
//! call): SO_PEEK_OFF, MSG_TRUNC discard, SIOCOUTQ, recvmmsg, and ICMP ping sockets. One
//! syscall per function; no state, no policy.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// SIOCOUTQ (= TIOCOUTQ): bytes in a TCP socket's send queue not yet acknowledged.
const SIOCOUTQ: libc::c_ulong = 0x5411;

/// Sets SO_PEEK_OFF: the next MSG_PEEK read starts `offset` bytes into the receive queue.
pub fn set_peek_off(fd: BorrowedFd<'_>, offset: i32) -> io::Result<()> {
    // SAFETY: we pass a pointer to a live i32 and its exact size; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEEK_OFF,
            (&offset as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Copies queued bytes into `buf` without consuming them (MSG_PEEK, non-blocking).
/// Ok(0) means the peer closed and every byte before its FIN has been peeked.
pub fn peek(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid writable slice for its whole length during the call.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Drops up to `len` bytes from the head of a TCP receive queue without copying them
/// (MSG_TRUNC on TCP discards, see tcp(7)).
pub fn discard(fd: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: with MSG_TRUNC the kernel copies nothing into the buffer, so a null pointer
    // is never dereferenced; `len` only bounds how much is dropped.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Most datagrams one `recv_batch` call reads.
pub const MAX_BATCH: usize = 8;

/// Reads up to `bufs.len()` (at most `MAX_BATCH`) datagrams from a connected socket with one
/// non-blocking recvmmsg; datagram i goes to `bufs[i]` and its full length to `lens[i]`
/// (MSG_TRUNC: a length above the buffer's means the datagram was cut). Returns how many
/// were read, at least one; the error of the first read otherwise (WouldBlock when none is
/// queued). Nix's recvmmsg allocates its headers per call; this keeps them on the stack.
pub fn recv_batch(
    fd: BorrowedFd<'_>,
    bufs: &mut [&mut [u8]],
    lens: &mut [usize],
) -> io::Result<usize> {
    let n = bufs.len().min(lens.len()).min(MAX_BATCH);
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut iov = [empty; MAX_BATCH];
    // SAFETY: mmsghdr is plain old data; all zeroes is a valid value (no name, no control,
    // no iovecs, zero lengths).
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for ((v, m), b) in iov
        .iter_mut()
        .zip(msgs.iter_mut())
        .zip(bufs.iter_mut())
        .take(n)
    {
        v.iov_base = b.as_mut_ptr().cast();
        v.iov_len = b.len();
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `n` headers point at iovecs in `iov`, which point into `bufs`; all
    // of them are live and writable for the whole call and the kernel writes within the
    // given lengths. A null timeout is allowed (no timeout).
    let rc = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            std::ptr::null_mut(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = (rc as usize).min(n);
    for (len, m) in lens.iter_mut().zip(msgs.iter()).take(got) {
        *len = m.msg_len as usize;
    }
    Ok(got)
}

/// Bytes written to a TCP socket that the peer has not acknowledged yet (SIOCOUTQ).
pub fn outq(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut value: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer, which points at `value`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCOUTQ, &mut value) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.max(0) as usize)
}

/// Opens an unprivileged ICMP (`v6` false) or ICMPv6 echo ("ping") socket; fails with
/// EACCES when the caller's gid is outside net.ipv4.ping_group_range (which governs both).
pub fn ping_socket(v6: bool) -> io::Result<OwnedFd> {
    let (family, proto) = if v6 {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6)
    } else {
        (libc::AF_INET, libc::IPPROTO_ICMP)
    };
    // SAFETY: socket(2) takes no pointers; on success we own the returned descriptor.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            proto,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
