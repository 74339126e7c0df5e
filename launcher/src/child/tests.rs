//! The sandbox child's whole path, fork to exec, against the recording fake: the exact kernel
//! calls (channel messages and forks included) for a plain run, `--pid` (the program is pid 1),
//! `--init` (our init is, the program pid 2), `--mount-proc` with
//! `--root`, the generated resolv.conf, `--join`, and the ways setup stops early.
//! The run configuration comes from the command line (`cli`); the plan is written out here, as
//! `plan::make_plan` would make it, so the tests read no host files.

use std::path::{Path, PathBuf};

use netstack::config::Addressing;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};

use super::*;
use crate::config::{JoinNsType, Propagation};
use crate::fsview::{FsPlan, ResolvMount};
use crate::handshake::tag;
use crate::kernel::fake::{Call, Recorder};
use crate::kernel::{Mount, ProcFile};
use crate::pidns::PidOne;
use crate::sandbox::{CredPlan, MapWrite, ParentGone};
use crate::sys::process::ExecError;

/// The launcher's pid; the child is the next one.
const LAUNCHER: i32 = 100;
const CHILD: i32 = 101;
const USER_NET: CloneFlags = CloneFlags::CLONE_NEWUSER.union(CloneFlags::CLONE_NEWNET);
/// The flags of proc and sysfs mounts (fsview).
const FS_FLAGS: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// The run configuration for these options (after argv[0]), as alice (uid/gid 1000).
fn cfg(opts: &[&str]) -> RunConfig {
    crate::cli::tests::run(opts).expect("valid options")
}

/// A new sandbox with the extra `unshare` flags, alice's own id maps and the view `fs`.
fn new_sandbox(unshare: CloneFlags, fs: FsPlan, pid1: Option<PidOne>) -> Plan {
    Plan {
        ns: Some(NsPlan {
            unshare: USER_NET | unshare,
            maps: MapWrite::Own {
                uid: "0 1000 1\n".into(),
                gid: "0 1000 1\n".into(),
            },
            time_offsets: None,
        }),
        join: None,
        join_unshare: CloneFlags::empty(),
        fs,
        creds: creds(),
        pid1,
        relay: false,
        helper: None,
        holder_types: Vec::new(),
    }
}

fn creds() -> CredPlan {
    CredPlan {
        setgid: None,
        setuid: None,
        keep_caps: false,
        setgroups_allowed: false,
        kill_child: Signal::SIGKILL,
    }
}

/// Runs the child's path as process CHILD of LAUNCHER, the launcher answering `replies`, and
/// returns the error it stopped with (the fake's exec always fails).
fn run_child(k: &mut Recorder, cfg: &RunConfig, plan: &Plan) -> anyhow::Error {
    let (_launcher_end, ours) = Channel::pair().expect("socketpair");
    run(k, cfg, plan, ours, LAUNCHER, &SigSet::empty()).expect_err("the fake's exec fails")
}

fn child(replies: &[u8]) -> Recorder {
    Recorder {
        pid: CHILD,
        ppid: LAUNCHER,
        replies: replies.iter().copied().collect(),
        ..Default::default()
    }
}

/// Asserts that the path ended in exec of `program` (and not somewhere before).
fn assert_reached_exec(err: &anyhow::Error, program: &str) {
    let exec = err.downcast_ref::<ExecError>();
    assert_eq!(exec.map(|e| e.program.as_str()), Some(program), "{err:#}");
}

fn tie(sig: Signal) -> [Call; 2] {
    [Call::Pdeathsig(sig), Call::Getppid]
}

/// unshare and alice's own maps, then the tie again (unshare cleared it).
fn enter_calls(unshare: CloneFlags) -> Vec<Call> {
    let mut calls = vec![
        Call::Unshare(USER_NET | unshare),
        Call::Write(ProcFile::Setgroups, "deny".into()),
        Call::Write(ProcFile::UidMap, "0 1000 1\n".into()),
        Call::Write(ProcFile::GidMap, "0 1000 1\n".into()),
    ];
    calls.extend(tie(Signal::SIGKILL));
    calls
}

