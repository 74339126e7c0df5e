//! The parent's side of the sandbox network. Before the fork, `prepare` settles the stack's
//! configuration from `NetConfig` (DNS upstreams from the host's resolv.conf unless given,
//! `--outbound-addr` interface names resolved to addresses, checked to be bindable) and binds
//! every `--publish` host socket, so a port in use is a start-up error that leaves nothing
//! behind. After the last fork and before the command may start, `serve_api` opens the
//! stack's command channel and the `--api-socket`. Then `start` runs `netstack::Stack` on its
//! own thread over the tap fd the child handed over, publishes the bound sockets (ids 1, 2,
//! ... in command-line order; API ids follow), and when the command exits lets the stack
//! deliver what the sandbox sent last (its final bytes and FINs) before the launcher exits;
//! the API socket file goes with the stack; with an egress policy, the one-line summary of
//! its verdicts goes to stderr then (`egress`).
//! Called by `launch`. Owns the stop pipe, the API socket guard and a handle on the sandbox's
//! network namespace; knows nothing of signals or id maps.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::config::{NetConfig, Outbound};
use netstack::api::ApiSocket;
use netstack::command::Commands;
use netstack::forward::Listener;

/// How long after the command exits we keep carrying its connections' last bytes. Flows the
/// sandbox closed end sooner; flows still open then are reset toward the host.
const LINGER: Duration = Duration::from_secs(1);

/// A running network stack.
pub struct Network {
    stop: OwnedFd,
    thread: JoinHandle<()>,
    /// Keeps the sandbox's netns (and the sockets in it) alive after the command exits, so its
    /// kernel can still send what the command wrote just before exiting.
    _netns: Option<OwnedFd>,
    /// The `--api-socket` server; dropping it stops it and removes the socket file.
    api: Option<ApiSocket>,
    /// The egress policy, whose counters `finish` reports.
    policy: Option<netstack::policy::Shared>,
}

/// The network, settled before the fork. The child drops its copy right after the fork, so
/// only the launcher holds the host sockets.
pub struct Prepared {
    cfg: netstack::StackConfig,
    /// The bound `--publish` sockets, in command-line order, with the value each came from.
    listeners: Vec<(String, Listener)>,
    /// `--api-socket`.
    api_socket: Option<PathBuf>,
}

/// The network with its control plane up: the stack's command channel and the API socket.
pub struct Serving {
    cfg: netstack::StackConfig,
    listeners: Vec<(String, Listener)>,
    commands: Commands,
    api: Option<ApiSocket>,
}

/// Builds the stack's configuration from `net`; `host_resolv_conf` is the host's
/// /etc/resolv.conf (its nameservers are the DNS upstreams unless `--dns-upstream` names
/// others). Fails, naming the flag, when an `--outbound-addr` interface has no address of its
/// family or the address cannot be bound, or a `--publish` host address and port cannot be
/// bound (in use, below 1024 without privilege); sockets bound so far are closed then.
pub fn prepare(net: &NetConfig, host_resolv_conf: &str) -> anyhow::Result<Prepared> {
    let dns_upstreams = dns_upstreams(net, host_resolv_conf);
    let (outbound_v4, outbound_v6) = outbound_pair(net)?;
    let cfg = netstack::StackConfig {
        mtu: net.mtu,
        busy_poll: net.busy_poll,
        addr: net.addr,
        host_loopback: net.host_loopback,
        dns: net.dns,
        dns_upstreams,
        outbound_v4,
        outbound_v6,
        policy: crate::egress::enforcer(net)?,
        ..Default::default()
    };
    let mut listeners = Vec::new();
    for p in &net.publish {
        for spec in &p.specs {
            let l = Listener::bind(*spec)
                .map_err(anyhow::Error::new)
                .with_context(|| format!("--publish {}", p.value))?;
            listeners.push((p.value.clone(), l));
        }
    }
    Ok(Prepared {
        cfg,
        listeners,
        api_socket: net.api_socket.clone(),
    })
}

/// Opens the stack's command channel and, with `--api-socket`, serves slirp4netns's API on
/// it, so clients can add forwards as soon as the command runs (they are carried out once the
/// stack thread runs, right after). Starts a thread: call it after the last fork.
pub fn serve_api(prepared: Prepared) -> anyhow::Result<Serving> {
    let Prepared {
        cfg,
        listeners,
        api_socket,
    } = prepared;
    let (control, commands) =
        netstack::command::channel().context("cannot create the stack's command channel")?;
    let api = match api_socket {
        Some(path) => Some(
            netstack::api::serve(&path, control, cfg.addr)
                .map_err(anyhow::Error::new)
                .context("--api-socket")?,
        ),
        None => None,
    };
    Ok(Serving {
        cfg,
        listeners,
        commands,
        api,
    })
}

