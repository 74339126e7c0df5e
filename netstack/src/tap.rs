//! The sandbox's tap device: opened inside the sandbox's network namespace, used in the parent.
//! `open` runs in the launcher's child (or slirp4netns-compat's child) before the fd is passed
//! over SCM_RIGHTS; the event loop then reads and writes whole Ethernet frames on it.
//! We ask for IFF_VNET_HDR with TSO4/TSO6/CSUM offloads, so the sandbox's kernel hands over
//! 64 KiB TCP super-frames at any MTU and we may send such frames back; if the kernel
//! refuses, we fall back to plain frames. The parent learns which with `has_vnet_hdr`.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys::{self, SysError};

/// Failure to open or set up the tap device.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name has a NUL byte or is longer than IFNAMSIZ - 1.
    #[error("invalid tap device name {name:?}")]
    BadName {
        /// The rejected name.
        name: String,
    },
    /// /dev/net/tun does not exist.
    #[error(
        "{} is missing (load the tun module or create the device node)",
        sys::tap::TUN_PATH
    )]
    Missing(#[source] SysError),
    /// /dev/net/tun exists but this user may not open it.
    #[error(
        "{} is not accessible to this user (most distros ship it mode 0666: chmod 0666 {})",
        sys::tap::TUN_PATH,
        sys::tap::TUN_PATH
    )]
    Denied(#[source] SysError),
    /// TUNSETIFF or the open failed for another reason.
    #[error("cannot create tap device {name}")]
    Create {
        /// Device name.
        name: String,
        /// The failing call.
        #[source]
        source: SysError,
    },
}

/// Opens (creating if needed) tap device `name` in the current network namespace.
pub fn open(name: &str) -> Result<OwnedFd, TapError> {
    let cname = CString::new(name).map_err(|_| TapError::BadName { name: name.into() })?;
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(TapError::BadName { name: name.into() });
    }
    let plain = sys::tap::IFF_TAP | sys::tap::IFF_NO_PI;
    match sys::tap::open_tap(&cname, plain | sys::tap::IFF_VNET_HDR) {
        Ok(fd) => match enable_offloads(fd.as_fd()) {
            Ok(()) => return Ok(fd),
            Err(error) => tracing::debug!(%error, "no vnet_hdr offloads; using plain frames"),
        },
        Err(error) => tracing::debug!(%error, "IFF_VNET_HDR refused; using plain frames"),
    }
    sys::tap::open_tap(&cname, plain).map_err(|e| match (e.call, e.source.raw_os_error()) {
        ("open /dev/net/tun", Some(libc::ENOENT)) => TapError::Missing(e),
        ("open /dev/net/tun", Some(libc::EACCES | libc::EPERM)) => TapError::Denied(e),
        _ => TapError::Create {
            name: name.into(),
            source: e,
        },
    })
}

/// Size of the virtio-net header we use (`virtio_net_hdr_mrg_rxbuf`).
pub const VNET_HDR_LEN: usize = 12;

fn enable_offloads(fd: BorrowedFd<'_>) -> Result<(), SysError> {
    sys::tap::set_vnet_hdr_size(fd, VNET_HDR_LEN as i32)?;
    use sys::tap::{TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6};
    sys::tap::set_offload(fd, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
}

/// Whether frames on this tap fd carry a virtio-net header (see `open`).
pub fn has_vnet_hdr(fd: BorrowedFd<'_>) -> bool {
    sys::tap::tap_flags(fd).is_ok_and(|f| f & sys::tap::IFF_VNET_HDR != 0)
}

/// The tap device's current MAC address, asked of its fd; `None` when the fd is no tap (a
/// socket pair in tests) or the kernel will not say.
pub fn device_mac(fd: BorrowedFd<'_>) -> Option<[u8; 6]> {
    sys::tap::hw_addr(fd).ok()
}
