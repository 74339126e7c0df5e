//! Capability sets: capget/capset and ambient raising for `--keep-caps`.
//! Called through `Kernel::keep_caps` only; knows nothing of users or namespaces.

use nix::errno::Errno;

/// _LINUX_CAPABILITY_VERSION_3 from <linux/capability.h>: two 32-bit words per set.
const CAP_VERSION_3: u32 = 0x2008_0522;
/// prctl(2) options from <linux/prctl.h>.
const PR_CAP_AMBIENT: libc::c_int = 47;
const PR_CAP_AMBIENT_RAISE: libc::c_ulong = 2;
const PR_SET_KEEPCAPS: libc::c_int = 8;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Highest capability number the running kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40) // CAP_CHECKPOINT_RESTORE, the last one as of Linux 6.x
}

/// Keeps permitted capabilities across setuid (PR_SET_KEEPCAPS), copies the permitted set to
/// the inheritable one and raises each as ambient, so they survive exec as a non-root uid.
pub fn keep_all() -> Result<(), (&'static str, Errno)> {
    // SAFETY: PR_SET_KEEPCAPS takes one integer argument and touches no memory of ours.
    if unsafe { libc::prctl(PR_SET_KEEPCAPS, 1 as libc::c_ulong, 0, 0, 0) } < 0 {
        return Err(("prctl(PR_SET_KEEPCAPS)", Errno::last()));
    }
    let mut hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 reads/writes exactly two CapData entries; both structs are repr(C),
    // initialised and live across the call.
    if unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) } < 0 {
        return Err(("capget", Errno::last()));
    }
    for d in &mut data {
        d.inheritable = d.permitted;
    }
    // SAFETY: as for capget; capset only reads the two entries.
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) } < 0 {
        return Err(("capset", Errno::last()));
    }
    for cap in 0..=last_cap() {
        let word = data.get((cap / 32) as usize).map_or(0, |d| d.permitted);
        if word & (1 << (cap % 32)) == 0 {
            continue;
        }
        // SAFETY: PR_CAP_AMBIENT_RAISE takes integer arguments only.
        let rc = unsafe {
            libc::prctl(
                PR_CAP_AMBIENT,
                PR_CAP_AMBIENT_RAISE,
                cap as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        if rc < 0 {
            return Err(("prctl(PR_CAP_AMBIENT_RAISE)", Errno::last()));
        }
    }
    Ok(())
}
