//! The process choreography of one sandbox run:
//!
//! ```text
//! launcher (parent, host namespaces)          child (new user+net [+mnt,uts,ipc,pid,cgroup,time])
//!   read resolv.conf; plan; bind --publish
//!   block signals; socketpair; fork  ------->  drop --publish sockets; pdeathsig; unshare;
//!   ['M': newuidmap/newgidmap PID; 'm'] <----  id maps (or ask: 'M')
//!                                              open tap0; netlink config
//!   receive tap fd  <------ 'R' + SCM_RIGHTS --
//!   [fork holder for --persist]
//!   command channel; --api-socket thread
//!   send 'g'; start netstack thread  ------->  --pid: fork init (pid 1) -> fork command
//!                                              else: stay as monitor (subreaper) -> fork command
//!   forward signals; reap; exit with status    mounts (resolv.conf), hostname, root, wd; creds;
//!                                              exec argv
//! ```
//! Called by `main` with a validated `RunConfig`; what the child does is decided before the
//! fork, by `plan`. Owns fork/exec order and the channel protocol; the order of kernel calls
//! inside each phase is `sandbox`'s and `fsview`'s. No thread exists before the last fork
//! (the API and netstack threads start after it).

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

use crate::cli::Caller;
use crate::config::{JoinNsType, NsFile, RunConfig};
use crate::fsview;
use crate::idmap::{self, Setgroups};
use crate::kernel::Kernel;
use crate::monitor;
use crate::network::{self, Network, Prepared, Serving};
use crate::persist::{self, Record};
use crate::plan::{self, HelperMaps, Plan};
use crate::resolv;
use crate::sandbox::{self, JoinPlan, NsPlan, ParentGone};
use crate::supervise::{self, Signals, Status};
use crate::sys::process::{self, Forked, Lifeline, ProcDir};
use crate::sys::Linux;
use rr_ns::fdpass::Channel;

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

/// Runs the sandbox; returns the command's status (or an error already worded for the user).
pub fn run(cfg: &RunConfig, caller: &Caller) -> anyhow::Result<Status> {
    let host_resolv_conf = if cfg.join.is_none() {
        resolv::read_host_file()
    } else {
        String::new()
    };
    let plan = plan::make_plan(cfg, caller, &host_resolv_conf)?;
    let mut detached = if cfg.detach { Some(detach()?) } else { None };
    // Only a new sandbox has a network of ours.
    let prepared = if plan.ns.is_some() {
        Some(network::prepare(&cfg.net, &host_resolv_conf)?)
    } else {
        None
    };

    let (ours, child, parent, prepared) = fork_child(cfg, &plan, prepared)?;
    let _span = tracing::debug_span!("sandbox", child = child.as_raw()).entered();

    // Setup handshake. On any failure here the child is killed before we return.
    let Some(tap) = await_ready(&ours, child, plan.helper.as_ref())? else {
        // The child printed its own one-line error; exit 1 without adding to it.
        return Ok(Status::Exited(1));
    };
    let (record, holder) = persist_and_bind(cfg, caller, &plan, parent, child)?;
    // The last fork is behind us: threads are safe from here on. The API socket is up before
    // the command starts, so the command (or whoever waits for it) can use it at once.
    let serving = match prepared.map(network::serve_api).transpose() {
        Ok(s) => s,
        Err(e) => {
            abandon(child, holder, record);
            return Err(e);
        }
    };

    // The command may start before the stack's thread: its frames wait in the tap's queue,
    // and the thread's start-up is off the command's critical path.
    ours.send(tag::GO, &[], &[])
        .context("cannot tell the sandbox to start")?;
    drop(ours);
    let failed = Arc::new(AtomicBool::new(false));
    let net = start_network(serving, tap, child, &failed)?;
    if let Some(d) = detached.take() {
        d.ready();
    }

    let signals = Signals::open()?;
    let (status, stopping) = supervise_command(cfg, &signals, child)?;
    if failed.load(Ordering::SeqCst) {
        return Ok(Status::Exited(1));
    }
    if let Some(rec) = record {
        finish_persist(rec, holder, stopping, status, &signals, &failed)?;
    }
    if let Some(n) = net {
        n.finish();
    }
    Ok(status)
}

