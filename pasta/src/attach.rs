//! Getting the tap fd out of the target namespace, configured as `plan` says:
//! ```text
//! parent: Target::open (errors here, before anything forks)
//!         Channel::pair; fork ------------------------> child (rr_ns::forked: dies with
//!                                                       the parent)
//!         waitpid(child)                                join the userns, then the netns
//!                                                       open the tap named plan.ifname
//!                                                       plan.apply (lo, link, addresses,
//!                                                         neighbours, routes)
//!                                                       send TAG_TAP + fd; exit 0
//!         exit 0? receive the fd; else fail (the child printed why)
//! ```
//! The parent never changes namespaces: the stack's sockets stay in the host's.
//! Called by `run`; prints only the child's final error.

use std::os::fd::{AsFd, OwnedFd};

use anyhow::Context;
use nix::sys::wait::{waitpid, WaitStatus};
use rr_ns::enter::Target;
use rr_ns::fdpass::Channel;
use rr_ns::process::{fork, Forked};

use crate::plan::Plan;

/// The message that carries the tap fd.
const TAG_TAP: u8 = 1;

/// The configured tap fd from inside `target`.
pub fn tap(plan: &Plan, target: &Target, prog: &str) -> anyhow::Result<OwnedFd> {
    let (ours, theirs) = Channel::pair().context("cannot create the socketpair for the tap fd")?;
    let parent = nix::unistd::getpid();
    match fork().context("cannot fork the namespace child")? {
        Forked::Child => {
            drop(ours);
            rr_ns::forked::child_main(prog, parent, || child(plan, target, &theirs))
        }
        Forked::Parent(pid) => {
            drop(theirs);
            let status = loop {
                match waitpid(pid, None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other.context("cannot wait for the namespace child")?,
                }
            };
            if status != WaitStatus::Exited(pid, 0) {
                anyhow::bail!("the namespace child failed ({status:?})");
            }
            let msg = ours
                .recv()
                .context("cannot receive the tap fd")?
                .filter(|m| m.tag == TAG_TAP)
                .context("the namespace child sent no tap fd")?;
            msg.fds
                .into_iter()
                .next()
                .context("the namespace child sent no tap fd")
        }
    }
}

/// The child: joins the namespaces, opens and configures the tap, sends it.
fn child(plan: &Plan, target: &Target, chan: &Channel) -> anyhow::Result<()> {
    target.enter()?;
    let tap = netstack::tap::open(&plan.ifname)?;
    let index = nix::net::if_::if_nametoindex(plan.ifname.as_str())
        .with_context(|| format!("cannot find interface {}", plan.ifname))?;
    plan.apply(index, netstack::config::GATEWAY_MAC)
        .with_context(|| format!("cannot configure {} in the namespace", plan.ifname))?;
    chan.send(TAG_TAP, &[], &[tap.as_fd()])
        .context("cannot send the tap fd to the parent")
}
