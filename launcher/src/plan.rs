//! Turns a validated `RunConfig` into the `Plan` the forked child follows: which namespaces to
//! create or join, how the id maps get written (by the child, or by the parent through
//! newuidmap/newgidmap), the filesystem view (with the generated resolv.conf, for which a new
//! sandbox gets a private mount namespace even when none was asked for) and the credentials.
//! Called by `launch::run` once, before any fork (after `preflight`). Reads only what deciding
//! needs (/etc/subuid and /etc/subgid for `auto` ranges, a joined sandbox's
//! /proc entries, the sandbox root's /etc/resolv.conf symlinks); never forks, writes or
//! changes a namespace. Keep it one short function per part of the plan.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use nix::sched::CloneFlags;

use crate::cli::Caller;
use crate::config::{Join, JoinNsType, Propagation, RunConfig};
use crate::fsview::{FsPlan, ResolvMount};
use crate::idmap::{self, IdMapPlan, MapText, RangeSpec, Setgroups, SubIds};
use crate::persist;
use crate::pidns::PidOne;
use crate::resolv;
use crate::sandbox::{self, CredPlan, JoinPlan, MapWrite, NsPlan};

/// Id maps that the parent writes with the setuid helpers.
#[derive(Debug, Clone)]
pub struct HelperMaps {
    /// uid map, for newuidmap.
    pub uid: Vec<idmap::Extent>,
    /// gid map, for newgidmap.
    pub gid: Vec<idmap::Extent>,
    /// What to write to /proc/PID/setgroups before the gid map.
    pub setgroups: Setgroups,
    /// Path of newuidmap.
    pub newuidmap: PathBuf,
    /// Path of newgidmap.
    pub newgidmap: PathBuf,
}

/// Everything the child needs, computed before fork.
pub struct Plan {
    /// Namespaces to create (a new sandbox).
    pub ns: Option<NsPlan>,
    /// Namespaces to enter (`--join`, `--join-ns`).
    pub join: Option<JoinPlan>,
    /// Extra namespaces to unshare after joining.
    pub join_unshare: CloneFlags,
    /// The filesystem view before exec.
    pub fs: FsPlan,
    /// Credentials just before exec.
    pub creds: CredPlan,
    /// A new pid namespace, and who is its pid 1 (`None`: no new pid namespace).
    pub pid1: Option<PidOne>,
    /// Fork a plain child (joined pid namespace).
    pub relay: bool,
    /// Maps the parent writes with the setuid helpers, if the child cannot.
    pub helper: Option<HelperMaps>,
    /// Namespace types of the new sandbox, for the persist holder.
    pub holder_types: Vec<JoinNsType>,
}

/// The plan for `cfg`: a new sandbox, or one joined. `host_resolv_conf` is the host's
/// /etc/resolv.conf, whose search and options lines the generated one keeps.
pub fn make_plan(cfg: &RunConfig, caller: &Caller, host_resolv_conf: &str) -> anyhow::Result<Plan> {
    match &cfg.join {
        None => new_sandbox_plan(cfg, caller, host_resolv_conf),
        Some(j) => join_plan(cfg, j),
    }
}

/// A new sandbox: user and network namespaces plus the extras, with id maps.
fn new_sandbox_plan(
    cfg: &RunConfig,
    caller: &Caller,
    host_resolv_conf: &str,
) -> anyhow::Result<Plan> {
    let (maps, helper) = resolve_maps(&cfg.idmap, caller)?;
    let resolv_conf = resolv::mount_plan(&cfg.net, cfg.root.as_deref(), host_resolv_conf);
    // The generated resolv.conf needs a mount namespace; one made for it alone is private
    // (and, owned by the new user namespace, could not propagate mounts out anyway).
    let mount_ns = cfg.ns.mount || resolv_conf.is_some();
    let mut unshare = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET | cfg.ns.flags();
    if mount_ns {
        unshare |= CloneFlags::CLONE_NEWNS;
    }
    let ns = NsPlan {
        unshare,
        maps,
        time_offsets: sandbox::time_offsets(cfg.monotonic, cfg.boottime),
    };
    Ok(Plan {
        ns: Some(ns),
        join: None,
        join_unshare: CloneFlags::empty(),
        fs: fs_plan(cfg, cfg.ns.mount, resolv_conf),
        creds: cred_plan(cfg),
        pid1: PidOne::of(cfg),
        relay: false,
        helper,
        holder_types: holder_types(cfg, mount_ns),
    })
}

