//! Kernel mode (`--net-mode=kernel`, real root only): the sandbox's packets cross a veth pair
//! and a bridge and are routed and NATed by the host kernel instead of the userspace stack.
//!
//! ```text
//! sandbox netns: eth0 10.0.2.1xx/24 via 10.0.2.2 =veth=> rrv<PID> -- rrbr0 (10.0.2.2, .3/24,
//!   fd00::2, ::3/64; route_localnet=1) -> host routing -> nft inet rootless_run -> out
//! ```
//! `prepare` runs in the launcher before the fork: refuses a `--publish` host port that a
//! socket or another kernel-mode run holds (`publish`), takes an address lease (`lease`), makes
//! sure the bridge is there (`links`), switches forwarding on if it is off (saying so), and
//! adds the sandbox's owner-tagged rules (`nft`, masquerade or `--outbound-addr` SNAT), first
//! removing those of runs that died; if that fails, a bridge this run created is removed.
//! `attach` runs when the child has unshared its network namespace: it creates the veth pair
//! with `eth0` inside; the child configures eth0 itself (`netstack::netconf`). `serve_dns`
//! runs after the last fork: it starts the run's DNS forwarder (`netstack::dns::SocketFront`)
//! and DNATs the DNS addresses to it. Dropping `KernelNet` removes our rules (and the table
//! once no live run has rules in it), then stops the forwarder; the veth goes with the
//! sandbox's namespace and the lease with our last fd. The bridge stays.
//! Everything that changes the table or the bridge runs under one flock per network
//! namespace (`/run/rootless-run/net-<inode>.lock`).

pub mod lease;
pub mod links;
pub mod nft;
pub mod publish;

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::fcntl::{Flock, FlockArg};

use crate::config::NetConfig;
use netstack::dns::SocketFront;
use netstack::netconf::SandboxAddrs;

/// Where kernel mode keeps its locks and leases.
pub const RUN_DIR: &str = "/run/rootless-run";
/// The shared bridge's name.
pub const BRIDGE: &str = "rrbr0";

/// Kernel mode's state for one sandbox; dropping it removes the sandbox's rules.
pub struct KernelNet {
    lease: lease::Lease,
    /// The `--publish` port claims (`publish::claim`), held for the run.
    _ports: Vec<Flock<File>>,
    owner: nft::Owner,
    bridge: u32,
    mtu: u32,
    lock: PathBuf,
    /// The DNS upstreams, unless `--disable-dns`.
    dns: Option<Vec<SocketAddr>>,
    ipv6: bool,
    /// The DNS addresses (IPv4, IPv6) the sandbox asks.
    dns_addrs: (Ipv4Addr, Ipv6Addr),
    /// The run's DNS forwarder, once `serve_dns` started it. Declared after the rest, so the
    /// rules that lead to it are removed (in `drop`) before it stops.
    front: Option<SocketFront>,
}

fn netns_key() -> anyhow::Result<String> {
    let ino = std::fs::metadata("/proc/self/ns/net")
        .context("cannot read /proc/self/ns/net")?
        .ino();
    Ok(format!("net-{ino}"))
}

fn lock(path: &Path) -> anyhow::Result<Flock<File>> {
    std::fs::create_dir_all(RUN_DIR).with_context(|| format!("cannot create {RUN_DIR}"))?;
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("cannot lock {}", path.display()))
}

/// Writes "1" to sysctl `path` if it reads "0", and says so on stderr with `cost`, what that
/// changes for the host beyond routing.
fn switch_on(path: &str, what: &str, cost: &str) -> anyhow::Result<()> {
    let now = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    if now.trim() == "0" {
        std::fs::write(path, "1").with_context(|| format!("cannot switch on {path}"))?;
        tracing::warn!(
            "--net-mode=kernel: {what} was off; switched it on ({path} = 1), and it stays on{cost}"
        );
    }
    Ok(())
}

