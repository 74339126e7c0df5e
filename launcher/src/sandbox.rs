//! The order of the child's namespace and credential steps, written against `Kernel` so tests
//! can check it: entering namespaces (unshare or join) with the id maps, and switching
//! credentials before exec. The filesystem view in between is `fsview`'s.
//! Called by `child` in the forked child, `exec` before exec and `holder`. Does not fork, exec,
//! pass fds or touch the network; those are `child`'s, `pidns`'s and `monitor`'s. Keep each phase a short, linear function.

use std::path::PathBuf;

use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;

use crate::config::JoinNsType;
use crate::idmap::Setgroups;
use crate::kernel::{Kernel, KernelError, ProcFile};

/// The launcher is gone: the child exits quietly (nobody is there to read a message).
#[derive(Debug, thiserror::Error)]
#[error("the launcher exited during setup")]
pub struct ParentGone;

/// How the id maps get written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapWrite {
    /// By the child itself: the one-line maps of an unprivileged user.
    Own {
        /// uid_map text.
        uid: String,
        /// gid_map text.
        gid: String,
    },
    /// By the parent through newuidmap/newgidmap; the closure asks for it and waits.
    Helper,
}

/// Namespace creation for a new sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsPlan {
    /// Flags for unshare(2): USER|NET plus the extras.
    pub unshare: CloneFlags,
    /// How the maps are written.
    pub maps: MapWrite,
    /// /proc/self/timens_offsets text, if any.
    pub time_offsets: Option<String>,
}

/// How to enter an existing sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinPlan {
    /// setns on a pidfd of `pid` with all `types` at once, falling back to its /proc files.
    Pid {
        /// Target process.
        pid: i32,
        /// Namespace types that differ from ours, in entering order.
        types: Vec<JoinNsType>,
    },
    /// setns on each file, in the given (already sorted) order.
    Files(Vec<(JoinNsType, PathBuf)>),
}

/// Credentials just before exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredPlan {
    /// -G
    pub setgid: Option<u32>,
    /// -S
    pub setuid: Option<u32>,
    /// --keep-caps
    pub keep_caps: bool,
    /// setgroups(2) is allowed in the namespace (so clearing groups must succeed).
    pub setgroups_allowed: bool,
    /// --kill-child signal.
    pub kill_child: Signal,
}

/// Sets the parent-death signal and checks that the parent did not die before it took effect
/// (the race after fork, or a credential change that cleared it).
pub fn tie_to_parent<K: Kernel>(k: &mut K, sig: Signal, parent: i32) -> anyhow::Result<()> {
    k.set_pdeathsig(sig)?;
    if k.parent_pid() != parent {
        return Err(ParentGone.into());
    }
    Ok(())
}

/// Explains an unshare(CLONE_NEWUSER|...) failure with the sysctl that governs it.
pub fn unshare_error(e: KernelError) -> anyhow::Error {
    let advice = match e.errno {
        Errno::EPERM => {
            "user namespaces are not permitted for this user (enable them: \
             sysctl kernel.unprivileged_userns_clone=1 on Debian kernels, \
             sysctl kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu; \
             check sysctl user.max_user_namespaces)"
        }
        Errno::ENOSPC | Errno::EUSERS => {
            "the user namespace limit is reached (raise it: sysctl user.max_user_namespaces=15000)"
        }
        Errno::EINVAL => "this kernel does not support one of the requested namespace types",
        _ => "cannot create the namespaces",
    };
    anyhow::Error::new(e).context(advice)
}

/// unshare + id maps + parent tie + time offsets, in that order. `helper` asks the parent to
/// run newuidmap/newgidmap and returns once it has.
pub fn enter<K: Kernel>(
    k: &mut K,
    plan: &NsPlan,
    parent: i32,
    helper: &mut dyn FnMut(&mut K) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    k.unshare(plan.unshare).map_err(unshare_error)?;
    match &plan.maps {
        MapWrite::Own { uid, gid } => {
            // An unprivileged process may write its gid_map only after denying setgroups.
            k.write_proc(ProcFile::Setgroups, Setgroups::Deny.as_str())
                .context("cannot deny setgroups in the new user namespace")?;
            k.write_proc(ProcFile::UidMap, uid)
                .context("cannot write the uid map")?;
            k.write_proc(ProcFile::GidMap, gid)
                .context("cannot write the gid map")?;
        }
        MapWrite::Helper => helper(k)?,
    }
    // unshare(CLONE_NEWUSER) changes our credentials, which may clear the death signal.
    tie_to_parent(k, Signal::SIGKILL, parent)?;
    if let Some(t) = &plan.time_offsets {
        k.write_proc(ProcFile::TimensOffsets, t)
            .context("cannot set the time namespace offsets")?;
    }
    Ok(())
}

