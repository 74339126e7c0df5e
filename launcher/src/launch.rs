//! The process choreography of one sandbox run:
//!
//! ```text
//! launcher (parent, host namespaces)          child (new user+net [+mnt,uts,ipc,pid,cgroup,time])
//!   block signals; socketpair; fork  ------->  pdeathsig; unshare; id maps (or ask: 'M')
//!   ['M': newuidmap/newgidmap PID; 'm'] <----
//!                                              open tap0; netlink config
//!   receive tap fd  <------ 'R' + SCM_RIGHTS --
//!   [fork holder for --persist]
//!   start netstack thread; send 'g'  ------->  --pid: fork init (pid 1) -> fork command
//!                                              else: stay as monitor (subreaper) -> fork command
//!   forward signals; reap; exit with status    mounts, hostname, root, wd; creds; exec argv
//! ```
//! Called by `main` with a validated `RunConfig`. Owns fork/exec order and the channel
//! protocol; the order of kernel calls inside each phase is `sandbox`'s. No thread exists
//! before the last fork (the netstack thread starts after it).

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

use crate::cli::Caller;
use crate::config::{Join, JoinNsType, NsFile, RunConfig};
use crate::idmap::{self, MapText, RangeSpec, Setgroups, SubIds};
use crate::kernel::Kernel;
use crate::monitor;
use crate::network;
use crate::persist::{self, Record};
use crate::sandbox::{self, CredPlan, FsPlan, JoinPlan, MapWrite, NsPlan, ParentGone};
use crate::supervise::{self, Signals, Status};
use crate::sys::fdpass::Channel;
use crate::sys::process::{self, Forked, Lifeline, ProcDir};
use crate::sys::Linux;

/// Channel message tags.
mod tag {
    /// child -> parent: write my id maps with newuidmap/newgidmap.
    pub const MAPS: u8 = b'M';
    /// parent -> child: maps written.
    pub const MAPS_DONE: u8 = b'm';
    /// child -> parent: namespaces ready (with the tap fd for a new sandbox).
    pub const READY: u8 = b'R';
    /// parent -> child: go ahead and exec.
    pub const GO: u8 = b'g';
}

/// Where a sysctl that disables user namespaces for everyone lives.
const MAX_USER_NAMESPACES: &str = "/proc/sys/user/max_user_namespaces";

/// Id maps that the parent writes with the setuid helpers.
#[derive(Debug, Clone)]
struct HelperMaps {
    uid: Vec<idmap::Extent>,
    gid: Vec<idmap::Extent>,
    setgroups: Setgroups,
    newuidmap: PathBuf,
    newgidmap: PathBuf,
}

/// Everything the child needs, computed before fork.
struct Plan {
    ns: Option<NsPlan>,
    join: Option<JoinPlan>,
    /// Extra namespaces to unshare after joining.
    join_unshare: CloneFlags,
    fs: FsPlan,
    creds: CredPlan,
    /// Fork our own init (new pid namespace).
    init: bool,
    /// Fork a plain child (joined pid namespace).
    relay: bool,
    helper: Option<HelperMaps>,
    /// Namespace types of the new sandbox, for the persist holder.
    holder_types: Vec<JoinNsType>,
}