/// What switching IPv6 forwarding on costs: the kernel then treats the host as a router, and
/// interfaces with accept_ra=1 (the default) stop accepting router advertisements, so hosts
/// that take their address or default route from RAs lose them when they expire
/// (ip-sysctl.rst, accept_ra).
const IPV6_FORWARDING_COST: &str = "; interfaces with accept_ra=1 now ignore router \
    advertisements (set net.ipv6.conf.IFACE.accept_ra=2 where the host needs them)";

/// Sets up everything but the veth; see the module header.
pub fn prepare(net: &NetConfig, host_resolv_conf: &str) -> anyhow::Result<KernelNet> {
    // Before anything is built, so a refusal leaves nothing behind.
    publish::check_free(&net.publish)?;
    let outbound = crate::network::outbound_addrs(net)?;
    let key = netns_key()?;
    let lock_path = Path::new(RUN_DIR).join(format!("{key}.lock"));
    let _guard = lock(&lock_path)?;
    let ports = publish::claim(&Path::new(RUN_DIR).join("ports").join(&key), &net.publish)?;
    let lease = lease::take(&Path::new(RUN_DIR).join("leases").join(&key), &net.addr)
        .map_err(anyhow::Error::new)
        .with_context(|| format!("--cidr {}/{}", net.addr.network_v4(), net.addr.prefix_v4()))?;
    let bridge = links::ensure_bridge(BRIDGE, &net.addr, net.ipv6)
        .map_err(anyhow::Error::new)
        .context("--net-mode=kernel: bridge")?;
    // Still under the lock: a bridge made by this run and left unused is removed on failure,
    // before any other run can have put a veth on it.
    let owner = match configure(net, &lease, outbound) {
        Ok(owner) => owner,
        Err(e) => {
            if bridge.created {
                links::delete_link(bridge.index);
            }
            return Err(e);
        }
    };
    let a = &net.addr;
    Ok(KernelNet {
        lease,
        _ports: ports,
        owner,
        bridge: bridge.index,
        mtu: net.mtu,
        lock: lock_path,
        dns: net
            .dns
            .then(|| crate::network::dns_upstreams(net, host_resolv_conf)),
        ipv6: net.ipv6,
        dns_addrs: (a.dns_v4(), a.dns_v6()),
        front: None,
    })
}

/// The sysctls and the sandbox's rules (with those of runs that are gone removed); the
/// owner the rules are tagged with.
fn configure(
    net: &NetConfig,
    lease: &lease::Lease,
    outbound: Vec<IpAddr>,
) -> anyhow::Result<nft::Owner> {
    std::fs::write(
        format!("/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet"),
        "1",
    )
    .with_context(|| format!("cannot set route_localnet on {BRIDGE}"))?;
    switch_on("/proc/sys/net/ipv4/ip_forward", "IPv4 forwarding", "")?;
    if net.ipv6 {
        switch_on(
            "/proc/sys/net/ipv6/conf/all/forwarding",
            "IPv6 forwarding",
            IPV6_FORWARDING_COST,
        )?;
    }
    let owner =
        nft::Owner::of(std::process::id() as i32).context("cannot read our own /proc/self/stat")?;
    let a = &net.addr;
    let mut rules = nft::SandboxRules {
        bridge: BRIDGE.into(),
        sandbox: vec![IpAddr::V4(lease.addrs.v4)],
        gateway: vec![IpAddr::V4(a.gateway_v4())],
        dns: vec![IpAddr::V4(a.dns_v4())],
        host_loopback: net.host_loopback,
        serve_dns: net.dns,
        outbound,
        publish: publish::to_lease(&net.publish, lease.addrs),
    };
    if net.ipv6 {
        rules.sandbox.push(IpAddr::V6(lease.addrs.v6));
        rules.gateway.push(IpAddr::V6(a.gateway_v6()));
        rules.dns.push(IpAddr::V6(a.dns_v6()));
    }
    let listing = nft::list()?;
    let stale = listing
        .as_ref()
        .map(|l| nft::owned_rules(l, &|o| !o.alive()))
        .unwrap_or_default();
    let guard_missing = !listing
        .as_ref()
        .is_some_and(|l| nft::has_rule_in(l, "guard"));
    let mut adds = nft::base_objects(BRIDGE, guard_missing);
    adds.extend(nft::sandbox_objects(&rules, &owner));
    let deletes = stale.iter().map(|(c, h)| nft::delete_rule(c, *h)).collect();
    nft::apply(adds, deletes)?;
    if !stale.is_empty() {
        tracing::info!(
            rules = stale.len(),
            "removed the rules of runs that are gone"
        );
    }
    Ok(owner)
}

