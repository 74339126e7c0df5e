//! The parent's side of the sandbox network. Before the fork, `prepare` settles the stack's
//! configuration from `NetConfig` (DNS upstreams from the host's resolv.conf unless given,
//! `--outbound-addr` interface names resolved to addresses, checked to be bindable, the
//! `--log-egress` file opened) and binds every `--publish` host socket, so a port in use is a
//! start-up error that leaves nothing behind. After the last fork of the sandbox's setup,
//! `bind_api` binds the `--api-socket` (clients queue in its backlog until the stack serves
//! it). Then `start` forks the stack process (`helper`: it confines itself and runs
//! `netstack::Stack` over the tap fd the child handed over, publishing the bound sockets, ids
//! 1, 2, ... in command-line order; API ids follow) and supervises it from a thread named
//! "netstack-wait": if it ends before the launcher asked it to, the sandbox is killed and the
//! run fails, saying how it ended (`HelperFailed`: killed by SIGSYS is a call outside its
//! seccomp allowlist). When the command exits, `finish` lets the stack deliver what the
//! sandbox sent last (its final bytes and FINs), waits for it, and removes the API socket.
//! Called by `launch`. Owns the stop pipe, the API socket file and a handle on the sandbox's
//! network namespace; knows nothing of signals or id maps.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::config::{NetConfig, Outbound};
use crate::helper;
use netstack::api::BoundApi;
use netstack::forward::Listener;
use rr_ns::process::Forked;

/// A running network stack: the stack process and what the launcher keeps of it.
pub struct Network {
    stop: OwnedFd,
    /// Tells the watcher that an exit from now on is the one asked for.
    stopping: Arc<AtomicBool>,
    watcher: JoinHandle<Result<(), HelperFailed>>,
    /// Keeps the sandbox's netns (and the sockets in it) alive after the command exits, so its
    /// kernel can still send what the command wrote just before exiting.
    _netns: OwnedFd,
    /// The `--api-socket`'s file (and a copy of its listening fd, never read here): removed
    /// when dropped, after the stack process has gone. The stack process serves it.
    api: Option<BoundApi>,
}

/// How the stack process ended, when that was not the launcher's wish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelperFailed {
    /// Killed for a syscall outside its allowlist (SECCOMP_RET_KILL_PROCESS).
    #[error(
        "the network stack process (pid {pid}) was killed by SIGSYS: it made a system call \
         that its seccomp allowlist forbids (see docs/architecture.md, Confinement)"
    )]
    Seccomp {
        /// Its pid.
        pid: i32,
    },
    /// Killed by another signal.
    #[error("the network stack process (pid {pid}) was killed by {signal}")]
    Killed {
        /// Its pid.
        pid: i32,
        /// The signal.
        signal: Signal,
    },
    /// Exited with an error (logged by the process itself just before).
    #[error("the network stack process (pid {pid}) failed (exit status {code})")]
    Exited {
        /// Its pid.
        pid: i32,
        /// Its exit status.
        code: i32,
    },
    /// Exited cleanly, but before it was asked to: nothing serves the sandbox any more.
    #[error("the network stack process (pid {pid}) exited before the command")]
    Early {
        /// Its pid.
        pid: i32,
    },
    /// waitpid failed: we cannot know.
    #[error("cannot wait for the network stack process (pid {pid}): {errno}")]
    Wait {
        /// Its pid.
        pid: i32,
        /// The errno.
        errno: Errno,
    },
}

/// The network, settled before the fork. The child drops its copy right after the fork, so
/// only the launcher holds the host sockets.
pub struct Prepared {
    cfg: netstack::StackConfig,
    /// The bound `--publish` sockets, in command-line order, with the value each came from.
    listeners: Vec<(String, Listener)>,
    /// `--api-socket`.
    api_socket: Option<PathBuf>,
    /// The `--log-egress` file, which the stack process keeps.
    audit_fd: Option<RawFd>,
}

/// The network with the API socket bound: everything the stack process takes at the fork.
pub struct Serving {
    cfg: netstack::StackConfig,
    listeners: Vec<(String, Listener)>,
    api: Option<BoundApi>,
    audit_fd: Option<RawFd>,
    /// The sandbox's network namespace, opened while its first process surely lives.
    netns: OwnedFd,
}

