//! Capability calls for `confine::sandbox`: securebits, the bounding set, the ambient set and
//! capset(2). One syscall per function, integers in and `Errno` out; the order and the policy
//! (which capabilities stay) belong to `confine::sandbox`. No state; stays this small.

use nix::errno::Errno;

/// `_LINUX_CAPABILITY_VERSION_3` (linux/capability.h): 64-bit sets, as two `CapData` words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct` (linux/capability.h).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct` (linux/capability.h): one 32-bit half of each set.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// prctl(PR_SET_SECUREBITS, bits): needs CAP_SETPCAP; locked bits can never be cleared again.
pub fn set_securebits(bits: libc::c_int) -> Result<(), Errno> {
    let bits = libc::c_ulong::try_from(bits).map_err(|_| Errno::EINVAL)?;
    // SAFETY: PR_SET_SECUREBITS takes one integer argument; no memory is passed.
    let rc = unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits, 0 as libc::c_ulong) };
    Errno::result(rc).map(drop)
}

/// prctl(PR_CAPBSET_DROP, cap): removes `cap` from this thread's bounding set. EINVAL means the
/// kernel has no capability with that number (beyond CAP_LAST_CAP).
pub fn drop_bounding(cap: u32) -> Result<(), Errno> {
    // SAFETY: PR_CAPBSET_DROP takes one integer argument; no memory is passed.
    let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap)) };
    Errno::result(rc).map(drop)
}

/// prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL): empties the ambient set (Linux >= 4.3).
pub fn clear_ambient() -> Result<(), Errno> {
    let clear = libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong;
    // SAFETY: PR_CAP_AMBIENT takes integer arguments only; the unused ones must be zero.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            clear,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    Errno::result(rc).map(drop)
}

/// capset(2) on this thread: effective = permitted = `caps` (bit N = capability N), inheritable
/// empty. Lowering needs no privilege; raising above the current permitted set fails.
pub fn capset(caps: u64) -> Result<(), Errno> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |word: u32| CapData {
        effective: word,
        permitted: word,
        inheritable: 0,
    };
    // Truncation is the point: the low and the high 32 bits of the set.
    let data = [half(caps as u32), half((caps >> 32) as u32)];
    // SAFETY: `header` and `data` outlive the call; with version 3 the kernel reads exactly two
    // CapData structs from `data` and may write the preferred version into `header`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    Errno::result(rc).map(drop)
}
