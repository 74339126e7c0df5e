//! One run, in pasta's order:
//! 1. read the host's addressing and settle the plan and the stack's configuration, bind the
//!    published ports, open the target namespaces: every mistake fails here, exit 1, before
//!    anything forks;
//! 2. get the configured tap fd and the `-T`/`-U` sockets (`attach`: the namespace child);
//! 3. unless `-f`, detach (`daemon`): the caller's process exits 0 once step 4 is done;
//! 4. raise the fd limit's soft value to the hard one (it bounds the flow table), build the
//!    stack, publish the ports, start the `-T`/`-U` relay, the `--netns` watch,
//!    write `--pid`, close the inherited output (`Ready::done`);
//! 5. serve until the `--netns` file or the PID's namespace is gone (then exit 0), a signal
//!    kills us (SIGTERM, SIGINT: their default action; nothing to clean up), or the stack
//!    fails (exit 1).
//!
//! Called by `main` with parsed options.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use netstack::forward::Listener;
use nix::fcntl::OFlag;
use rr_ns::enter::{NetTarget, Target};

use crate::attach::Attached;
use crate::cli::{NetnsArg, Options};
use crate::plan::Plan;
use crate::{attach, daemon, hostnet, nsfwd, publish, relay, stackcfg, watch};

/// How long after the namespace is gone the stack keeps carrying what the sandbox sent last.
const LINGER: Duration = Duration::from_secs(1);

/// Carries out `o`; returns when the namespace is gone (foreground, or in the daemon).
pub fn run(o: &Options, prog: &str) -> anyhow::Result<()> {
    let (v4, v6) = hostnet::templates(o.template_if.as_deref())
        .context("cannot read the host's addresses and routes")?;
    let plan = Plan::new(o, v4.as_ref(), v6.as_ref())?;
    tracing::debug!(?plan, "namespace plan");
    let cfg = stackcfg::stack_config(o, &plan)?;
    let listeners = publish::bind(&o.tcp, &o.udp, &plan)?;
    let (net, watched) = match o.netns.as_ref().context("no target namespace")? {
        NetnsArg::Path(p) => (NetTarget::Path(p.clone()), p.clone()),
        NetnsArg::Pid(pid) => (
            NetTarget::Pid(*pid),
            PathBuf::from(format!("/proc/{pid}/ns/net")),
        ),
    };
    let target = Target::open(&net, o.userns.as_deref())?;
    let ns_fwds = nsfwd::plan(o);
    let attached = attach::attach(&plan, &ns_fwds, o.family, &target, prog)?;
    drop(target);
    let ready = match o.foreground {
        true => None,
        false => Some(daemon::detach(prog)?),
    };
    let (stack, stop_rx) = match start(o, attached, cfg, listeners, watched) {
        Ok(started) => started,
        Err(e) => {
            if let Some(r) = ready {
                r.fail(&e);
            }
            return Err(e);
        }
    };
    if let Some(r) = ready {
        r.done()?;
    }
    tracing::info!("ready");
    stack
        .run_until(stop_rx.as_fd(), LINGER)
        .context("network stack failed")
}

/// Steps 4's stack, forwards, relay, watch and pid file; returns the stack and its stop pipe.
fn start(
    o: &Options,
    attached: Attached,
    cfg: netstack::StackConfig,
    listeners: Vec<Listener>,
    watched: PathBuf,
) -> anyhow::Result<(netstack::Stack, OwnedFd)> {
    let (control, commands) =
        netstack::command::channel().context("cannot create the stack's command channel")?;
    // Runtime forwards come from no one (pesto is not supported); the stack keeps running
    // when the control side is gone.
    drop(control);
    // The stack's table is bounded by the fds this leaves (`netstack::fd_budget`).
    netstack::fd_budget::raise_nofile_logged();
    let mut stack = netstack::Stack::new(attached.tap, cfg, commands)
        .context("cannot start the network stack")?;
    for l in listeners {
        stack
            .publish(l)
            .context("cannot publish a forwarded port")?;
    }
    relay::start(attached.ns_socks)?;
    let (stop_rx, stop) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).context("cannot create the stack's stop pipe")?;
    match o.netns_quit {
        true => watch::netns_gone(watched, stop).context("cannot start the --netns watch")?,
        // Never written: the stack serves until it is killed.
        false => std::mem::forget(stop),
    }
    if let Some(path) = &o.pid_file {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("--pid {}", path.display()))?;
    }
    Ok((stack, stop_rx))
}
