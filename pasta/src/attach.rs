//! Getting the tap fd, and the `-T`/`-U` sockets, out of the target namespace, configured as
//! `plan` says:
//! ```text
//! parent: Target::open (errors here, before anything forks)
//!         Channel::pair; fork ------------------------> child (rr_ns::forked: dies with
//!                                                       the parent)
//!         receive until TAG_TAP or EOF                  join the userns, then the netns
//!                                                       open the tap named plan.ifname
//!                                                       plan.apply (lo, link, addresses,
//!                                                         neighbours, routes); TCP
//!                                                         congestion control reno
//!                                                       bind the -T/-U sockets (nsfwd);
//!                                                       send each, in order: TAG_NS_SOCK
//!                                                         + fd, or TAG_NS_SKIP
//!                                                       send TAG_TAP + fd; exit 0
//!         waitpid(child): exit 0? keep the fds; else fail (the child printed why)
//! ```
//! The parent receives while the child sends (one fd per message), so any number of sockets
//! passes without filling the socketpair. The parent never changes namespaces: the stack's
//! sockets stay in the host's.
//! Called by `run`; prints only the child's final error.

use std::os::fd::{AsFd, OwnedFd};

use anyhow::Context;
use nix::sys::wait::{waitpid, WaitStatus};
use rr_ns::enter::Target;
use rr_ns::fdpass::Channel;
use rr_ns::process::{fork, Forked};

use crate::cli::Family;
use crate::nsfwd::{self, NsForward};
use crate::plan::Plan;

/// The message that carries the tap fd (the last one).
const TAG_TAP: u8 = 1;
/// A message carrying the next forward's `-T`/`-U` socket.
const TAG_NS_SOCK: u8 = 2;
/// The next forward was skipped (no IPv6 loopback in the namespace: `nsfwd::bind`).
const TAG_NS_SKIP: u8 = 3;

/// What the namespace child hands out.
#[derive(Debug)]
pub struct Attached {
    /// The configured tap device.
    pub tap: OwnedFd,
    /// The bound `-T`/`-U` sockets with their forwards.
    pub ns_socks: Vec<(NsForward, OwnedFd)>,
}

/// The configured tap fd and the sockets of `fwds` from inside `target`.
pub fn attach(
    plan: &Plan,
    fwds: &[NsForward],
    family: Family,
    target: &Target,
    prog: &str,
) -> anyhow::Result<Attached> {
    let (ours, theirs) = Channel::pair().context("cannot create the socketpair for the tap fd")?;
    let parent = nix::unistd::getpid();
    match fork().context("cannot fork the namespace child")? {
        Forked::Child => {
            drop(ours);
            rr_ns::forked::child_main(prog, parent, || {
                child(plan, (fwds, family), target, &theirs)
            })
        }
        Forked::Parent(pid) => {
            drop(theirs);
            let received = receive(&ours, fwds);
            let status = loop {
                match waitpid(pid, None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other.context("cannot wait for the namespace child")?,
                }
            };
            if status != WaitStatus::Exited(pid, 0) {
                anyhow::bail!("the namespace child failed ({status:?})");
            }
            received
        }
    }
}

/// Receives the sockets, then the tap fd.
fn receive(chan: &Channel, fwds: &[NsForward]) -> anyhow::Result<Attached> {
    let mut ns_socks = Vec::new();
    let mut next = fwds.iter();
    loop {
        let msg = chan
            .recv()
            .context("cannot receive from the namespace child")?
            .context("the namespace child sent no tap fd")?;
        let fd = msg.fds.into_iter().next();
        match (msg.tag, fd) {
            (TAG_TAP, Some(tap)) => return Ok(Attached { tap, ns_socks }),
            (TAG_NS_SOCK, Some(fd)) => {
                let fwd = next
                    .next()
                    .context("the namespace child sent a socket too many")?;
                ns_socks.push((*fwd, fd));
            }
            (TAG_NS_SKIP, None) => {
                next.next()
                    .context("the namespace child skipped a socket too many")?;
            }
            (tag, _) => anyhow::bail!("unexpected message {tag} from the namespace child"),
        }
    }
}

/// The child: joins the namespaces, opens and configures the tap, binds the forwards' sockets,
/// sends them and then the tap.
fn child(
    plan: &Plan,
    (fwds, family): (&[NsForward], Family),
    target: &Target,
    chan: &Channel,
) -> anyhow::Result<()> {
    target.enter()?;
    let tap = netstack::tap::open(&plan.ifname)?;
    let index = nix::net::if_::if_nametoindex(plan.ifname.as_str())
        .with_context(|| format!("cannot find interface {}", plan.ifname))?;
    plan.apply(index, netstack::config::GATEWAY_MAC)
        .with_context(|| format!("cannot configure {} in the namespace", plan.ifname))?;
    // Every TCP connection of the namespace ends at our stack: no pacing over the tap.
    netstack::netconf::tap_congestion_control();
    for sock in nsfwd::bind(fwds, family)? {
        let sent = match &sock {
            Some(fd) => chan.send(TAG_NS_SOCK, &[], &[fd.as_fd()]),
            None => chan.send(TAG_NS_SKIP, &[], &[]),
        };
        sent.context("cannot send a -T/-U socket to the parent")?;
    }
    chan.send(TAG_TAP, &[], &[tap.as_fd()])
        .context("cannot send the tap fd to the parent")
}