/// The namespace types a `--persist` holder keeps alive for a new sandbox.
fn holder_types(cfg: &RunConfig, mount_ns: bool) -> Vec<JoinNsType> {
    let mut types = vec![JoinNsType::User, JoinNsType::Net];
    for (on, t) in [
        (mount_ns, JoinNsType::Mount),
        (cfg.ns.uts, JoinNsType::Uts),
        (cfg.ns.ipc, JoinNsType::Ipc),
        (cfg.ns.cgroup, JoinNsType::Cgroup),
    ] {
        if on {
            types.push(t);
        }
    }
    types
}

/// Resolves the requested id maps and decides who writes them: the child itself when they map
/// only the caller's own ids, else the parent with the setuid helpers (`HelperMaps`).
fn resolve_maps(im: &IdMapPlan, caller: &Caller) -> anyhow::Result<(MapWrite, Option<HelperMaps>)> {
    let (uid, gid) = resolve_ids(im, caller)?;
    if idmap::is_self_map(&uid, caller.uid) && idmap::is_self_map(&gid, caller.gid) {
        let own = MapWrite::Own {
            uid: MapText(&uid).to_string(),
            gid: MapText(&gid).to_string(),
        };
        return Ok((own, None));
    }
    let helper = HelperMaps {
        uid,
        gid,
        setgroups: im.setgroups.unwrap_or(Setgroups::Deny),
        newuidmap: require_helper("newuidmap")?,
        newgidmap: require_helper("newgidmap")?,
    };
    Ok((MapWrite::Helper, Some(helper)))
}

/// The final uid and gid maps, with `auto` ranges taken from /etc/subuid and /etc/subgid.
fn resolve_ids(
    im: &IdMapPlan,
    caller: &Caller,
) -> anyhow::Result<(Vec<idmap::Extent>, Vec<idmap::Extent>)> {
    let needs_sub =
        im.uid_ranges.contains(&RangeSpec::Auto) || im.gid_ranges.contains(&RangeSpec::Auto);
    let sub = if needs_sub {
        SubIds::load(caller.name(), caller.uid, caller.gid, caller.group())
    } else {
        SubIds::default()
    };
    // The name only appears in errors about `auto` ranges; looking it up costs an
    // NSS round trip, so a plain launch does not.
    let name = if needs_sub { caller.name() } else { "" };
    let uid = idmap::resolve(
        im.own_uid_inner,
        caller.uid,
        &im.uid_ranges,
        sub.uid,
        name,
        idmap::SUBUID_PATH,
    )
    .context("--map-users")?;
    let gid = idmap::resolve(
        im.own_gid_inner,
        caller.gid,
        &im.gid_ranges,
        sub.gid,
        name,
        idmap::SUBGID_PATH,
    )
    .context("--map-groups")?;
    Ok((uid, gid))
}

/// `find_helper`, or an error that says which package provides it.
fn require_helper(name: &str) -> anyhow::Result<PathBuf> {
    find_helper(name).ok_or_else(|| {
        anyhow!(
            "--map-users/--map-groups/--map-auto: {name} not found \
             (install the uidmap package)"
        )
    })
}