/// Builds the stack's configuration from `net`; `host_resolv_conf` is the host's
/// /etc/resolv.conf (its nameservers are the DNS upstreams unless `--dns-upstream` names
/// others). Fails, naming the flag, when an `--outbound-addr` interface has no address of its
/// family or the address cannot be bound, or a `--publish` host address and port cannot be
/// bound (in use, below 1024 without privilege); sockets bound so far are closed then.
pub fn prepare(net: &NetConfig, host_resolv_conf: &str) -> anyhow::Result<Prepared> {
    let dns_upstreams = dns_upstreams(net, host_resolv_conf);
    let (outbound_v4, outbound_v6) = outbound_pair(net)?;
    let egress = crate::egress::enforcer(net)?;
    let audit_fd = egress.as_ref().and_then(|e| e.audit_fd);
    let cfg = netstack::StackConfig {
        mtu: net.mtu,
        busy_poll: net.busy_poll,
        addr: net.addr,
        host_loopback: net.host_loopback,
        dns: net.dns,
        dns_upstreams,
        outbound_v4,
        outbound_v6,
        policy: egress.map(|e| e.shared),
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
        audit_fd,
    })
}

/// With `--api-socket`, binds it (mode 0600), so clients can connect as soon as the command
/// runs: they wait in its backlog until the stack process serves it, right after. Also opens
/// `child`'s network namespace, which the launcher holds until the stack is done. Starts no thread; call it after the last
/// fork of the sandbox's setup (the child must not inherit the file's guard) and before the
/// command may start (the namespace then surely exists).
pub fn bind_api(prepared: Prepared, child: Pid) -> anyhow::Result<Serving> {
    let Prepared {
        cfg,
        listeners,
        api_socket,
        audit_fd,
    } = prepared;
    let api = match api_socket {
        Some(path) => Some(
            netstack::api::bind(&path)
                .map_err(anyhow::Error::new)
                .context("--api-socket")?,
        ),
        None => None,
    };
    let netns = File::open(format!("/proc/{child}/ns/net"))
        .map(OwnedFd::from)
        .context("cannot open the sandbox's network namespace")?;
    Ok(Serving {
        cfg,
        listeners,
        api,
        audit_fd,
        netns,
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

/// Forks the stack process for `child`'s sandbox (`helper`), handing it the tap, the
/// `--publish` sockets and the API socket, and watches it from a thread. If it ends before
/// `finish` asks it to, the watcher sets `failed`, kills the sandbox and wakes the launcher
/// (SIGTERM to itself, for a persisted launcher waiting for --stop). Must be called while the
/// launcher is single-threaded; `detached` is `--detach`.
pub fn start(
    serving: Serving,
    tap: OwnedFd,
    child: Pid,
    failed: Arc<AtomicBool>,
    detached: bool,
) -> anyhow::Result<Network> {
    let Serving {
        cfg,
        listeners,
        api,
        audit_fd,
        netns,
    } = serving;
    let (stop_rx, stop) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).context("cannot create the stack's stop pipe")?;
    let launcher = nix::unistd::getpid();
    let pid = match rr_ns::process::fork().context("cannot fork the network stack process")? {
        Forked::Child => {
            drop(stop);
            helper::main(helper::Setup {
                cfg,
                listeners,
                api,
                audit_fd,
                tap,
                stop: stop_rx,
                launcher,
                detached,
            })
        }
        Forked::Parent(pid) => pid,
    };
    tracing::debug!(pid = pid.as_raw(), "network stack process started");
    // The launcher's copies: the stack process holds the tap and the host sockets now.
    drop((cfg, listeners, tap, stop_rx));
    let stopping = Arc::new(AtomicBool::new(false));
    let asked = stopping.clone();
    let watcher = std::thread::Builder::new()
        .name("netstack-wait".into())
        .spawn(move || watch(pid, child, &asked, &failed))
        .context("cannot start the thread watching the network stack process")?;
    Ok(Network {
        stop,
        stopping,
        watcher,
        _netns: netns,
        api,
    })
}

/// Waits for the stack process `pid`; if it ended other than as asked (`asked`), kills the
/// sandbox `child`, sets `failed` and wakes the launcher.
fn watch(
    pid: Pid,
    child: Pid,
    asked: &AtomicBool,
    failed: &AtomicBool,
) -> Result<(), HelperFailed> {
    let status = loop {
        match waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    let asked = asked.load(Ordering::SeqCst);
    let result = verdict(pid.as_raw(), status, asked);
    if result.is_err() && !asked {
        failed.store(true, Ordering::SeqCst);
        let _ = kill(child, Signal::SIGKILL);
        // Wake a persisted launcher waiting for --stop.
        let _ = kill(nix::unistd::getpid(), Signal::SIGTERM);
    }
    result
}

/// Judges how the stack process `pid` ended: only a clean exit that was `asked` for is fine.
fn verdict(pid: i32, status: nix::Result<WaitStatus>, asked: bool) -> Result<(), HelperFailed> {
    match status {
        Ok(WaitStatus::Exited(_, 0)) if asked => Ok(()),
        Ok(WaitStatus::Exited(_, 0)) => Err(HelperFailed::Early { pid }),
        Ok(WaitStatus::Exited(_, code)) => Err(HelperFailed::Exited { pid, code }),
        Ok(WaitStatus::Signaled(_, Signal::SIGSYS, _)) => Err(HelperFailed::Seccomp { pid }),
        Ok(WaitStatus::Signaled(_, signal, _)) => Err(HelperFailed::Killed { pid, signal }),
        // waitpid without WUNTRACED/WCONTINUED reports only the two above.
        Ok(_) => Err(HelperFailed::Early { pid }),
        Err(errno) => Err(HelperFailed::Wait { pid, errno }),
    }
}

impl Network {
    /// The command is gone: lets the stack finish the sandbox's flows (at most
    /// `helper::LINGER`), waits for the stack process, then removes the API socket. Fails if
    /// the stack process did not end cleanly (the sandbox's last bytes may be lost).
    pub fn finish(self) -> Result<(), HelperFailed> {
        self.stopping.store(true, Ordering::SeqCst);
        if let Err(error) = nix::unistd::write(&self.stop, b"x") {
            // EPIPE: it is gone already; the watcher says how.
            tracing::debug!(%error, "cannot signal the stack to stop");
        }
        let result = self.watcher.join().unwrap_or_else(|_| {
            tracing::error!("the thread watching the network stack panicked");
            Ok(())
        });
        drop(self.api);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PID: i32 = 4242;

    fn exited(code: i32) -> nix::Result<WaitStatus> {
        Ok(WaitStatus::Exited(Pid::from_raw(PID), code))
    }

    fn killed(sig: Signal) -> nix::Result<WaitStatus> {
        Ok(WaitStatus::Signaled(Pid::from_raw(PID), sig, false))
    }

    #[test]
    fn a_clean_exit_is_fine_only_when_asked_for() {
        assert_eq!(verdict(PID, exited(0), true), Ok(()));
        assert_eq!(
            verdict(PID, exited(0), false),
            Err(HelperFailed::Early { pid: PID })
        );
    }

    #[test]
    fn sigsys_is_reported_as_a_seccomp_kill() {
        let err = verdict(PID, killed(Signal::SIGSYS), false).expect_err("killed");
        assert_eq!(err, HelperFailed::Seccomp { pid: PID });
        let text = err.to_string();
        assert!(
            text.contains("SIGSYS") && text.contains("seccomp allowlist"),
            "{text}"
        );
    }

    #[test]
    fn other_ends_are_failures_even_while_stopping() {
        assert_eq!(
            verdict(PID, exited(1), true),
            Err(HelperFailed::Exited { pid: PID, code: 1 })
        );
        assert_eq!(
            verdict(PID, killed(Signal::SIGKILL), true),
            Err(HelperFailed::Killed {
                pid: PID,
                signal: Signal::SIGKILL
            })
        );
        assert_eq!(
            verdict(PID, Err(Errno::ECHILD), false),
            Err(HelperFailed::Wait {
                pid: PID,
                errno: Errno::ECHILD
            })
        );
    }
}
