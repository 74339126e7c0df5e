//! Landlock calls for `confine::sandbox`: the kernel's ABI version, and a ruleset that handles
//! every filesystem access right the kernel knows and allows none, applied to this thread (and
//! the threads it starts later). One syscall per function; which rights and scopes to ask for
//! by ABI version is decided here, because it is a property of the kernel interface
//! (linux/landlock.h), not policy. No state; stays this small.

use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;

/// LANDLOCK_CREATE_RULESET_VERSION: landlock_create_ruleset(NULL, 0, this) answers the ABI.
const CREATE_RULESET_VERSION: u32 = 1;
/// LANDLOCK_ACCESS_FS_EXECUTE ..= LANDLOCK_ACCESS_FS_MAKE_SYM: the 13 rights of ABI 1.
const FS_ABI1: u64 = (1 << 13) - 1;
/// LANDLOCK_ACCESS_FS_REFER (ABI 2).
const FS_REFER: u64 = 1 << 13;
/// LANDLOCK_ACCESS_FS_TRUNCATE (ABI 3).
const FS_TRUNCATE: u64 = 1 << 14;
/// LANDLOCK_ACCESS_FS_IOCTL_DEV (ABI 5).
const FS_IOCTL_DEV: u64 = 1 << 15;
/// LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL (ABI 6): no connecting to
/// abstract unix sockets, no signals, outside this domain.
const SCOPES_ABI6: u64 = (1 << 0) | (1 << 1);

/// `struct landlock_ruleset_attr` (linux/landlock.h, ABI 6). Older kernels accept it whole as
/// long as the fields they do not know are zero.
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// The Landlock ABI version; ENOSYS (not built) or EOPNOTSUPP (not enabled at boot) when there
/// is none.
pub fn abi() -> Result<u32, Errno> {
    // SAFETY: with a NULL attribute and size 0 the kernel reads no memory; it only answers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    let rc = Errno::result(rc)?;
    u32::try_from(rc).map_err(|_| Errno::EINVAL)
}

/// The filesystem rights Landlock `abi` knows (all of them get handled, none allowed).
fn fs_rights(abi: u32) -> u64 {
    let mut rights = FS_ABI1;
    if abi >= 2 {
        rights |= FS_REFER;
    }
    if abi >= 3 {
        rights |= FS_TRUNCATE;
    }
    if abi >= 5 {
        rights |= FS_IOCTL_DEV;
    }
    rights
}

/// Restricts this thread (and threads it starts later) to no filesystem access at all under
/// Landlock `abi`: every path-based open, exec, create, remove, rename, truncate and device
/// ioctl fails with EACCES. Needs no_new_privs (or CAP_SYS_ADMIN). Network rights are left
/// unhandled (the stack connects and binds TCP); with ABI 6 and later, signals and abstract
/// unix sockets are scoped to the domain.
pub fn deny_filesystem(abi: u32) -> Result<(), Errno> {
    let attr = RulesetAttr {
        handled_access_fs: fs_rights(abi),
        handled_access_net: 0,
        scoped: if abi >= 6 { SCOPES_ABI6 } else { 0 },
    };
    // SAFETY: `attr` is an initialised landlock_ruleset_attr that outlives the call, and its
    // size is passed; the kernel only reads it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            std::mem::size_of::<RulesetAttr>(),
            0u32,
        )
    };
    let fd = Errno::result(rc)?;
    let fd = libc::c_int::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: landlock_create_ruleset returned a new fd that nothing else owns.
    let ruleset = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: restrict_self takes the ruleset fd and flags 0; no memory is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_restrict_self,
            std::os::fd::AsRawFd::as_raw_fd(&ruleset),
            0u32,
        )
    };
    Errno::result(rc).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_abi_handles_the_rights_it_knows() {
        assert_eq!(fs_rights(1), 0x1fff);
        assert_eq!(fs_rights(2), 0x3fff);
        assert_eq!(fs_rights(4), 0x7fff);
        assert_eq!(fs_rights(7), 0xffff);
    }
}