/// The DNS forwarder's upstreams: `--dns-upstream`'s, else the nameservers of the host's
/// resolv.conf (`host_resolv_conf`); warns when there are none but DNS is on. Both modes.
pub fn dns_upstreams(net: &NetConfig, host_resolv_conf: &str) -> Vec<SocketAddr> {
    let dns_upstreams = match &net.dns_upstreams {
        Some(given) => given.clone(),
        None => netstack::config::nameservers(host_resolv_conf),
    };
    if net.dns && dns_upstreams.is_empty() {
        tracing::warn!(
            "the host's /etc/resolv.conf names no nameserver; DNS queries to the forwarder will \
             fail (give one with --dns-upstream)"
        );
    }
    dns_upstreams
}

/// `--outbound-addr` and `--outbound-addr6` resolved to this host's addresses (see `outbound`).
fn outbound_pair(net: &NetConfig) -> anyhow::Result<(Option<Ipv4Addr>, Option<Ipv6Addr>)> {
    // `outbound` returns an address of the family asked for (cli checks given ones).
    let outbound_v4 = match &net.outbound_v4 {
        Some(o) => match outbound("--outbound-addr", o, false)? {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        },
        None => None,
    };
    let outbound_v6 = match &net.outbound_v6 {
        Some(o) => match outbound("--outbound-addr6", o, true)? {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        },
        None => None,
    };
    Ok((outbound_v4, outbound_v6))
}

/// Kernel mode's SNAT sources: the `--outbound-addr[6]` addresses, resolved and checked as for
/// the userspace stack.
pub fn outbound_addrs(net: &NetConfig) -> anyhow::Result<Vec<IpAddr>> {
    let (v4, v6) = outbound_pair(net)?;
    Ok(v4
        .map(IpAddr::V4)
        .into_iter()
        .chain(v6.map(IpAddr::V6))
        .collect())
}

/// The address outbound sockets of one family bind to: the one given, or the first of the
/// interface (`netstack::hostaddr`), checked to be this host's.
fn outbound(flag: &str, o: &Outbound, v6: bool) -> anyhow::Result<IpAddr> {
    let family = if v6 { "IPv6" } else { "IPv4" };
    let ip = match o {
        Outbound::Addr(ip) => *ip,
        Outbound::Interface(name) => netstack::hostaddr::interface_addr(name, v6)
            .with_context(|| format!("{flag} {name}"))?,
    };
    netstack::hostaddr::check_local(ip)
        .with_context(|| format!("{flag} {ip}: not a usable {family} address of this host"))
}

/// Starts the stack for `child`'s sandbox on a thread named "netstack" and hands it the
/// `--publish` sockets. A failure of the stack (at construction or later) is logged, sets
/// `failed`, and kills the sandbox.
pub fn start(
    serving: Serving,
    tap: OwnedFd,
    child: Pid,
    failed: Arc<AtomicBool>,
) -> anyhow::Result<Network> {
    let netns = File::open(format!("/proc/{child}/ns/net"))
        .map(OwnedFd::from)
        .map_err(|error| tracing::debug!(%error, "cannot hold the sandbox's netns"))
        .ok();
    let Serving {
        cfg,
        listeners,
        commands,
        api,
    } = serving;
    let (stop_rx, stop) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).context("cannot create the stack's stop pipe")?;
    let policy = cfg.policy.clone();
    // The stack is built on its thread (it need not be Send). The command may start before
    // the stack is up: frames wait in the tap queue.
    let thread = std::thread::Builder::new()
        .name("netstack".into())
        .spawn(move || {
            let result = netstack::Stack::new(tap, cfg, commands)
                .and_then(|stack| publish(stack, listeners))
                .and_then(|stack| stack.run_until(stop_rx.as_fd(), LINGER));
            if let Err(e) = result {
                tracing::error!(error = %anyhow::Error::new(e), "network stack failed; killing the sandbox");
                failed.store(true, Ordering::SeqCst);
                let _ = kill(child, Signal::SIGKILL);
                // Wake a persisted launcher waiting for --stop.
                let _ = kill(nix::unistd::getpid(), Signal::SIGTERM);
            }
        })
        .context("cannot start the network stack thread")?;
    Ok(Network {
        stop,
        thread,
        _netns: netns,
        api,
        policy,
    })
}

/// Hands the bound `--publish` sockets to the stack, in order.
fn publish(
    mut stack: netstack::Stack,
    listeners: Vec<(String, Listener)>,
) -> Result<netstack::Stack, netstack::StackError> {
    for (value, l) in listeners {
        let spec = l.spec();
        let id = stack.publish(l)?;
        tracing::debug!(id, publish = %value, proto = spec.proto.name(), host = %spec.host,
                        guest = %spec.guest, "forwarding");
    }
    Ok(stack)
}

impl Network {
    /// The command is gone: lets the stack finish the sandbox's flows (at most `LINGER`),
    /// then returns, having closed the API socket.
    pub fn finish(self) {
        if let Err(error) = nix::unistd::write(&self.stop, b"x") {
            tracing::debug!(%error, "cannot signal the stack to stop");
            return;
        }
        if self.thread.join().is_err() {
            tracing::error!("the network stack thread panicked");
        }
        drop(self.api);
        if let Some(policy) = &self.policy {
            // Issue 12 asks for this line on stderr whenever a policy is in force, whatever
            // RUST_LOG says: it is the run's report, like the final error in `main`.
            eprintln!("{}", crate::egress::summary(policy));
        }
    }
}