/// tap0 made, configured with the default addressing and handed over; then "go" read.
fn tap_calls(mtu: u32) -> Vec<Call> {
    vec![
        Call::OpenTap("tap0".into()),
        Call::ConfigureTap(TapConfig {
            name: "tap0".into(),
            mtu,
            addr: Addressing::default(),
            ipv6: true,
            mac: None,
            sandbox: netstack::netconf::SandboxAddrs::of(&Addressing::default()),
            veth: false,
        }),
        Call::PersistTap,
        Call::Send(tag::READY, 1),
        Call::Recv,
    ]
}

/// The monitor's set-up and its fork of the command.
fn monitor_calls() -> Vec<Call> {
    let mut calls = vec![Call::Block(monitor::DEATH_SIGNAL), Call::Subreaper];
    calls.extend(tie(monitor::DEATH_SIGNAL));
    calls.extend([Call::Getpid, Call::Fork]);
    calls
}

/// The command's last steps: the --kill-child tie (to `parent`, checked), mask, exec.
fn exec_calls() -> Vec<Call> {
    let mut calls = tie(Signal::SIGKILL).to_vec();
    calls.extend([Call::RestoreMask, Call::Exec(vec!["true".into()])]);
    calls
}

fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&'static str>,
    flags: MsFlags,
) -> Call {
    Call::Mount(Mount {
        source: source.map(PathBuf::from),
        target: target.into(),
        fstype,
        flags,
    })
}

fn private_root() -> Call {
    mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_PRIVATE | MsFlags::MS_REC,
    )
}

#[test]
fn plain_run_hands_over_tap0_then_monitors_the_command_it_forks() {
    let cfg = cfg(&["--keep-resolv-conf", "--mtu", "9000", "--", "true"]);
    let plan = new_sandbox(CloneFlags::empty(), FsPlan::default(), None);
    let mut k = child(&[tag::GO]);
    let err = run_child(&mut k, &cfg, &plan);
    assert_reached_exec(&err, "true");
    let mut want = tie(Signal::SIGKILL).to_vec();
    want.extend(enter_calls(CloneFlags::empty()));
    want.extend(tap_calls(9000));
    want.extend(monitor_calls());
    want.extend(exec_calls());
    assert_eq!(k.calls, want);
    // The command is the monitor's child: its tie was checked against the monitor.
    assert_eq!((k.pid, k.ppid), (CHILD + 1, CHILD));
}

/// The relay's set-up outside the pid namespace (a catchable death signal, no subreaper),
/// then the fork into it and the lifeline check of the process there.
fn relay_calls() -> Vec<Call> {
    let mut calls = vec![Call::Block(monitor::DEATH_SIGNAL)];
    calls.extend(tie(monitor::DEATH_SIGNAL));
    // Into the pid namespace: the relay stays outside, so the tie is the lifeline.
    calls.extend([
        Call::Fork,
        Call::Pdeathsig(Signal::SIGKILL),
        Call::LifelineCheck,
    ]);
    calls
}

/// `--pid --mount-proc`: the calls up to pid 1's mounts of proc and sysfs, included.
fn pid_namespace_calls(extra: CloneFlags) -> Vec<Call> {
    let mut want = tie(Signal::SIGKILL).to_vec();
    want.extend(enter_calls(extra));
    want.extend(tap_calls(netstack::config::DEFAULT_MTU));
    want.extend(relay_calls());
    want.extend([
        // pid 1: proc of the new namespace.
        private_root(),
        mount(Some("proc"), Path::new("/proc"), Some("proc"), FS_FLAGS),
        mount(Some("sysfs"), Path::new("/sys"), Some("sysfs"), FS_FLAGS),
    ]);
    want
}

fn mount_proc_fs() -> FsPlan {
    FsPlan {
        mount_ns: true,
        propagation: Some(Propagation::Private),
        mount_proc: Some("/proc".into()),
        ..Default::default()
    }
}