/// Blocks the supervised signals and forks the child (which runs `child_main` and never
/// returns here; it drops its copy of `net`). Returns our end of the setup channel, the child,
/// our own pid, and `net`.
fn fork_child(
    cfg: &RunConfig,
    plan: &Plan,
    net: Option<Prepared>,
) -> anyhow::Result<(Channel, Pid, i32, Option<Prepared>)> {
    let old_mask = process::block_supervised().context("cannot block signals")?;
    let (ours, theirs) = Channel::pair().context("cannot create the setup channel")?;
    let parent = nix::unistd::getpid().as_raw();
    let child = match process::fork().context("cannot fork")? {
        Forked::Child => {
            drop(ours);
            drop(net);
            child_main(cfg, plan, theirs, parent, &old_mask)
        }
        Forked::Parent(pid) => pid,
    };
    drop(theirs);
    Ok((ours, child, parent, net))
}

/// Runs the parent's side of the handshake up to READY and returns the tap fd, if the child
/// passed one. `Ok(None)`: the child gave up (and said why); it is reaped. On an error the
/// child is killed.
fn await_ready(
    chan: &Channel,
    child: Pid,
    helper: Option<&HelperMaps>,
) -> anyhow::Result<Option<Option<OwnedFd>>> {
    match handshake(chan, child, helper) {
        Ok(Some(tap)) => Ok(Some(tap)),
        Ok(None) => {
            let _ = nix::sys::wait::waitpid(child, None);
            Ok(None)
        }
        Err(e) => {
            kill_and_reap(child);
            Err(e)
        }
    }
}

/// Between READY and GO: the `--persist` holder and record, and the `--ns-file` binds.
/// On failure the child and the holder are killed and the record removed.
fn persist_and_bind(
    cfg: &RunConfig,
    caller: &Caller,
    plan: &Plan,
    parent: i32,
    child: Pid,
) -> anyhow::Result<(Option<Record>, Option<Pid>)> {
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
        abandon(child, holder, record);
        return Err(e);
    }
    Ok((record, holder))
}

/// Setup failed after READY: kills the child and the `--persist` holder, removes the record.
fn abandon(child: Pid, holder: Option<Pid>, record: Option<Record>) {
    for pid in [Some(child), holder].into_iter().flatten() {
        kill_and_reap(pid);
    }
    if let Some(r) = record {
        r.remove(&mut Linux);
    }
}

/// Starts the stack on the sandbox's tap (there is none when joining); if it cannot start,
/// the child is killed.
fn start_network(
    serving: Option<Serving>,
    tap: Option<OwnedFd>,
    child: Pid,
    failed: &Arc<AtomicBool>,
) -> anyhow::Result<Option<Network>> {
    let (Some(tap), Some(serving)) = (tap, serving) else {
        return Ok(None);
    };
    match network::start(serving, tap, child, failed.clone()) {
        Ok(n) => Ok(Some(n)),
        Err(e) => {
            kill_and_reap(child);
            Err(e)
        }
    }
}

/// Forwards signals to the child until it exits. Also says whether `--stop` asked for the end.
fn supervise_command(
    cfg: &RunConfig,
    signals: &Signals,
    child: Pid,
) -> anyhow::Result<(Status, bool)> {
    let stop_file = cfg.persist.as_ref().map(|d| d.join(persist::STOP_FILE));
    let mut stopping = false;
    let status = supervise::supervise_until(signals, child, false, &mut |sig| {
        // `--stop` leaves DIR/stop and sends SIGTERM: the command gets the SIGTERM (forwarded
        // as usual) and, once it exits, the sandbox goes too.
        if sig == Signal::SIGTERM && stop_file.as_ref().is_some_and(|f| f.exists()) {
            stopping = true;
        }
    })?;
    Ok((status, stopping))
}