/// The /proc/self/timens_offsets text for the given offsets.
pub fn time_offsets(monotonic: Option<i64>, boottime: Option<i64>) -> Option<String> {
    if monotonic.is_none() && boottime.is_none() {
        return None;
    }
    let mut s = String::new();
    for (name, v) in [("monotonic", monotonic), ("boottime", boottime)] {
        if let Some(v) = v {
            s.push_str(&format!("{name} {v} 0\n"));
        }
    }
    Some(s)
}

/// Enters an existing sandbox's namespaces, user namespace first.
pub fn join<K: Kernel>(k: &mut K, plan: &JoinPlan) -> anyhow::Result<()> {
    match plan {
        JoinPlan::Pid { pid, types } => {
            if types.is_empty() {
                bail!("process {pid} shares all namespaces with us; nothing to join");
            }
            let flags = types.iter().fold(CloneFlags::empty(), |f, t| f | t.flag());
            match k.setns_pid(*pid, flags) {
                Ok(()) => Ok(()),
                // Before Linux 5.8 setns takes no pidfd: enter /proc/PID/ns/* one by one.
                Err(e) if e.errno == Errno::EINVAL || e.errno == Errno::ENOSYS => {
                    for t in types {
                        let path = PathBuf::from(format!("/proc/{pid}/ns/{}", t.name()));
                        k.setns_file(&path, t.flag())
                            .with_context(|| format!("cannot enter {} namespace", t.name()))?;
                    }
                    Ok(())
                }
                Err(e) => Err(anyhow::Error::new(e)
                    .context(format!("cannot enter the namespaces of process {pid}"))),
            }
        }
        JoinPlan::Files(files) => {
            for (t, path) in files {
                k.setns_file(path, t.flag()).with_context(|| {
                    format!("cannot enter {} namespace {}", t.name(), path.display())
                })?;
            }
            Ok(())
        }
    }
}

/// Names the likely cause of EINVAL from setuid/setgid: the id has no mapping.
fn unmapped(e: KernelError, flag: &str, id: u32, map_flag: &str) -> anyhow::Error {
    let why = if e.errno == Errno::EINVAL {
        format!("{flag}={id}: {id} is not mapped in the sandbox (add {map_flag} or --map-auto)")
    } else {
        format!("{flag}={id}")
    };
    anyhow::Error::new(e).context(why)
}