/// Runs `--keep-resolv-conf FLAG --mount-proc -- true` (FLAG a new pid namespace) to its exec;
/// returns the recorder and the calls expected up to pid 1's mounts.
fn run_in_pid_namespace(flag: &str) -> (Recorder, Vec<Call>) {
    let cfg = cfg(&["--keep-resolv-conf", flag, "--mount-proc", "--", "true"]);
    let extra = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID;
    let plan = new_sandbox(extra, mount_proc_fs(), PidOne::of(&cfg));
    let mut k = child(&[tag::GO]);
    let err = run_child(&mut k, &cfg, &plan);
    assert_reached_exec(&err, "true");
    (k, pid_namespace_calls(extra))
}

#[test]
fn pid_namespace_program_is_pid_1_and_execs_after_mounting_proc() {
    let (k, mut want) = run_in_pid_namespace("--pid");
    // The program's --kill-child tie: its parent, the relay, is outside (getppid() says 0).
    want.extend(exec_calls());
    assert_eq!(k.calls, want);
    assert_eq!((k.pid, k.ppid), (1, 0), "the program itself is pid 1");
}

#[test]
fn pid_namespace_with_init_forks_the_command_as_pid_2() {
    let (k, mut want) = run_in_pid_namespace("--init");
    want.extend([Call::Getpid, Call::Fork]);
    want.extend(exec_calls());
    assert_eq!(k.calls, want);
    assert_eq!((k.pid, k.ppid), (2, 1), "the command is the init's child");
}

#[test]
fn mount_proc_with_root_binds_proc_inside_the_new_root_before_pivot_root() {
    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path();
    let root_opt = format!("--root={}", r.display());
    let cfg = cfg(&[
        "--keep-resolv-conf",
        "--mount-proc",
        &root_opt,
        "--",
        "true",
    ]);
    let fs = FsPlan {
        mount_ns: true,
        propagation: Some(Propagation::Private),
        root: Some(r.into()),
        mount_proc: Some("/proc".into()),
        ..Default::default()
    };
    let plan = new_sandbox(CloneFlags::CLONE_NEWNS, fs, None);
    let mut k = child(&[tag::GO]);
    let err = run_child(&mut k, &cfg, &plan);
    assert_reached_exec(&err, "true");
    let rs = r.to_str().expect("utf-8 temp path");
    let mut want = tie(Signal::SIGKILL).to_vec();
    want.extend(enter_calls(CloneFlags::CLONE_NEWNS));
    want.extend(tap_calls(netstack::config::DEFAULT_MTU));
    want.extend(monitor_calls());
    want.extend([
        private_root(),
        mount(Some(rs), r, None, MsFlags::MS_BIND | MsFlags::MS_REC),
        mount(Some("proc"), &r.join("proc"), Some("proc"), FS_FLAGS),
        mount(Some("sysfs"), &r.join("sys"), Some("sysfs"), FS_FLAGS),
        Call::Chdir(r.into()),
        Call::PivotRoot(".".into(), ".".into()),
        Call::Umount(".".into()),
        Call::Chdir("/".into()),
    ]);
    want.extend(exec_calls());
    assert_eq!(k.calls, want);
}

#[test]
fn generated_resolv_conf_is_mounted_by_the_command_process_before_credentials() {
    let cfg = cfg(&["--", "true"]);
    let contents = crate::resolv::generate("", &cfg.net.addr, cfg.net.ipv6);
    let fs = FsPlan {
        // The mount namespace exists for the file alone: private, and no pivot_root.
        mount_ns: false,
        propagation: Some(Propagation::Private),
        resolv_conf: Some(ResolvMount {
            target: "/etc/resolv.conf".into(),
            staging: "/tmp".into(),
            staged: "/tmp/resolv.conf".into(),
            contents: contents.clone(),
        }),
        ..Default::default()
    };
    let plan = new_sandbox(CloneFlags::CLONE_NEWNS, fs, None);
    let mut k = child(&[tag::GO]);
    let err = run_child(&mut k, &cfg, &plan);
    assert_reached_exec(&err, "true");
    let mut want = tie(Signal::SIGKILL).to_vec();
    want.extend(enter_calls(CloneFlags::CLONE_NEWNS));
    want.extend(tap_calls(netstack::config::DEFAULT_MTU));
    want.extend(monitor_calls());
    let tmpfs = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    want.extend([
        private_root(),
        mount(Some("tmpfs"), Path::new("/tmp"), Some("tmpfs"), tmpfs),
        Call::WriteFile("/tmp/resolv.conf".into(), contents),
        mount(
            Some("/tmp/resolv.conf"),
            Path::new("/etc/resolv.conf"),
            None,
            MsFlags::MS_BIND,
        ),
        Call::Umount("/tmp".into()),
    ]);
    want.extend(exec_calls());
    assert_eq!(k.calls, want);
}

