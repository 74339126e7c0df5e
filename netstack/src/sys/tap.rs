//! Tap device ioctls: TUNSETIFF, TUNSETVNETHDRSZ, TUNSETOFFLOAD, TUNGETIFF, SIOCGIFHWADDR.
//! Called by `tap` only: opens /dev/net/tun and returns an owned fd, and asks it what it is.
//!
//! We do not use the tun-tap crate here: it cannot set IFF_VNET_HDR, TUNSETOFFLOAD or
//! IFF_MULTI_QUEUE, and hides its fd inside a `File` it owns, which the SCM_RIGHTS hand-over
//! needs as an `OwnedFd`. Three ioctls are less code than working around that.

use std::ffi::CStr;
use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use super::SysError;

/// Path of the tun/tap clone device.
pub const TUN_PATH: &str = "/dev/net/tun";

// From <linux/if_tun.h>.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca; // _IOW('T', 202, int)
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0; // _IOW('T', 208, unsigned int)
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8; // _IOW('T', 216, int)
const TUNGETIFF: libc::c_ulong = 0x8004_54d2; // _IOR('T', 210, unsigned int)
/// Offload: the kernel may hand us frames with partial checksums (NEEDS_CSUM).
pub const TUN_F_CSUM: libc::c_uint = 0x01;
/// Offload: TCP over IPv4 segmentation (64 KiB super-frames).
pub const TUN_F_TSO4: libc::c_uint = 0x02;
/// Offload: TCP over IPv6 segmentation.
pub const TUN_F_TSO6: libc::c_uint = 0x04;
/// Ethernet frames, not IP packets.
pub const IFF_TAP: i16 = 0x0002;
/// No 4-byte packet-information prefix.
pub const IFF_NO_PI: i16 = 0x1000;
/// Each frame carries a `virtio_net_hdr` prefix describing checksum and GSO state.
pub const IFF_VNET_HDR: i16 = 0x4000;

/// `struct ifreq` as TUNSETIFF reads and writes it: name, flags, padding to 40 bytes.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: i16,
    _pad: [u8; 22],
}

/// Opens /dev/net/tun and attaches it to tap device `name` (created if missing) with `flags`.
pub fn open_tap(name: &CStr, flags: i16) -> Result<OwnedFd, SysError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(TUN_PATH)
        .map_err(|source| SysError {
            call: "open /dev/net/tun",
            source,
        })?;
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags,
        _pad: [0; 22],
    };
    let bytes = name.to_bytes();
    let len = bytes.len().min(libc::IFNAMSIZ - 1);
    req.name[..len].copy_from_slice(&bytes[..len]);
    // SAFETY: `req` is an initialised ifreq-sized struct that outlives the call, and
    // TUNSETIFF reads and writes at most size_of::<ifreq>() (40) bytes of it.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) };
    if rc < 0 {
        return Err(SysError::last("TUNSETIFF"));
    }
    Ok(file.into())
}

/// Sets the size of the virtio-net header prefixed to each frame (needs IFF_VNET_HDR).
pub fn set_vnet_hdr_size(fd: BorrowedFd<'_>, size: i32) -> Result<(), SysError> {
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer; `size` lives on our stack.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ, &size) };
    if rc < 0 {
        return Err(SysError::last("TUNSETVNETHDRSZ"));
    }
    Ok(())
}

/// Tells the kernel which offloads (TUN_F_*) we accept in frames it hands us.
pub fn set_offload(fd: BorrowedFd<'_>, flags: libc::c_uint) -> Result<(), SysError> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is shared.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, flags as libc::c_ulong) };
    if rc < 0 {
        return Err(SysError::last("TUNSETOFFLOAD"));
    }
    Ok(())
}

/// Reads the flags the tap fd was attached with (TUNGETIFF), e.g. to see IFF_VNET_HDR.
pub fn tap_flags(fd: BorrowedFd<'_>) -> Result<i16, SysError> {
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    // SAFETY: TUNGETIFF writes at most size_of::<ifreq>() (40) bytes into `req`, which is
    // that size and lives across the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNGETIFF, &mut req) };
    if rc < 0 {
        return Err(SysError::last("TUNGETIFF"));
    }
    Ok(req.flags)
}

/// `struct ifreq` as SIOCGIFHWADDR writes it: name, then a `sockaddr` whose data holds the
/// address, padded to 40 bytes.
#[repr(C)]
struct IfReqHwAddr {
    name: [u8; libc::IFNAMSIZ],
    family: u16,
    data: [u8; 14],
    _pad: [u8; 8],
}

/// The tap device's current link-layer (MAC) address, asked of the tun fd itself
/// (SIOCGIFHWADDR on a tun fd names its own device; no capability needed).
pub fn hw_addr(fd: BorrowedFd<'_>) -> Result<[u8; 6], SysError> {
    let mut req = IfReqHwAddr {
        name: [0; libc::IFNAMSIZ],
        family: 0,
        data: [0; 14],
        _pad: [0; 8],
    };
    // SAFETY: SIOCGIFHWADDR writes at most size_of::<ifreq>() (40) bytes into `req`, which is
    // that size and lives across the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if rc < 0 {
        return Err(SysError::last("SIOCGIFHWADDR"));
    }
    let mut mac = [0; 6];
    mac.copy_from_slice(&req.data[..6]);
    Ok(mac)
}