/// Runs the sandbox; returns the command's status (or an error already worded for the user).
pub fn run(cfg: &RunConfig, caller: &Caller) -> anyhow::Result<Status> {
    let plan = make_plan(cfg, caller)?;
    let mut detached = if cfg.detach { Some(detach()?) } else { None };

    let old_mask = process::block_supervised().context("cannot block signals")?;
    let (ours, theirs) = Channel::pair().context("cannot create the setup channel")?;
    let parent = nix::unistd::getpid().as_raw();
    let child = match process::fork().context("cannot fork")? {
        Forked::Child => {
            drop(ours);
            child_main(cfg, &plan, theirs, parent, &old_mask)
        }
        Forked::Parent(pid) => pid,
    };
    drop(theirs);
    let _span = tracing::debug_span!("sandbox", child = child.as_raw()).entered();

    // Setup handshake. On any failure here the child is killed before we return.
    let tap = match handshake(&ours, child, plan.helper.as_ref()) {
        Ok(Some(tap)) => tap,
        Ok(None) => {
            // The child printed its own one-line error; exit 1 without adding to it.
            let _ = nix::sys::wait::waitpid(child, None);
            return Ok(Status::Exited(1));
        }
        Err(e) => {
            let _ = kill(child, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(child, None);
            return Err(e);
        }
    };

    let mut record = None;
    let mut holder = None;
    let after_ready = (|| -> anyhow::Result<()> {
        let mut k = Linux;
        if let Some(dir) = &cfg.persist {
            let mut rec = Record::claim(dir)?;
            let h = fork_holder(parent, child.as_raw(), &plan.holder_types)?;
            holder = Some(h);
            rec.write_pids(h.as_raw(), parent)?;
            if caller.uid == 0 {
                let files = rec.dir_ns_files(&plan.holder_types);
                rec.bind_ns_files(&mut k, child.as_raw(), &files)?;
            }
            record = Some(rec);
        }
        if !cfg.ns_files.is_empty() {
            bind_ns_files(&mut k, child.as_raw(), &cfg.ns_files)?;
        }
        Ok(())
    })();
    if let Err(e) = after_ready {
        for pid in [Some(child), holder].into_iter().flatten() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        if let Some(r) = record {
            r.remove(&mut Linux);
        }
        return Err(e);
    }

    // The command may start before the stack's thread: its frames wait in the tap's queue,
    // and the thread's start-up is off the command's critical path.
    ours.send(tag::GO, &[], &[])
        .context("cannot tell the sandbox to start")?;
    drop(ours);
    // The last fork is behind us: threads are safe from here on.
    let failed = Arc::new(AtomicBool::new(false));
    let mut net = None;
    if let Some(tap) = tap {
        match network::start(tap, cfg.mtu, cfg.busy_poll, child, failed.clone()) {
            Ok(n) => net = Some(n),
            Err(e) => {
                let _ = kill(child, Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(child, None);
                return Err(e);
            }
        }
    }
    if let Some(d) = detached.take() {
        d.ready();
    }

    let signals = Signals::open()?;
    let stop_file = cfg.persist.as_ref().map(|d| d.join(persist::STOP_FILE));
    let mut stopping = false;
    let status = supervise::supervise_until(&signals, child, false, &mut |sig| {
        // `--stop` leaves DIR/stop and sends SIGTERM: the command gets the SIGTERM (forwarded
        // as usual) and, once it exits, the sandbox goes too.
        if sig == Signal::SIGTERM && stop_file.as_ref().is_some_and(|f| f.exists()) {
            stopping = true;
        }
    })?;
    if failed.load(Ordering::SeqCst) {
        return Ok(Status::Exited(1));
    }
    if let Some(rec) = record {
        if !stopping {
            tracing::info!(?status, "command exited; sandbox persists until --stop");
            wait_for_stop(&signals, &failed, holder)?;
        }
        if let Some(h) = holder {
            let _ = kill(h, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(h, None);
        }
        rec.remove(&mut Linux);
    }
    if let Some(n) = net {
        n.finish();
    }
    Ok(status)
}

/// Waits for SIGTERM/SIGINT/SIGHUP/SIGQUIT (from `--stop` or the terminal), a stack failure,
/// or the holder's death (then nothing keeps the namespaces any more).
fn wait_for_stop(
    signals: &Signals,
    failed: &AtomicBool,
    holder: Option<Pid>,
) -> anyhow::Result<()> {
    loop {
        let (sig, _) = signals.next()?;
        if failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        if sig == Signal::SIGCHLD {
            if let Some(h) = holder {
                if supervise::reap(h, false)?.is_some() {
                    tracing::warn!("the persist holder died; stopping the sandbox");
                    return Ok(());
                }
            }
            continue;
        }
        if matches!(
            sig,
            Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP | Signal::SIGQUIT
        ) {
            tracing::info!(signal = %sig, "stopping persisted sandbox");
            return Ok(());
        }
    }
}

/// Parent side of the setup protocol. `Ok(None)`: the child gave up (and said why).
fn handshake(
    chan: &Channel,
    child: Pid,
    helper: Option<&HelperMaps>,
) -> anyhow::Result<Option<Option<std::os::fd::OwnedFd>>> {
    loop {
        let Some(msg) = chan.recv().context("setup channel")? else {
            return Ok(None);
        };
        match msg.tag {
            tag::MAPS => {
                let maps = helper.ok_or_else(|| anyhow!("child asked for helper maps"))?;
                write_helper_maps(child.as_raw(), maps)?;
                chan.send(tag::MAPS_DONE, &[], &[])
                    .context("setup channel")?;
            }
            tag::READY => return Ok(Some(msg.fds.into_iter().next())),
            other => bail!("unexpected setup message {other:#x}"),
        }
    }
}

fn write_helper_maps(pid: i32, m: &HelperMaps) -> anyhow::Result<()> {
    // Deny must be in place before gid_map is written; newgidmap leaves setgroups alone.
    if m.setgroups == Setgroups::Deny {
        let path = format!("/proc/{pid}/setgroups");
        std::fs::write(&path, "deny").with_context(|| format!("cannot write {path}"))?;
    }
    for (tool, map, flag) in [
        (&m.newuidmap, &m.uid, "--map-users"),
        (&m.newgidmap, &m.gid, "--map-groups"),
    ] {
        let out = std::process::Command::new(tool)
            .arg(pid.to_string())
            .args(idmap::helper_args(map))
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("{flag}: cannot run {}", tool.display()))?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            bail!(
                "{flag}: {} {} failed: {} (check /etc/subuid and /etc/subgid)",
                tool.display(),
                idmap::helper_args(map).join(" "),
                why.trim()
            );
        }
    }
    Ok(())
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

fn make_plan(cfg: &RunConfig, caller: &Caller) -> anyhow::Result<Plan> {
    let im = &cfg.idmap;
    let mut ns = None;
    let mut helper = None;
    let mut join = None;
    let mut join_unshare = CloneFlags::empty();
    let mut relay = false;
    let mut mount_ns = cfg.ns.mount;
    let holder_types;

    match &cfg.join {
        None => {
            check_userns_enabled()?;
            let needs_sub = im.uid_ranges.contains(&RangeSpec::Auto)
                || im.gid_ranges.contains(&RangeSpec::Auto);
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
            let maps =
                if idmap::is_self_map(&uid, caller.uid) && idmap::is_self_map(&gid, caller.gid) {
                    MapWrite::Own {
                        uid: MapText(&uid).to_string(),
                        gid: MapText(&gid).to_string(),
                    }
                } else {
                    let find = |name: &str| {
                        find_helper(name).ok_or_else(|| {
                            anyhow!(
                                "--map-users/--map-groups/--map-auto: {name} not found \
                             (install the uidmap package)"
                            )
                        })
                    };
                    helper = Some(HelperMaps {
                        uid,
                        gid,
                        setgroups: im.setgroups.unwrap_or(Setgroups::Deny),
                        newuidmap: find("newuidmap")?,
                        newgidmap: find("newgidmap")?,
                    });
                    MapWrite::Helper
                };
            let extra = cfg.ns.flags();
            ns = Some(NsPlan {
                unshare: CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET | extra,
                maps,
                time_offsets: sandbox::time_offsets(cfg.monotonic, cfg.boottime),
            });
            let mut types = vec![JoinNsType::User, JoinNsType::Net];
            for (on, t) in [
                (cfg.ns.mount, JoinNsType::Mount),
                (cfg.ns.uts, JoinNsType::Uts),
                (cfg.ns.ipc, JoinNsType::Ipc),
                (cfg.ns.cgroup, JoinNsType::Cgroup),
            ] {
                if on {
                    types.push(t);
                }
            }
            holder_types = types;
        }
        Some(j) => {
            let (plan, types) = match j {
                Join::Pid(pid) => {
                    let types =
                        persist::differing_types(*pid).with_context(|| format!("--join={pid}"))?;
                    (
                        JoinPlan::Pid {
                            pid: *pid,
                            types: types.clone(),
                        },
                        types,
                    )
                }
                Join::Dir(dir) => {
                    let pid = persist::holder_pid(dir)
                        .with_context(|| format!("--join={}", dir.display()))?;
                    let types = persist::differing_types(pid)
                        .with_context(|| format!("--join={}", dir.display()))?;
                    (
                        JoinPlan::Pid {
                            pid,
                            types: types.clone(),
                        },
                        types,
                    )
                }
                Join::Files(files) => {
                    let mut files = files.clone();
                    files.sort_by_key(|(t, _)| JoinNsType::ORDER.iter().position(|o| o == t));
                    let types = files.iter().map(|(t, _)| *t).collect();
                    (JoinPlan::Files(files), types)
                }
            };
            let joined_mnt = types.contains(&JoinNsType::Mount);
            if cfg.mount_proc.is_some() && !cfg.ns.mount && !joined_mnt {
                bail!("--mount-proc: the joined sandbox has no mount namespace of its own; add --mount");
            }
            if cfg.hostname.is_some() && !cfg.ns.uts && !types.contains(&JoinNsType::Uts) {
                bail!("--hostname: the joined sandbox has no UTS namespace of its own; add --uts");
            }
            mount_ns = cfg.ns.mount || joined_mnt;
            // Joined namespaces are entered as they are; new ones are layered on top.
            let mut extra = cfg.ns;
            if joined_mnt && cfg.mount_proc.is_some() && cfg.ns.mount {
                extra.mount = true;
            }
            join_unshare = extra.flags();
            relay = types.contains(&JoinNsType::Pid) && !cfg.ns.pid;
            join = Some(plan);
            holder_types = Vec::new();
        }
    }

    Ok(Plan {
        ns,
        join,
        join_unshare,
        fs: FsPlan {
            mount_ns,
            propagation: cfg.ns.mount.then_some(cfg.propagation),
            hostname: cfg.hostname.clone(),
            root: cfg.root.clone(),
            mount_proc: cfg.mount_proc.clone(),
            wd: cfg.wd.clone(),
        },
        creds: CredPlan {
            setgid: cfg.setgid,
            setuid: cfg.setuid,
            keep_caps: cfg.keep_caps,
            setgroups_allowed: cfg.idmap.setgroups == Some(Setgroups::Allow),
            kill_child: cfg.kill_child,
        },
        init: cfg.ns.pid,
        relay,
        helper,
        holder_types,
    })
}

fn check_userns_enabled() -> anyhow::Result<()> {
    let limit = std::fs::read_to_string(MAX_USER_NAMESPACES).unwrap_or_default();
    userns_limit_check(&limit)
}

/// Refuses up front when the sysctl disables user namespaces (unshare would fail with ENOSPC,
/// whose meaning is far from obvious).
fn userns_limit_check(limit: &str) -> anyhow::Result<()> {
    if limit.trim() == "0" {
        bail!(
            "user namespaces are disabled: sysctl user.max_user_namespaces is 0 \
             (enable them: sysctl -w user.max_user_namespaces=15000)"
        );
    }
    Ok(())
}

fn bind_ns_files<K: Kernel>(k: &mut K, pid: i32, files: &[NsFile]) -> anyhow::Result<()> {
    // Reuse the record's binder without a directory to clean up: these files outlive us.
    for f in files {
        if !f.path.exists() {
            std::fs::File::create(&f.path)
                .with_context(|| format!("cannot create {}", f.path.display()))?;
        }
        k.mount(&crate::kernel::Mount {
            source: Some(PathBuf::from(format!("/proc/{pid}/ns/{}", f.kind))),
            target: f.path.clone(),
            fstype: None,
            flags: nix::mount::MsFlags::MS_BIND,
        })
        .with_context(|| {
            format!(
                "cannot bind the {} namespace to {}",
                f.kind,
                f.path.display()
            )
        })?;
    }
    Ok(())
}

/// The `--persist` holder: a child of ours that enters the sandbox's namespaces and sleeps,
/// keeping them alive after the command exits. Dies with us (PR_SET_PDEATHSIG).
fn fork_holder(parent: i32, sandbox: i32, types: &[JoinNsType]) -> anyhow::Result<Pid> {
    let (ready_r, ready_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot create a pipe")?;
    match process::fork().context("cannot fork the persist holder")? {
        Forked::Parent(pid) => {
            drop(ready_w);
            // One byte once it is inside; EOF if it could not get there.
            let mut b = [0u8; 1];
            let n = loop {
                match nix::unistd::read(ready_r.as_fd(), &mut b) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other.unwrap_or(0),
                }
            };
            if n != 1 {
                let _ = nix::sys::wait::waitpid(pid, None);
                bail!("--persist: the holder process could not enter the sandbox's namespaces");
            }
            Ok(pid)
        }
        Forked::Child => {
            drop(ready_r);
            let mut k = Linux;
            let r = sandbox::tie_to_parent(&mut k, Signal::SIGKILL, parent).and_then(|()| {
                sandbox::join(
                    &mut k,
                    &JoinPlan::Pid {
                        pid: sandbox,
                        types: types.to_vec(),
                    },
                )
            });
            if let Err(e) = r {
                tracing::error!(error = %format!("{e:#}"), "persist holder cannot enter the sandbox");
                std::process::exit(1);
            }
            let _ = nix::unistd::write(&ready_w, b"h");
            // Keep nothing of the launcher's: not its fds (the tap, the setup channel), not the
            // host's working directory (and any mount it pins), not the caller's terminal or
            // pipes (a pipe held open would keep a reader waiting for EOF).
            process::close_fds_from(3);
            let _ = nix::unistd::chdir("/");
            let _ = process::stdio_to_devnull();
            process::wait_forever(&process::supervised_set())
        }
    }
}

/// `--detach`: the original process waits for "ready" and exits; the rest runs on in a new
/// session. Must run before any thread exists.
struct Detached {
    notify: std::os::fd::OwnedFd,
}

impl Detached {
    fn ready(self) {
        let _ = nix::unistd::write(&self.notify, b"r");
        drop(self.notify);
        if let Err(e) = process::stdio_to_devnull() {
            tracing::warn!(error = %e, "cannot detach stdio");
        }
    }
}

fn detach() -> anyhow::Result<Detached> {
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot create a pipe")?;
    match process::fork().context("cannot fork")? {
        Forked::Parent(pid) => {
            drop(w);
            let mut b = [0u8; 1];
            let n = loop {
                match nix::unistd::read(r.as_fd(), &mut b) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other.unwrap_or(0),
                }
            };
            if n == 1 {
                std::process::exit(0);
            }
            // Setup failed; the launcher printed why. Pass its status on.
            let code = match nix::sys::wait::waitpid(pid, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, c)) if c != 0 => c,
                _ => 1,
            };
            std::process::exit(code);
        }
        Forked::Child => {
            drop(r);
            let _ = nix::unistd::setsid();
            Ok(Detached { notify: w })
        }
    }
}