#[test]
fn join_enters_with_one_setns_then_relays_into_the_joined_pid_namespace() {
    let cfg = cfg(&["--join", "4242", "--", "true"]);
    let types = vec![
        JoinNsType::User,
        JoinNsType::Net,
        JoinNsType::Mount,
        JoinNsType::Pid,
    ];
    let plan = Plan {
        ns: None,
        join: Some(JoinPlan::Pid { pid: 4242, types }),
        join_unshare: CloneFlags::empty(),
        fs: FsPlan {
            mount_ns: true,
            ..Default::default()
        },
        creds: creds(),
        pid1: None,
        relay: true,
        helper: None,
        holder_types: Vec::new(),
    };
    let mut k = child(&[tag::GO]);
    let err = run_child(&mut k, &cfg, &plan);
    assert_reached_exec(&err, "true");
    let joined = USER_NET | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID;
    let mut want = tie(Signal::SIGKILL).to_vec();
    want.push(Call::SetnsPid(4242, joined));
    want.extend(tie(Signal::SIGKILL));
    want.extend([
        // No tap: the joined sandbox's network is not ours.
        Call::Send(tag::READY, 0),
        Call::Recv,
    ]);
    want.extend(relay_calls());
    // The command's parent (the relay) is outside its pid namespace: getppid() says 0.
    want.extend(exec_calls());
    assert_eq!(k.calls, want);
    assert_eq!(k.ppid, 0);
}

#[test]
fn join_unshares_the_new_namespaces_after_entering_and_before_ready() {
    let cfg = cfg(&["--join", "4242", "--mount", "--", "true"]);
    let plan = Plan {
        ns: None,
        join: Some(JoinPlan::Pid {
            pid: 4242,
            types: vec![JoinNsType::User, JoinNsType::Net],
        }),
        join_unshare: CloneFlags::CLONE_NEWNS,
        fs: FsPlan {
            mount_ns: true,
            propagation: Some(Propagation::Private),
            ..Default::default()
        },
        creds: creds(),
        pid1: None,
        relay: false,
        helper: None,
        holder_types: Vec::new(),
    };
    let mut k = child(&[tag::GO]);
    let err = run_child(&mut k, &cfg, &plan);
    assert_reached_exec(&err, "true");
    assert_eq!(
        k.calls[2..7],
        [
            Call::SetnsPid(4242, USER_NET),
            Call::Unshare(CloneFlags::CLONE_NEWNS),
            Call::Pdeathsig(Signal::SIGKILL),
            Call::Getppid,
            Call::Send(tag::READY, 0),
        ]
    );
}

#[test]
fn helper_maps_are_asked_for_over_the_channel_between_unshare_and_the_tie() {
    let cfg = cfg(&["--keep-resolv-conf", "--", "true"]);
    let mut plan = new_sandbox(CloneFlags::empty(), FsPlan::default(), None);
    if let Some(ns) = &mut plan.ns {
        ns.maps = MapWrite::Helper;
    }
    let mut k = child(&[tag::MAPS_DONE, tag::GO]);
    let err = run_child(&mut k, &cfg, &plan);
    assert_reached_exec(&err, "true");
    assert_eq!(
        k.calls[2..7],
        [
            Call::Unshare(USER_NET),
            Call::Send(tag::MAPS, 0),
            Call::Recv,
            Call::Pdeathsig(Signal::SIGKILL),
            Call::Getppid,
        ]
    );
}