/// setgid, setuid and capabilities, then the final death signal; `parent` is checked again
/// because a uid change clears the death signal.
pub fn set_credentials<K: Kernel>(k: &mut K, p: &CredPlan, parent: i32) -> anyhow::Result<()> {
    if let Some(gid) = p.setgid {
        // Dropping supplementary groups fails where setgroups is denied; there the only group
        // is the mapped one anyway (util-linux unshare does the same).
        if let Err(e) = k.clear_groups() {
            if p.setgroups_allowed {
                return Err(anyhow::Error::new(e).context("--setgid"));
            }
        }
        k.setgid(gid)
            .map_err(|e| unmapped(e, "--setgid", gid, "--map-groups"))?;
    }
    if let Some(uid) = p.setuid {
        if p.keep_caps {
            k.keep_caps().context("--keep-caps")?;
        }
        k.setuid(uid)
            .map_err(|e| unmapped(e, "--setuid", uid, "--map-users"))?;
    }
    if p.keep_caps {
        k.keep_caps().context("--keep-caps")?;
    }
    tie_to_parent(k, p.kill_child, parent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fake::{Call, Recorder};

    fn own_maps() -> NsPlan {
        NsPlan {
            unshare: CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET,
            maps: MapWrite::Own {
                uid: "0 1000 1\n".into(),
                gid: "0 1000 1\n".into(),
            },
            time_offsets: None,
        }
    }

    #[test]
    fn setgroups_denied_before_gid_map_and_death_signal_after_unshare() {
        let mut k = Recorder::with_ppid(42);
        enter(&mut k, &own_maps(), 42, &mut |_| panic!("no helper")).expect("ok");
        assert_eq!(
            k.calls,
            [
                Call::Unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET),
                Call::Write(ProcFile::Setgroups, "deny".into()),
                Call::Write(ProcFile::UidMap, "0 1000 1\n".into()),
                Call::Write(ProcFile::GidMap, "0 1000 1\n".into()),
                Call::Pdeathsig(Signal::SIGKILL),
                Call::Getppid,
            ]
        );
    }

    #[test]
    fn helper_maps_come_between_unshare_and_time_offsets() {
        let mut k = Recorder::with_ppid(42);
        let mut plan = own_maps();
        plan.maps = MapWrite::Helper;
        plan.time_offsets = time_offsets(Some(-5), Some(7));
        let mut asked = 0;
        enter(&mut k, &plan, 42, &mut |_| {
            asked += 1;
            Ok(())
        })
        .expect("ok");
        assert_eq!(asked, 1);
        assert_eq!(
            k.calls[1..],
            [
                Call::Pdeathsig(Signal::SIGKILL),
                Call::Getppid,
                Call::Write(
                    ProcFile::TimensOffsets,
                    "monotonic -5 0\nboottime 7 0\n".into()
                ),
            ]
        );
    }

    #[test]
    fn parent_gone_after_unshare_stops_setup() {
        let mut k = Recorder::with_ppid(1);
        let err = enter(&mut k, &own_maps(), 42, &mut |_| Ok(())).expect_err("parent died");
        assert!(err.is::<ParentGone>());
    }

    #[test]
    fn unshare_eperm_names_the_sysctls() {
        let mut k = Recorder::with_ppid(42);
        k.fail_unshare = Some(Errno::EPERM);
        let err = enter(&mut k, &own_maps(), 42, &mut |_| Ok(())).expect_err("eperm");
        let msg = format!("{err:#}");
        assert!(msg.contains("kernel.unprivileged_userns_clone"), "{msg}");
        assert!(
            msg.contains("kernel.apparmor_restrict_unprivileged_userns"),
            "{msg}"
        );
        assert!(msg.contains("user.max_user_namespaces"), "{msg}");
        assert_eq!(k.calls.len(), 1, "nothing after a failed unshare");
        k.fail_unshare = Some(Errno::ENOSPC);
        let msg = format!(
            "{:#}",
            enter(&mut k, &own_maps(), 42, &mut |_| Ok(())).unwrap_err()
        );
        assert!(msg.contains("sysctl user.max_user_namespaces="), "{msg}");
    }

    #[test]
    fn credentials_gid_before_uid_caps_around_setuid_then_kill_child_signal() {
        let mut k = Recorder::with_ppid(7);
        k.fail_clear_groups = Some(Errno::EPERM);
        let p = CredPlan {
            setgid: Some(100),
            setuid: Some(1000),
            keep_caps: true,
            setgroups_allowed: false,
            kill_child: Signal::SIGTERM,
        };
        set_credentials(&mut k, &p, 7).expect("setgroups denied is tolerated");
        assert_eq!(
            k.calls,
            [
                Call::ClearGroups,
                Call::Setgid(100),
                Call::KeepCaps,
                Call::Setuid(1000),
                Call::KeepCaps,
                Call::Pdeathsig(Signal::SIGTERM),
                Call::Getppid,
            ]
        );
        let mut k = Recorder::with_ppid(7);
        k.fail_clear_groups = Some(Errno::EPERM);
        let p = CredPlan {
            setgroups_allowed: true,
            ..p
        };
        assert!(set_credentials(&mut k, &p, 7).is_err());
    }

    #[test]
    fn join_by_pid_uses_one_setns_and_falls_back_to_files_in_order() {
        let mut k = Recorder::default();
        let plan = JoinPlan::Pid {
            pid: 99,
            types: vec![JoinNsType::User, JoinNsType::Net],
        };
        join(&mut k, &plan).expect("ok");
        assert_eq!(
            k.calls,
            [Call::SetnsPid(
                99,
                CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET
            )]
        );
        // Before Linux 5.8 setns() takes no pidfd: the /proc files, user namespace first.
        let mut k = Recorder {
            fail_setns_pid: Some(Errno::EINVAL),
            ..Default::default()
        };
        let plan = JoinPlan::Pid {
            pid: 99,
            types: vec![JoinNsType::User, JoinNsType::Net, JoinNsType::Mount],
        };
        join(&mut k, &plan).expect("fallback works");
        assert_eq!(
            k.calls[1..],
            [
                Call::SetnsFile("/proc/99/ns/user".into(), CloneFlags::CLONE_NEWUSER),
                Call::SetnsFile("/proc/99/ns/net".into(), CloneFlags::CLONE_NEWNET),
                Call::SetnsFile("/proc/99/ns/mnt".into(), CloneFlags::CLONE_NEWNS),
            ]
        );
        k.fail_setns_pid = Some(Errno::EPERM);
        assert!(join(&mut k, &plan).is_err(), "EPERM is not papered over");
        let mut k = Recorder::default();
        let plan = JoinPlan::Files(vec![
            (JoinNsType::User, "/a/user".into()),
            (JoinNsType::Mount, "/a/mnt".into()),
        ]);
        join(&mut k, &plan).expect("ok");
        assert_eq!(
            k.calls,
            [
                Call::SetnsFile("/a/user".into(), CloneFlags::CLONE_NEWUSER),
                Call::SetnsFile("/a/mnt".into(), CloneFlags::CLONE_NEWNS),
            ]
        );
    }
}