// ---- child side ----

fn child_main(cfg: &RunConfig, plan: &Plan, chan: Channel, parent: i32, old_mask: &SigSet) -> ! {
    let mut k = Linux;
    let code = match child_setup(&mut k, cfg, plan, chan, parent, old_mask) {
        Ok(code) => code,
        Err(e) => crate::report_child_error(&e),
    };
    std::process::exit(code)
}

fn child_setup(
    k: &mut Linux,
    cfg: &RunConfig,
    plan: &Plan,
    chan: Channel,
    parent: i32,
    old_mask: &SigSet,
) -> anyhow::Result<i32> {
    sandbox::tie_to_parent(k, Signal::SIGKILL, parent)?;
    // The monitor lists processes through the caller's /proc, whatever the command's mount
    // namespace and root become.
    let proc = if plan.init || plan.relay {
        None
    } else {
        Some(ProcDir::open().context("cannot open /proc")?)
    };
    if let Some(ns) = &plan.ns {
        sandbox::enter(k, ns, parent, &mut || {
            chan.send(tag::MAPS, &[], &[]).context("setup channel")?;
            match chan.recv().context("setup channel")? {
                Some(m) if m.tag == tag::MAPS_DONE => Ok(()),
                Some(m) => bail!("unexpected setup message {:#x}", m.tag),
                None => Err(ParentGone.into()),
            }
        })?;
        let tap = netstack::tap::open(netstack::config::TAP_NAME)
            .context("cannot create the sandbox's tap device")?;
        netstack::netconf::configure(netstack::config::TAP_NAME, cfg.mtu, cfg.ipv6)
            .context("cannot configure the sandbox's network")?;
        if let Err(e) = process::tap_set_persist(tap.as_fd()) {
            // Only the launcher's exit gets slower; the device still dies with the namespace.
            tracing::debug!(error = %e, "TUNSETPERSIST failed");
        }
        chan.send(tag::READY, &[], &[tap.as_fd()])
            .context("cannot hand the tap device to the launcher")?;
    } else if let Some(j) = &plan.join {
        sandbox::join(k, j)?;
        if !plan.join_unshare.is_empty() {
            k.unshare(plan.join_unshare)
                .map_err(sandbox::unshare_error)?;
        }
        // Entering a user namespace changes credentials, which clears the death signal.
        sandbox::tie_to_parent(k, Signal::SIGKILL, parent)?;
        chan.send(tag::READY, &[], &[]).context("setup channel")?;
    }
    match chan.recv() {
        Ok(Some(m)) if m.tag == tag::GO => {}
        _ => return Err(ParentGone.into()),
    }
    drop(chan);
    if cfg.detach {
        process::stdio_to_devnull().context("--detach: cannot redirect stdio")?;
    }

    if plan.init || plan.relay {
        let mut lifeline = Lifeline::new().context("cannot create a pipe")?;
        match process::fork().context("cannot fork")? {
            Forked::Parent(pid) => {
                // Keep our write end open for as long as we live: it is the child's lifeline.
                let _lifeline = lifeline;
                return relay(pid);
            }
            Forked::Child => {
                // Our parent is outside our pid namespace: getppid() says 0, so check the pipe.
                k.set_pdeathsig(Signal::SIGKILL)?;
                if !lifeline.parent_alive() {
                    return Err(ParentGone.into());
                }
            }
        }
        if plan.init {
            // We are pid 1: mount proc from inside the namespace, then run the command as our
            // child and stay as its init.
            sandbox::prepare_fs(k, &plan.fs)?;
            let me = nix::unistd::getpid().as_raw();
            let signals = Signals::open()?;
            match process::fork().context("cannot fork")? {
                Forked::Parent(cmd) => {
                    let st = supervise::supervise(&signals, cmd, true)?;
                    // pid 1 cannot die of its own signal; report it as the shell would.
                    return Ok(st.code());
                }
                Forked::Child => {
                    drop(signals);
                    return exec_command(k, cfg, plan, me, old_mask);
                }
            }
        }
        sandbox::prepare_fs(k, &plan.fs)?;
        return exec_command(k, cfg, plan, 0, old_mask);
    }
    let proc = proc.context("no /proc handle for the monitor")?;
    let signals = monitor::prepare(k, parent)?;
    let me = nix::unistd::getpid().as_raw();
    match process::fork().context("cannot fork")? {
        Forked::Parent(cmd) => {
            let st = monitor::watch(&signals, cmd, parent, plan.creds.kill_child, &proc)?;
            if let Status::Signaled(sig) = st {
                process::reraise(sig);
            }
            Ok(st.code())
        }
        Forked::Child => {
            drop(signals);
            drop(proc);
            sandbox::prepare_fs(k, &plan.fs)?;
            exec_command(k, cfg, plan, me, old_mask)
        }
    }
}