#[test]
fn launcher_gone_before_go_stops_the_child_before_any_fork() {
    let cfg = cfg(&["--keep-resolv-conf", "--", "true"]);
    let plan = new_sandbox(CloneFlags::empty(), FsPlan::default(), None);
    // EOF instead of "go".
    let mut k = child(&[]);
    let err = run_child(&mut k, &cfg, &plan);
    assert!(err.is::<ParentGone>(), "{err:#}");
    assert_eq!(k.calls.last(), Some(&Call::Recv));
    assert!(!k.calls.contains(&Call::Fork));
}

#[test]
fn a_reply_other_than_maps_done_is_refused() {
    let cfg = cfg(&["--keep-resolv-conf", "--", "true"]);
    let mut plan = new_sandbox(CloneFlags::empty(), FsPlan::default(), None);
    if let Some(ns) = &mut plan.ns {
        ns.maps = MapWrite::Helper;
    }
    let mut k = child(&[tag::GO]);
    let err = run_child(&mut k, &cfg, &plan);
    assert_eq!(err.to_string(), "unexpected setup message 0x67");
    assert!(!k.calls.iter().any(|c| matches!(c, Call::OpenTap(_))));
}

#[test]
fn relay_gone_stops_the_pid_namespace_child_before_its_mounts() {
    let cfg = cfg(&["--keep-resolv-conf", "--pid", "--mount-proc", "--", "true"]);
    let fs = FsPlan {
        mount_ns: true,
        mount_proc: Some("/proc".into()),
        ..Default::default()
    };
    let plan = new_sandbox(
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID,
        fs,
        Some(PidOne::Program),
    );
    let mut k = child(&[tag::GO]);
    k.lifeline_cut = true;
    let err = run_child(&mut k, &cfg, &plan);
    assert!(err.is::<ParentGone>(), "{err:#}");
    assert_eq!(k.calls.last(), Some(&Call::LifelineCheck));
}

#[test]
fn detach_points_stdio_at_dev_null_only_after_go() {
    let cfg = cfg(&["--detach", "--keep-resolv-conf", "--", "true"]);
    let plan = new_sandbox(CloneFlags::empty(), FsPlan::default(), None);
    let mut k = child(&[tag::GO]);
    let err = run_child(&mut k, &cfg, &plan);
    assert_reached_exec(&err, "true");
    let go = k.calls.iter().position(|c| *c == Call::Recv);
    let devnull = k.calls.iter().position(|c| *c == Call::StdioToDevnull);
    assert_eq!(devnull, go.map(|i| i + 1), "{:?}", k.calls);
}

#[test]
fn kernel_mode_asks_for_the_veth_then_configures_eth0_with_the_lease_and_sends_no_fd() {
    let mut cfg = cfg(&["--keep-resolv-conf", "--", "true"]);
    cfg.net.kernel = true;
    let leased = netstack::netconf::SandboxAddrs {
        v4: "10.0.2.101".parse().expect("literal"),
        v6: "fd00::101".parse().expect("literal"),
    };
    cfg.net.leased = Some(leased);
    let plan = new_sandbox(CloneFlags::empty(), FsPlan::default(), None);
    let mut k = child(&[tag::VETH_DONE, tag::GO]);
    let err = run_child(&mut k, &cfg, &plan);
    assert_reached_exec(&err, "true");
    let mut want = tie(Signal::SIGKILL).to_vec();
    want.extend(enter_calls(CloneFlags::empty()));
    want.extend([
        Call::Send(tag::VETH, 0),
        Call::Recv,
        Call::ConfigureTap(TapConfig {
            name: "eth0".into(),
            mtu: netstack::config::DEFAULT_MTU,
            addr: Addressing::default(),
            ipv6: true,
            mac: None,
            sandbox: leased,
            veth: true,
        }),
        Call::Send(tag::READY, 0),
        Call::Recv,
    ]);
    want.extend(monitor_calls());
    want.extend(exec_calls());
    assert_eq!(k.calls, want);
}
