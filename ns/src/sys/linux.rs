//! `Linux`: the real `confine::kernel::SandboxKernel`, one syscall per method through nix's
//! safe wrappers, `sys::caps` or `sys::landlock`. No policy and no state; `confine::sandbox` decides the order.

use std::path::Path;

use nix::errno::Errno;
use nix::mount::MntFlags;
use nix::sched::CloneFlags;

use super::{caps, landlock};
use crate::confine::kernel::{Mount, SandboxKernel};

/// This process's threads are listed here, one directory each (proc(5)).
const TASK_DIR: &str = "/proc/self/task";

/// The running kernel.
#[derive(Debug, Default)]
pub struct Linux;

impl SandboxKernel for Linux {
    fn threads(&mut self) -> std::io::Result<usize> {
        let mut n = 0;
        for entry in std::fs::read_dir(TASK_DIR)? {
            entry?;
            n += 1;
        }
        Ok(n)
    }

    fn unshare(&mut self, flags: CloneFlags) -> Result<(), Errno> {
        nix::sched::unshare(flags)
    }

    fn mount(&mut self, m: &Mount) -> Result<(), Errno> {
        nix::mount::mount(m.source, m.target, m.fstype, m.flags, m.data)
    }

    fn chdir(&mut self, dir: &Path) -> Result<(), Errno> {
        nix::unistd::chdir(dir)
    }

    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> Result<(), Errno> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn umount_detach(&mut self, target: &Path) -> Result<(), Errno> {
        nix::mount::umount2(target, MntFlags::MNT_DETACH)
    }

    fn set_securebits(&mut self, bits: libc::c_int) -> Result<(), Errno> {
        caps::set_securebits(bits)
    }

    fn drop_bounding(&mut self, cap: u32) -> Result<(), Errno> {
        caps::drop_bounding(cap)
    }

    fn clear_ambient(&mut self) -> Result<(), Errno> {
        caps::clear_ambient()
    }

    fn capset(&mut self, caps: u64) -> Result<(), Errno> {
        caps::capset(caps)
    }

    fn set_no_new_privs(&mut self) -> Result<(), Errno> {
        nix::sys::prctl::set_no_new_privs()
    }

    fn landlock_abi(&mut self) -> Result<u32, Errno> {
        landlock::abi()
    }

    fn landlock_deny_filesystem(&mut self, abi: u32) -> Result<(), Errno> {
        landlock::deny_filesystem(abi)
    }
}