/// Finds a setuid helper on PATH or in the usual sbin/bin directories (`setpriv
/// --reset-env` leaves /usr/sbin off PATH).
fn find_helper(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Entering an existing sandbox (`--join`, `--join-ns`), with any new namespaces on top.
fn join_plan(cfg: &RunConfig, j: &Join) -> anyhow::Result<Plan> {
    let (plan, types) = join_target(j)?;
    check_joined_namespaces(cfg, &types)?;
    let joined_mnt = types.contains(&JoinNsType::Mount);
    Ok(Plan {
        ns: None,
        join: Some(plan),
        // Joined namespaces are entered as they are; the ones asked for anew (e.g. --mount
        // for a private /proc on top of a joined mount namespace) are unshared after.
        join_unshare: cfg.ns.flags(),
        fs: fs_plan(cfg, cfg.ns.mount || joined_mnt, None),
        creds: cred_plan(cfg),
        pid1: PidOne::of(cfg),
        relay: types.contains(&JoinNsType::Pid) && !cfg.ns.pid,
        helper: None,
        holder_types: Vec::new(),
    })
}

/// How to enter the sandbox `j` names, and the namespace types that covers.
fn join_target(j: &Join) -> anyhow::Result<(JoinPlan, Vec<JoinNsType>)> {
    match j {
        Join::Pid(pid) => join_pid(*pid, || format!("--join={pid}")),
        Join::Dir(dir) => {
            let what = || format!("--join={}", dir.display());
            let pid = persist::holder_pid(dir).with_context(what)?;
            join_pid(pid, what)
        }
        Join::Files(files) => {
            let mut files = files.clone();
            files.sort_by_key(|(t, _)| JoinNsType::ORDER.iter().position(|o| o == t));
            let types = files.iter().map(|(t, _)| *t).collect();
            Ok((JoinPlan::Files(files), types))
        }
    }
}

/// Joins every namespace of `pid` that differs from ours; `what` names the flag in errors.
fn join_pid(
    pid: i32,
    what: impl FnOnce() -> String,
) -> anyhow::Result<(JoinPlan, Vec<JoinNsType>)> {
    let types = persist::differing_types(pid).with_context(what)?;
    Ok((
        JoinPlan::Pid {
            pid,
            types: types.clone(),
        },
        types,
    ))
}

/// Refuses options that need a namespace the joined sandbox lacks and that is not new.
fn check_joined_namespaces(cfg: &RunConfig, types: &[JoinNsType]) -> anyhow::Result<()> {
    let joined_mnt = types.contains(&JoinNsType::Mount);
    if cfg.mount_proc.is_some() && !cfg.ns.mount && !joined_mnt {
        bail!("--mount-proc: the joined sandbox has no mount namespace of its own; add --mount");
    }
    if cfg.hostname.is_some() && !cfg.ns.uts && !types.contains(&JoinNsType::Uts) {
        bail!("--hostname: the joined sandbox has no UTS namespace of its own; add --uts");
    }
    Ok(())
}

/// The filesystem view; `mount_ns` says whether the user asked for a mount namespace (new or
/// joined), `resolv_conf` whether we mount a generated resolv.conf (in one of our own).
fn fs_plan(cfg: &RunConfig, mount_ns: bool, resolv_conf: Option<ResolvMount>) -> FsPlan {
    let propagation = if cfg.ns.mount {
        Some(cfg.propagation)
    } else {
        resolv_conf.as_ref().map(|_| Propagation::Private)
    };
    FsPlan {
        mount_ns,
        propagation,
        hostname: cfg.hostname.clone(),
        resolv_conf,
        root: cfg.root.clone(),
        mount_proc: cfg.mount_proc.clone(),
        wd: cfg.wd.clone(),
    }
}

/// The credentials to switch to just before exec.
fn cred_plan(cfg: &RunConfig) -> CredPlan {
    CredPlan {
        setgid: cfg.setgid,
        setuid: cfg.setuid,
        keep_caps: cfg.keep_caps,
        setgroups_allowed: cfg.idmap.setgroups == Some(Setgroups::Allow),
        kill_child: cfg.kill_child,
    }
}
