//! The sandbox's tap device: opened inside the sandbox's network namespace, used in the parent.
//! `open` runs in the launcher's child (or slirp4netns-compat's child) before the fd is passed
//! over SCM_RIGHTS; the event loop then reads and writes whole Ethernet frames on it.
//! Plain frames (IFF_TAP|IFF_NO_PI) for now; vnet_hdr offloads hook in here.

use std::ffi::CString;
use std::os::fd::OwnedFd;

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
    sys::tap::open_tap(&cname, sys::tap::IFF_TAP | sys::tap::IFF_NO_PI).map_err(|e| {
        match (e.call, e.source.raw_os_error()) {
            ("open /dev/net/tun", Some(libc::ENOENT)) => TapError::Missing(e),
            ("open /dev/net/tun", Some(libc::EACCES | libc::EPERM)) => TapError::Denied(e),
            _ => TapError::Create {
                name: name.into(),
                source: e,
            },
        }
    })
}