impl KernelNet {
    /// The sandbox's leased addresses.
    pub fn addrs(&self) -> SandboxAddrs {
        self.lease.addrs
    }

    /// Creates the veth pair: `rrv<child>` on the bridge, `eth0` in `child`'s network namespace.
    pub fn attach(&self, child: i32) -> anyhow::Result<()> {
        let pid = u32::try_from(child).context("child pid")?;
        links::create_veth(&format!("rrv{child}"), self.mtu, self.bridge, pid)
            .map_err(anyhow::Error::new)
            .context("--net-mode=kernel")
    }

    /// Starts the run's DNS forwarder (`SocketFront`: 127.0.0.1 for IPv4, the bridge's IPv6
    /// DNS address for IPv6, ports of the kernel's choice) and adds the DNAT of the sandbox's
    /// queries to it. Starts threads: call it after the last fork. Nothing with
    /// `--disable-dns` (the DNS address is refused by `prepare`'s rules).
    pub fn serve_dns(&mut self) -> anyhow::Result<()> {
        let Some(upstreams) = &self.dns else {
            return Ok(());
        };
        let mut binds = vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))];
        if self.ipv6 {
            binds.push(SocketAddr::from((self.dns_addrs.1, 0)));
        }
        let front = SocketFront::start(&binds, upstreams)
            .context("--net-mode=kernel: cannot start the DNS forwarder")?;
        let addrs = self.lease.addrs;
        let pairs: Vec<_> = [
            (IpAddr::V4(addrs.v4), IpAddr::V4(self.dns_addrs.0)),
            (IpAddr::V6(addrs.v6), IpAddr::V6(self.dns_addrs.1)),
        ]
        .into_iter()
        .zip(front.endpoints())
        .map(|((me, dns), ends)| (me, dns, *ends))
        .collect();
        self.front = Some(front);
        let _guard = lock(&self.lock)?;
        nft::apply(nft::dns_objects(BRIDGE, &pairs, &self.owner), Vec::new())?;
        Ok(())
    }
}

impl Drop for KernelNet {
    fn drop(&mut self) {
        let owner = self.owner;
        if let Err(e) = remove_rules(&self.lock, &|o| *o == owner || !o.alive()) {
            tracing::error!(error = %format!("{e:#}"), "cannot remove this sandbox's nftables rules; `rootless-run --cleanup` will");
        }
    }
}

/// Removes the rules whose owner `gone` says is gone, and the table when no rule of a live run
/// remains; under the namespace's lock at `lock_path`.
fn remove_rules(lock_path: &Path, gone: &dyn Fn(&nft::Owner) -> bool) -> anyhow::Result<usize> {
    let _guard = lock(lock_path)?;
    let Some(listing) = nft::list()? else {
        return Ok(0);
    };
    let doomed = nft::owned_rules(&listing, gone);
    let live = nft::owned_rules(&listing, &|o| !gone(o));
    let deletes = if live.is_empty() {
        vec![nft::delete_table()]
    } else {
        doomed
            .iter()
            .map(|(c, h)| nft::delete_rule(c, *h))
            .collect()
    };
    nft::apply(Vec::new(), deletes)?;
    Ok(doomed.len())
}

/// `rootless-run --cleanup`: removes the rules of runs that are gone (and our table when no
/// live run has rules). Leases free themselves; veths go with their namespaces.
pub fn cleanup() -> anyhow::Result<()> {
    let lock_path = Path::new(RUN_DIR).join(format!("{}.lock", netns_key()?));
    let n = remove_rules(&lock_path, &|o| !o.alive()).context("--cleanup")?;
    tracing::info!(rules = n, "removed stale rules");
    Ok(())
}