/// `--persist`, once the command has exited: unless `--stop` ended it, keeps the sandbox
/// until told to stop; then kills the holder and removes the record.
fn finish_persist(
    rec: Record,
    holder: Option<Pid>,
    stopping: bool,
    status: Status,
    signals: &Signals,
    failed: &AtomicBool,
) -> anyhow::Result<()> {
    if !stopping {
        tracing::info!(?status, "command exited; sandbox persists until --stop");
        wait_for_stop(signals, failed, holder)?;
    }
    if let Some(h) = holder {
        kill_and_reap(h);
    }
    rec.remove(&mut Linux);
    Ok(())
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
        enter_new(k, cfg, ns, &chan, parent)?;
    } else if let Some(j) = &plan.join {
        enter_joined(k, j, plan.join_unshare, &chan, parent)?;
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
        return run_in_pid_ns(k, cfg, plan, old_mask);
    }
    let proc = proc.context("no /proc handle for the monitor")?;
    run_under_monitor(k, cfg, plan, proc, parent, old_mask)
}

/// A new sandbox: unshares and gets the id maps written (asking the parent when the helpers
/// must write them), then creates and configures the tap and hands it over with READY.
fn enter_new(
    k: &mut Linux,
    cfg: &RunConfig,
    ns: &NsPlan,
    chan: &Channel,
    parent: i32,
) -> anyhow::Result<()> {
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
    netstack::netconf::configure(
        netstack::config::TAP_NAME,
        cfg.net.mtu,
        &cfg.net.addr,
        cfg.net.ipv6,
        cfg.net.mac,
    )
    .context("cannot configure the sandbox's network")?;
    if let Err(e) = process::tap_set_persist(tap.as_fd()) {
        // Only the launcher's exit gets slower; the device still dies with the namespace.
        tracing::debug!(error = %e, "TUNSETPERSIST failed");
    }
    chan.send(tag::READY, &[], &[tap.as_fd()])
        .context("cannot hand the tap device to the launcher")?;
    Ok(())
}

/// An existing sandbox: enters its namespaces, unshares the new ones on top, then READY.
fn enter_joined(
    k: &mut Linux,
    join: &JoinPlan,
    unshare: CloneFlags,
    chan: &Channel,
    parent: i32,
) -> anyhow::Result<()> {
    sandbox::join(k, join)?;
    if !unshare.is_empty() {
        k.unshare(unshare).map_err(sandbox::unshare_error)?;
    }
    // Entering a user namespace changes credentials, which clears the death signal.
    sandbox::tie_to_parent(k, Signal::SIGKILL, parent)?;
    chan.send(tag::READY, &[], &[]).context("setup channel")?;
    Ok(())
}

/// A new or joined pid namespace: forks once more, so that the rest runs inside it, and
/// stays outside relaying signals. Inside, becomes the init (`--pid`) or execs the command.
fn run_in_pid_ns(
    k: &mut Linux,
    cfg: &RunConfig,
    plan: &Plan,
    old_mask: &SigSet,
) -> anyhow::Result<i32> {
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
        return run_as_init(k, cfg, plan, old_mask);
    }
    fsview::prepare_fs(k, &plan.fs)?;
    exec_command(k, cfg, plan, 0, old_mask)
}

/// We are pid 1: mount proc from inside the namespace, then run the command as our child and
/// stay as its init.
fn run_as_init(
    k: &mut Linux,
    cfg: &RunConfig,
    plan: &Plan,
    old_mask: &SigSet,
) -> anyhow::Result<i32> {
    fsview::prepare_fs(k, &plan.fs)?;
    let me = nix::unistd::getpid().as_raw();
    let signals = Signals::open()?;
    match process::fork().context("cannot fork")? {
        Forked::Parent(cmd) => {
            let st = supervise::supervise(&signals, cmd, true)?;
            // pid 1 cannot die of its own signal; report it as the shell would.
            Ok(st.code())
        }
        Forked::Child => {
            drop(signals);
            exec_command(k, cfg, plan, me, old_mask)
        }
    }
}

/// No pid namespace of our own: stays as the monitor (see `monitor`) and forks the command.
fn run_under_monitor(
    k: &mut Linux,
    cfg: &RunConfig,
    plan: &Plan,
    proc: ProcDir,
    parent: i32,
    old_mask: &SigSet,
) -> anyhow::Result<i32> {
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
            fsview::prepare_fs(k, &plan.fs)?;
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

/// SIGKILL to `pid`, then reaps it (errors ignored: it may be gone already).
fn kill_and_reap(pid: Pid) {
    let _ = kill(pid, Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
}
