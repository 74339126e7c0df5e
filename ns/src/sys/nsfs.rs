//! Namespace files: open, NS_GET_USERNS, "is this our user namespace", setns. `Linux` is the
//! real `enter::NsKernel`; the ioctl is the only `unsafe` here.
//! Called by `enter`; decides nothing.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;
use nix::sched::CloneFlags;

use crate::enter::NsKernel;

/// ioctl group of nsfs (`NSIO` in include/uapi/linux/nsfs.h).
const NSIO: u8 = 0xb7;
/// `NS_GET_USERNS = _IO(NSIO, 0x1)`: returns a new fd for the user namespace owning a namespace.
const NS_GET_USERNS: u8 = 0x1;
/// Our own user namespace.
const SELF_USERNS: &str = "/proc/self/ns/user";

/// The user namespace owning the namespace `ns` (Linux 4.9+). ENOTTY on older kernels or a
/// non-namespace fd; EPERM when that user namespace is outside ours (an ancestor).
pub fn owning_userns(ns: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    // SAFETY: NS_GET_USERNS takes no argument and touches no memory of ours; `ns` is a valid
    // fd for the duration of the call.
    let rc = unsafe { libc::ioctl(ns.as_raw_fd(), nix::request_code_none!(NSIO, NS_GET_USERNS)) };
    if rc < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the ioctl returned a new fd (opened O_CLOEXEC by the kernel) that nothing else
    // in this process knows of, so this OwnedFd is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(rc) })
}

/// The real kernel behind `enter`.
#[derive(Debug)]
pub(crate) struct Linux;

impl NsKernel for Linux {
    type Ns = OwnedFd;

    fn open(&mut self, path: &Path) -> io::Result<OwnedFd> {
        // std opens with O_CLOEXEC.
        File::open(path).map(OwnedFd::from)
    }

    fn owner(&mut self, ns: &OwnedFd) -> Result<OwnedFd, Errno> {
        owning_userns(ns.as_fd())
    }

    fn is_current_userns(&mut self, ns: &OwnedFd) -> io::Result<bool> {
        let theirs = nix::sys::stat::fstat(ns.as_fd()).map_err(io::Error::from)?;
        let ours = std::fs::metadata(SELF_USERNS)?;
        Ok(theirs.st_dev as u64 == ours.dev() && theirs.st_ino as u64 == ours.ino())
    }

    fn join_user(&mut self, ns: &OwnedFd) -> Result<(), Errno> {
        nix::sched::setns(ns, CloneFlags::CLONE_NEWUSER)
    }

    fn join_net(&mut self, ns: &OwnedFd) -> Result<(), Errno> {
        nix::sched::setns(ns, CloneFlags::CLONE_NEWNET)
    }
}
