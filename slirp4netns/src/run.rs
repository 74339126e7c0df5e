//! One run, in slirp4netns's order:
//! 1. settle the stack's configuration (outbound addresses resolved, DNS upstreams from the
//!    host's resolv.conf), so bad values fail before anything forks;
//! 2. get the tap fd (`attach`: the namespace child, or the inherited fd);
//! 3. print the banner on stdout and flush it;
//! 4. block the ending signals and bind `--api-socket`, before any thread starts; confine what
//!    needs a single thread (`confine::before_threads`: the socket's remover, the sandbox);
//! 5. raise the fd limit's soft value to the hard one (`netstack::fd_budget`: it bounds the
//!    flow table), build the stack, serve the API socket, start the watcher (threads from here
//!    on); the seccomp allowlist (`confine::after_threads`); write the ready byte and close
//!    its fd;
//! 6. run the stack in this process's own namespaces until the exit fd hangs up (exit 0), a
//!    signal arrives (`lifecycle`: the API socket removed, then killed by that signal), or the
//!    stack fails (exit 1).
//!
//! Called by `main` with a checked `Config` and the fds it inherited.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use anyhow::Context;
use nix::fcntl::OFlag;

use crate::banner::Banner;
use crate::config::Config;
use crate::{attach, confine, lifecycle, outbound};

/// How long after the exit fd hangs up the stack keeps carrying what the sandbox sent last
/// (its final bytes and FINs); flows still open then are reset. Idle flows cost nothing: the
/// stack stops as soon as none is left.
const LINGER: Duration = Duration::from_secs(1);

/// The fds named on the command line, taken by `main`.
#[derive(Debug, Default)]
pub struct Inherited {
    /// `--ready-fd`.
    pub ready: Option<OwnedFd>,
    /// `--exit-fd`.
    pub exit: Option<OwnedFd>,
    /// `--netns-type=tapfd`.
    pub tap: Option<OwnedFd>,
}

/// How a run ended, when it returns at all (a signal kills the process instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The exit fd hung up: exit 0.
    ExitFd,
}

/// Carries out `cfg`. Errors are fatal (exit 1, or the child's status for
/// `attach::AttachError::ChildFailed`).
pub fn run(cfg: &Config, prog: &str, fds: Inherited) -> anyhow::Result<Ended> {
    let stack_cfg = stack_config(cfg)?;
    let (tap, target) = attach::tap(cfg, prog, fds.tap)?;
    print_banner(cfg, &stack_cfg);

    // The namespace child is gone and no thread runs yet (the stack starts some: DNS over TCP),
    // so every thread from here on inherits the blocked mask and only the signalfd sees them.
    let signals = lifecycle::block_signals().context("cannot block SIGTERM, SIGINT, SIGHUP")?;
    let bound = match &cfg.api_socket {
        Some(path) => Some(
            netstack::api::bind(path)
                .map_err(anyhow::Error::new)
                .context("--api-socket")?,
        ),
        None => None,
    };
    confine::before_threads(
        &cfg.confine,
        target.as_ref(),
        bound.as_ref().map(|b| b.path()),
    )?;
    drop(target);
    // Before the allowlist, which has no setrlimit; the stack's table is bounded by it.
    netstack::fd_budget::raise_nofile_logged();
    let (control, commands) =
        netstack::command::channel().context("cannot create the stack's command channel")?;
    let stack =
        netstack::Stack::new(tap, stack_cfg, commands).context("cannot start the network stack")?;
    let (stop_rx, stop) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).context("cannot create the stack's stop pipe")?;
    let api = match bound {
        Some(b) => Some(
            b.serve(control, cfg.addr)
                .map_err(anyhow::Error::new)
                .context("--api-socket")?,
        ),
        None => None,
    };
    let watch = lifecycle::start(fds.exit, signals, api, stop)
        .context("cannot start the thread watching --exit-fd and signals")?;
    if let Err(e) = confine::after_threads(&cfg.confine) {
        watch.quit();
        return Err(e.into());
    }
    if let Some(ready) = fds.ready {
        lifecycle::write_ready(ready);
    }
    tracing::info!("ready");

    match stack.run_until(stop_rx.as_fd(), LINGER) {
        Ok(()) => match watch.join() {
            lifecycle::Event::ExitFd => Ok(Ended::ExitFd),
            other => anyhow::bail!("the stack stopped unexpectedly ({other:?})"),
        },
        Err(e) => {
            watch.quit();
            Err(anyhow::Error::new(e).context("network stack failed"))
        }
    }
}

/// The stack's configuration from the command line and the host.
fn stack_config(cfg: &Config) -> anyhow::Result<netstack::StackConfig> {
    let outbound_v4 = match &cfg.outbound_v4 {
        Some(o) => match outbound::resolve("--outbound-addr", o, false)? {
            std::net::IpAddr::V4(a) => Some(a),
            std::net::IpAddr::V6(_) => None,
        },
        None => None,
    };
    let outbound_v6 = match &cfg.outbound_v6 {
        Some(o) => match outbound::resolve("--outbound-addr6", o, true)? {
            std::net::IpAddr::V6(a) => Some(a),
            std::net::IpAddr::V4(_) => None,
        },
        None => None,
    };
    let dns_upstreams = netstack::config::host_resolvers();
    if cfg.dns && dns_upstreams.is_empty() {
        tracing::warn!(
            "the host's /etc/resolv.conf names no nameserver; DNS queries to {} will fail",
            cfg.addr.dns_v4()
        );
    }
    Ok(netstack::StackConfig {
        mtu: cfg.mtu,
        addr: cfg.addr,
        host_loopback: cfg.host_loopback,
        dns: cfg.dns,
        dns_upstreams,
        outbound_v4,
        outbound_v6,
        // libslirp advertises the prefix and itself as router with -6; rootlesskit --ipv6
        // relies on it (its child configures only IPv4).
        router_advertisements: cfg.ipv6,
        // libslirp always serves DHCP (network + 15 ..= + 30); upstream's
        // test-slirp4netns-dhcp.sh runs udhcpc on a tap0 configured without --configure.
        dhcp_server: true,
        ..Default::default()
    })
}

/// Prints the banner on stdout. A stdout that cannot take it (closed) is no reason to stop:
/// slirp4netns's printf fails silently there too.
fn print_banner(cfg: &Config, s: &netstack::StackConfig) {
    let text = Banner {
        mtu: cfg.mtu,
        addr: &cfg.addr,
        api_socket: cfg.api_socket.as_deref(),
        outbound_v4: s.outbound_v4.map(Into::into),
        outbound_v6: s.outbound_v6.map(Into::into),
        mac: cfg.mac,
        host_loopback: cfg.host_loopback,
    }
    .render();
    let mut out = std::io::stdout().lock();
    // Flushed now: slirp4netns's block-buffered banner is lost when it is killed.
    if let Err(error) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        tracing::warn!(%error, "cannot write the banner to stdout");
    }
}
