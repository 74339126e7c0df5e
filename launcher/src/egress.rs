//! The egress policy at start and exit: turns `PolicyConfig` into the stack's shared
//! enforcer (presets expanded with the host's addresses read now, the `--log-egress` file
//! opened), prints it for `--print-policy`, and writes the one-line summary at exit.
//! Called by `network::prepare` (before the fork), `main` (`--print-policy`) and the stack
//! process (`helper`, at its end). No policy decisions here: those are `netstack::policy`'s.

use std::fs::OpenOptions;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};

use anyhow::Context;
use netstack::policy::{presets, Audit, Enforcer, Policy, Shared};

use crate::config::{NetConfig, PolicyConfig};

/// The rules of `p` for the network `net`: the user's, then `--no-lan`'s or `--no-host`'s.
fn policy(net: &NetConfig, p: &PolicyConfig) -> anyhow::Result<Policy> {
    let mut rules = p.rules.clone();
    if p.no_lan || p.no_host {
        let host = netstack::hostaddr::all_addrs()
            .context("cannot read the host's addresses for --no-lan/--no-host")?;
        let gateways: Vec<IpAddr> = match net.host_loopback {
            true => vec![net.addr.gateway_v4().into(), net.addr.gateway_v6().into()],
            false => Vec::new(),
        };
        if p.no_lan {
            rules.extend(presets::no_lan(&gateways, &host));
        } else {
            rules.extend(presets::no_host(&host));
        }
    }
    Ok(Policy::new(rules, p.default))
}

/// The stack's enforcer for `net`'s policy, with its policy in force.
pub struct Egress {
    /// The enforcer, shared by the event loop and the DNS-over-TCP relay.
    pub shared: Shared,
    /// The `--log-egress` file's descriptor, which the stack process must keep when it closes
    /// what it inherited (the file is opened here, before confinement).
    pub audit_fd: Option<RawFd>,
}

/// The stack's enforcer for `net`'s policy; `None` when there is none.
pub fn enforcer(net: &NetConfig) -> anyhow::Result<Option<Egress>> {
    let Some(p) = &net.policy else {
        return Ok(None);
    };
    let mut audit_fd = None;
    let audit = match &p.log {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("--log-egress {}", path.display()))?;
            audit_fd = Some(file.as_raw_fd());
            Some(Audit::new(Box::new(file)))
        }
        None => None,
    };
    let policy = policy(net, p)?;
    tracing::info!(
        rules = policy.rules().len(),
        default = policy.default_action().name(),
        "egress policy in force"
    );
    Ok(Some(Egress {
        shared: Enforcer::new(policy, p.ttl, audit).shared(),
        audit_fd,
    }))
}

/// `--print-policy`: the policy in the policy file's format, on stdout.
pub fn print(net: &NetConfig) -> anyhow::Result<()> {
    use std::io::Write;
    let text = match &net.policy {
        Some(p) => policy(net, p)?.to_string(),
        None => "egress allow\n".to_string(),
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("cannot write the policy to stdout")
}

/// The line the stack process writes to stderr at its end when a policy was in force.
pub fn summary(shared: &Shared) -> String {
    let s = Enforcer::lock(shared).stats();
    format!(
        "rootless-run: egress: {} flows allowed, {} denied, {} DNS queries refused, {} flows closed by rule changes",
        s.allowed, s.denied, s.queries_refused, s.closed
    )
}