/// Forwards signals to `child` and exits as it did (re-raising a fatal signal).
fn relay(child: Pid) -> anyhow::Result<i32> {
    let signals = Signals::open()?;
    let st = supervise::supervise(&signals, child, false)?;
    if let Status::Signaled(sig) = st {
        process::reraise(sig);
    }
    Ok(st.code())
}

fn exec_command(
    k: &mut Linux,
    cfg: &RunConfig,
    plan: &Plan,
    parent: i32,
    old_mask: &SigSet,
) -> anyhow::Result<i32> {
    sandbox::set_credentials(k, &plan.creds, parent)?;
    process::restore_for_exec(old_mask).context("cannot restore the signal mask")?;
    match process::exec(&cfg.argv) {
        Ok(never) => match never {},
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_max_user_namespaces_is_refused_with_the_sysctl_named() {
        let e = userns_limit_check("0\n").expect_err("disabled");
        assert_eq!(
            e.to_string(),
            "user namespaces are disabled: sysctl user.max_user_namespaces is 0 \
             (enable them: sysctl -w user.max_user_namespaces=15000)"
        );
        assert!(userns_limit_check("96365\n").is_ok());
        assert!(
            userns_limit_check("").is_ok(),
            "unreadable: let unshare decide"
        );
    }
}
