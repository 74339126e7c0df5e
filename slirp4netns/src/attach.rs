//! Getting the tap fd out of the target's network namespace, slirp4netns's process contract:
//! ```text
//! parent: open the target's namespace files (errors here, before anything forks)
//!         Channel::pair; fork ------------------------------> child
//!         waitpid(child)                                      join userns (the netns's owner,
//!                                                               or --userns-path), then netns
//!                                                             open TAPNAME (attach or create)
//!                                                             -c: lo up, tap MTU/MAC/up,
//!                                                               addresses and routes
//!                                                             send TAG_TAP + fd; print
//!                                                               "sent tapfd=N for TAP"; exit 0
//!         exit 0? else "child failed(N)", exit N
//!         recv the fd; print "received tapfd=N"
//! ```
//! The parent never changes namespaces: the stack's sockets stay in the caller's. With
//! `--netns-type=tapfd` there is no child; the inherited fd is checked to be a tap device.
//! Called by `run`; prints only the contract's two lines and the child's final error.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use anyhow::Context;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use rr_ns::enter::Target;
use rr_ns::fdpass::Channel;
use rr_ns::process::{fork, Forked};

use crate::banner;
use crate::config::{Config, TapSource};

/// The message that carries the tap fd.
const TAG_TAP: u8 = 1;

/// Why no tap fd came out.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The child reported its own error and exited with this status (passed on, as
    /// slirp4netns does).
    #[error("child failed({0})")]
    ChildFailed(i32),
    /// The child was killed, or stopped being our child.
    #[error("child failed(wstatus={0}, !WIFEXITED)")]
    ChildKilled(String),
    /// The child exited 0 without sending an fd, or sent something else.
    #[error("failed to receive tapfd from child: {0}")]
    Protocol(&'static str),
    /// `--netns-type=tapfd` names something that is not a tap device without packet info.
    #[error("--netns-type=tapfd {fd}: not a tap device opened with IFF_TAP | IFF_NO_PI")]
    NotTap {
        /// The fd number.
        fd: i32,
    },
}

impl AttachError {
    /// The exit status slirp4netns gives this failure.
    pub fn exit_status(&self) -> i32 {
        match self {
            AttachError::ChildFailed(code) => *code,
            _ => 1,
        }
    }
}

/// The tap fd for `cfg`: from a child that joins the namespace, or the inherited one.
/// `inherited_tap` is the taken `--netns-type=tapfd` fd, if that is the source. Also returns
/// the opened target namespaces, which `--enable-sandbox` joins (the user namespace) later.
pub fn tap(
    cfg: &Config,
    prog: &str,
    inherited_tap: Option<OwnedFd>,
) -> anyhow::Result<(OwnedFd, Option<Target>)> {
    match (&cfg.source, inherited_tap) {
        (TapSource::Fd(fd), Some(tap)) => {
            check_tap(&tap).ok_or(AttachError::NotTap { fd: *fd })?;
            Ok((tap, None))
        }
        (TapSource::Namespace { net, userns }, None) => {
            let target = Target::open(net, userns.as_deref())?;
            let tap = from_child(cfg, prog, &target)?;
            Ok((tap, Some(target)))
        }
        _ => unreachable!("main takes the tap fd exactly when the source is an fd"),
    }
}

/// Whether `fd` is a tap device whose frames carry no packet-info header.
fn check_tap(fd: &OwnedFd) -> Option<()> {
    use netstack::sys::tap::{tap_flags, IFF_NO_PI, IFF_TAP};
    let flags = tap_flags(fd.as_fd()).ok()?;
    (flags & IFF_TAP != 0 && flags & IFF_NO_PI != 0).then_some(())
}

fn from_child(cfg: &Config, prog: &str, target: &Target) -> anyhow::Result<OwnedFd> {
    let (ours, theirs) = Channel::pair().context("cannot create the socketpair for the tap fd")?;
    let parent = nix::unistd::getpid();
    match fork().context("cannot fork the namespace child")? {
        Forked::Child => {
            drop(ours);
            rr_ns::forked::child_main(prog, parent, || child(cfg, target, &theirs))
        }
        Forked::Parent(pid) => {
            drop(theirs);
            wait_child(pid)?;
            let fd = receive_tap(&ours)?;
            eprintln!("{}", banner::received_tapfd(fd.as_raw_fd()));
            Ok(fd)
        }
    }
}

