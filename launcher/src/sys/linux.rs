//! `Linux`: the real `Kernel`, one syscall per method via nix (and `caps` for --keep-caps,
//! `process` for fork, exec and signal masks, netstack for tap0, rr-ns for the channel).
//! Holds no state; the order of calls is the caller's business.

use std::convert::Infallible;
use std::ffi::OsString;
use std::fs::{OpenOptions, Permissions};
use std::io::Write;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use netstack::netconf::NetconfError;
use netstack::tap::TapError;
use nix::mount::MntFlags;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{Gid, Uid};
use rr_ns::fdpass::Channel;

use super::process::{self, ExecError, Forked, Lifeline};
use crate::kernel::{Kernel, KernelError, Mount, ProcFile, TapConfig};

/// The running kernel.
#[derive(Debug, Default)]
pub struct Linux;

fn errno_of(e: &std::io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

impl Kernel for Linux {
    fn unshare(&mut self, flags: CloneFlags) -> Result<(), KernelError> {
        nix::sched::unshare(flags).map_err(|e| KernelError::new("unshare", "", e))
    }

    fn write_proc(&mut self, file: ProcFile, contents: &str) -> Result<(), KernelError> {
        let err = |e: &std::io::Error| KernelError::new("write", file.path(), errno_of(e));
        let mut f = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(file.path())
            .map_err(|e| err(&e))?;
        // id maps must arrive in one write(2); a short write would be a truncated map.
        let n = f.write(contents.as_bytes()).map_err(|e| err(&e))?;
        if n != contents.len() {
            return Err(KernelError::new(
                "write",
                file.path(),
                nix::errno::Errno::EIO,
            ));
        }
        Ok(())
    }

    fn set_pdeathsig(&mut self, sig: Signal) -> Result<(), KernelError> {
        nix::sys::prctl::set_pdeathsig(sig)
            .map_err(|e| KernelError::new("prctl(PR_SET_PDEATHSIG)", sig.as_str(), e))
    }

    fn parent_pid(&mut self) -> i32 {
        nix::unistd::getppid().as_raw()
    }

    fn parent_alive(&mut self, lifeline: &mut Lifeline) -> bool {
        lifeline.parent_alive()
    }

    fn setns_pid(&mut self, pid: i32, flags: CloneFlags) -> Result<(), KernelError> {
        let fd = super::pidfd::PidFd::open(pid)
            .map_err(|e| KernelError::new("pidfd_open", pid.to_string(), e))?;
        nix::sched::setns(&fd, flags).map_err(|e| KernelError::new("setns", pid.to_string(), e))
    }

    fn setns_file(&mut self, path: &Path, flag: CloneFlags) -> Result<(), KernelError> {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| KernelError::new("open", show(path), errno_of(&e)))?;
        nix::sched::setns(&f, flag).map_err(|e| KernelError::new("setns", show(path), e))
    }

    fn mount(&mut self, m: &Mount) -> Result<(), KernelError> {
        nix::mount::mount(
            m.source.as_deref(),
            &m.target,
            m.fstype,
            m.flags,
            None::<&str>,
        )
        .map_err(|e| KernelError::new("mount", show(&m.target), e))
    }

    fn write_file(&mut self, path: &Path, contents: &str) -> Result<(), KernelError> {
        let err = |e: &std::io::Error| KernelError::new("write", show(path), errno_of(e));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| err(&e))?;
        f.write_all(contents.as_bytes()).map_err(|e| err(&e))?;
        // The umask may have taken read bits that a --setuid user needs.
        f.set_permissions(Permissions::from_mode(0o644))
            .map_err(|e| err(&e))
    }

    fn umount_detach(&mut self, target: &Path) -> Result<(), KernelError> {
        nix::mount::umount2(target, MntFlags::MNT_DETACH)
            .map_err(|e| KernelError::new("umount", show(target), e))
    }

    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> Result<(), KernelError> {
        nix::unistd::pivot_root(new_root, put_old)
            .map_err(|e| KernelError::new("pivot_root", show(new_root), e))
    }

    fn chroot(&mut self, dir: &Path) -> Result<(), KernelError> {
        nix::unistd::chroot(dir).map_err(|e| KernelError::new("chroot", show(dir), e))
    }

    fn chdir(&mut self, dir: &Path) -> Result<(), KernelError> {
        nix::unistd::chdir(dir).map_err(|e| KernelError::new("chdir", show(dir), e))
    }

    fn sethostname(&mut self, name: &str) -> Result<(), KernelError> {
        nix::unistd::sethostname(name).map_err(|e| KernelError::new("sethostname", name, e))
    }

    fn clear_groups(&mut self) -> Result<(), KernelError> {
        nix::unistd::setgroups(&[]).map_err(|e| KernelError::new("setgroups", "[]", e))
    }

    fn setgid(&mut self, gid: u32) -> Result<(), KernelError> {
        let g = Gid::from_raw(gid);
        nix::unistd::setresgid(g, g, g).map_err(|e| KernelError::new("setgid", gid.to_string(), e))
    }

    fn setuid(&mut self, uid: u32) -> Result<(), KernelError> {
        let u = Uid::from_raw(uid);
        nix::unistd::setresuid(u, u, u).map_err(|e| KernelError::new("setuid", uid.to_string(), e))
    }

    fn keep_caps(&mut self) -> Result<(), KernelError> {
        super::caps::keep_all().map_err(|(call, e)| KernelError::new(call, "", e))
    }

    fn open_tap(&mut self, name: &str) -> Result<OwnedFd, TapError> {
        netstack::tap::open(name)
    }

    fn configure_tap(&mut self, tap: &TapConfig) -> Result<(), NetconfError> {
        netstack::netconf::configure_as(
            &tap.name,
            tap.mtu,
            &tap.addr,
            tap.sandbox,
            tap.ipv6,
            tap.mac,
        )?;
        if !tap.veth {
            // Our stack ends every TCP connection of the sandbox: see the function.
            netstack::netconf::tap_congestion_control();
        }
        Ok(())
    }

    fn persist_tap(&mut self, tap: BorrowedFd<'_>) -> Result<(), KernelError> {
        process::tap_set_persist(tap).map_err(|e| KernelError::new("ioctl(TUNSETPERSIST)", "", e))
    }

    fn send(&mut self, chan: &Channel, tag: u8, fds: &[BorrowedFd<'_>]) -> Result<(), KernelError> {
        chan.send(tag, &[], fds)
            .map_err(|e| KernelError::new("sendmsg", "", errno_of(&e)))
    }

    fn recv(&mut self, chan: &Channel) -> Result<Option<u8>, KernelError> {
        let msg = chan
            .recv()
            .map_err(|e| KernelError::new("recvmsg", "", errno_of(&e)))?;
        Ok(msg.map(|m| m.tag))
    }

    fn fork(&mut self) -> Result<Forked, KernelError> {
        process::fork().map_err(|e| KernelError::new("fork", "", e))
    }

    fn pid(&mut self) -> i32 {
        nix::unistd::getpid().as_raw()
    }

    fn block_signal(&mut self, sig: Signal) -> Result<(), KernelError> {
        process::block(sig).map_err(|e| KernelError::new("sigprocmask", sig.as_str(), e))
    }

    fn set_child_subreaper(&mut self) -> Result<(), KernelError> {
        process::become_subreaper()
            .map_err(|e| KernelError::new("prctl(PR_SET_CHILD_SUBREAPER)", "", e))
    }

    fn stdio_to_devnull(&mut self) -> Result<(), KernelError> {
        process::stdio_to_devnull().map_err(|e| KernelError::new("dup2", "/dev/null", errno_of(&e)))
    }

    fn restore_for_exec(&mut self, mask: &SigSet) -> Result<(), KernelError> {
        process::restore_for_exec(mask).map_err(|e| KernelError::new("sigprocmask", "", e))
    }

    fn exec(&mut self, argv: &[OsString]) -> Result<Infallible, ExecError> {
        process::exec(argv)
    }
}