/// The child: joins the namespaces, opens and configures the tap, sends it.
fn child(cfg: &Config, target: &Target, chan: &Channel) -> anyhow::Result<()> {
    target.enter()?;
    let tap = netstack::tap::open(&cfg.tap_name)?;
    if cfg.configure {
        netstack::netconf::configure(&cfg.tap_name, cfg.mtu, &cfg.addr, cfg.ipv6, cfg.mac)
            .with_context(|| format!("--configure {}", cfg.tap_name))?;
    }
    // With or without --configure (rootlesskit configures the tap itself), every TCP
    // connection of the namespace ends at our stack: no pacing over the tap.
    netstack::netconf::tap_congestion_control();
    send_tap(chan, &tap).context("cannot send the tap fd to the parent")?;
    eprintln!("{}", banner::sent_tapfd(tap.as_raw_fd(), &cfg.tap_name));
    Ok(())
}

fn wait_child(pid: Pid) -> Result<(), AttachError> {
    let status = loop {
        match waitpid(pid, None) {
            Ok(s) => break s,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(AttachError::ChildKilled(format!("waitpid: {e}"))),
        }
    };
    child_verdict(status)
}

/// What the child's wait status means for us.
fn child_verdict(status: WaitStatus) -> Result<(), AttachError> {
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        WaitStatus::Exited(_, code) => Err(AttachError::ChildFailed(code)),
        other => Err(AttachError::ChildKilled(format!("{other:?}"))),
    }
}

/// Sends the tap fd over the channel.
fn send_tap(chan: &Channel, tap: &OwnedFd) -> std::io::Result<()> {
    chan.send(TAG_TAP, &[], &[tap.as_fd()])
}

/// Receives the tap fd the child sent.
fn receive_tap(chan: &Channel) -> Result<OwnedFd, AttachError> {
    let msg = chan
        .recv()
        .map_err(|_| AttachError::Protocol("recvmsg failed"))?
        .ok_or(AttachError::Protocol("the child sent nothing"))?;
    if msg.tag != TAG_TAP {
        return Err(AttachError::Protocol("unexpected message"));
    }
    let mut fds = msg.fds.into_iter();
    match (fds.next(), fds.next()) {
        (Some(fd), None) => Ok(fd),
        (None, _) => Err(AttachError::Protocol("the message does not contain fd")),
        (Some(_), Some(_)) => Err(AttachError::Protocol("more than one fd")),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    use nix::sys::signal::Signal;

    use super::*;

    #[test]
    fn the_tap_fd_crosses_the_channel_and_is_the_same_file() {
        let (parent, child) = Channel::pair().unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        send_tap(&child, &w).unwrap();
        drop(w);
        let got = receive_tap(&parent).unwrap();
        assert_ne!(got.as_raw_fd(), -1);
        let mut wf = std::fs::File::from(got);
        wf.write_all(b"x").unwrap();
        drop(wf);
        let mut buf = Vec::new();
        std::fs::File::from(r).read_to_end(&mut buf).unwrap();
        assert_eq!(buf, b"x");
    }

    #[test]
    fn a_child_that_sent_nothing_or_no_fd_is_a_protocol_error() {
        let (parent, child) = Channel::pair().unwrap();
        drop(child);
        let e = receive_tap(&parent).unwrap_err();
        assert!(
            matches!(e, AttachError::Protocol("the child sent nothing")),
            "{e}"
        );
        let (parent, child) = Channel::pair().unwrap();
        child.send(TAG_TAP, &[], &[]).unwrap();
        let e = receive_tap(&parent).unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to receive tapfd from child: the message does not contain fd"
        );
        let (parent, child) = Channel::pair().unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        child.send(TAG_TAP + 1, &[], &[r.as_fd()]).unwrap();
        assert!(matches!(
            receive_tap(&parent),
            Err(AttachError::Protocol("unexpected message"))
        ));
    }

    #[test]
    fn child_status_is_passed_on_as_slirp4netns_does() {
        let pid = Pid::from_raw(100);
        assert!(child_verdict(WaitStatus::Exited(pid, 0)).is_ok());
        let e = child_verdict(WaitStatus::Exited(pid, 3)).unwrap_err();
        assert_eq!(e.to_string(), "child failed(3)");
        assert_eq!(e.exit_status(), 3);
        let e = child_verdict(WaitStatus::Signaled(pid, Signal::SIGKILL, false)).unwrap_err();
        assert!(e.to_string().starts_with("child failed(wstatus="), "{e}");
        assert_eq!(e.exit_status(), 1);
    }

    #[test]
    fn a_pipe_is_not_a_tap() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert!(check_tap(&r).is_none());
    }
}
