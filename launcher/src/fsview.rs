//! The filesystem view the command starts in, written against `Kernel` so tests can check the
//! order: propagation of /, hostname, the generated /etc/resolv.conf, the new root
//! (pivot_root or chroot), proc, working directory.
//! Called by `pidns` and `monitor` in the process that execs the command (or the pid-1 init),
//! after the namespaces exist (`sandbox`) and before credentials change. Decides nothing:
//! `plan` and `resolv` did. Keep it one linear function plus one helper per kind of mount.

use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::mount::MsFlags;

use crate::config::Propagation;
use crate::kernel::{Kernel, Mount};

/// The filesystem view before exec.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FsPlan {
    /// The user asked for a mount namespace (new or joined): `--root` pivots into the new root
    /// there; without one it uses chroot (even in the mount namespace created for
    /// `resolv_conf`).
    pub mount_ns: bool,
    /// Propagation to apply to / (only in a mount namespace of our own).
    pub propagation: Option<Propagation>,
    /// Hostname to set.
    pub hostname: Option<String>,
    /// The generated /etc/resolv.conf to mount (only in a mount namespace of our own).
    pub resolv_conf: Option<ResolvMount>,
    /// New root.
    pub root: Option<PathBuf>,
    /// Where to mount proc.
    pub mount_proc: Option<PathBuf>,
    /// Working directory.
    pub wd: Option<PathBuf>,
}

/// The generated resolv.conf and where it goes (decided by `resolv::mount_plan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvMount {
    /// The file to cover: what /etc/resolv.conf resolves to inside the sandbox's root, as a
    /// path in the launcher's view (below `--root`, if any).
    pub target: PathBuf,
    /// A directory that a scratch tmpfs covers while the file is mounted (not above
    /// `target`).
    pub staging: PathBuf,
    /// Where the file is written in that tmpfs.
    pub staged: PathBuf,
    /// The file's text.
    pub contents: String,
}

fn propagation_flags(p: Propagation) -> Option<MsFlags> {
    match p {
        Propagation::Private => Some(MsFlags::MS_PRIVATE),
        Propagation::Shared => Some(MsFlags::MS_SHARED),
        Propagation::Slave => Some(MsFlags::MS_SLAVE),
        Propagation::Unchanged => None,
    }
}

/// Propagation, hostname, resolv.conf, root, proc, working directory: in that order, so the
/// resolv.conf mount is private before it is made and lands in the new root before
/// pivot_root or chroot, proc is mounted inside the new root and the working directory is
/// looked up there.
pub fn prepare_fs<K: Kernel>(k: &mut K, p: &FsPlan) -> anyhow::Result<()> {
    if let Some(flags) = p.propagation.and_then(propagation_flags) {
        k.mount(&Mount {
            source: None,
            target: "/".into(),
            fstype: None,
            flags: flags | MsFlags::MS_REC,
        })
        .context("cannot set mount propagation of /")?;
    }
    if let Some(h) = &p.hostname {
        k.sethostname(h).context("cannot set the hostname")?;
    }
    if let Some(r) = &p.resolv_conf {
        mount_resolv_conf(k, r)?;
    }
    match &p.root {
        Some(root) if p.mount_ns => {
            // pivot_root needs the new root to be a mount point; a recursive bind makes it one
            // and keeps the submounts. Stacking the old root on "." and detaching it leaves
            // nothing of the host's tree reachable (unlike chroot).
            k.mount(&Mount {
                source: Some(root.clone()),
                target: root.clone(),
                fstype: None,
                flags: MsFlags::MS_BIND | MsFlags::MS_REC,
            })
            .context("--root: cannot bind the new root onto itself")?;
            // In a user namespace the kernel lets us mount proc only while a fully visible
            // proc is in our mount namespace, so mount it inside the new root before the
            // old root (and its /proc) is detached.
            if let Some(dir) = &p.mount_proc {
                mount_proc(k, root, dir)?;
            }
            k.chdir(root).context("--root")?;
            k.pivot_root(Path::new("."), Path::new("."))
                .context("--root: pivot_root")?;
            k.umount_detach(Path::new("."))
                .context("--root: cannot detach the old root")?;
            if p.wd.is_none() {
                k.chdir(Path::new("/")).context("--root")?;
            }
        }
        Some(root) => {
            k.chroot(root).context("--root")?;
            if p.wd.is_none() {
                k.chdir(Path::new("/")).context("--root")?;
            }
            if let Some(dir) = &p.mount_proc {
                mount_proc(k, Path::new("/"), dir)?;
            }
        }
        None => {
            if let Some(dir) = &p.mount_proc {
                mount_proc(k, Path::new("/"), dir)?;
            }
        }
    }
    if let Some(wd) = &p.wd {
        k.chdir(wd)
            .with_context(|| format!("--wd={}", wd.display()))?;
    }
    Ok(())
}

/// Bind-mounts the generated resolv.conf over `r.target`. The file is written into a scratch
/// tmpfs mounted on `r.staging` for the moment, which is detached once the bind exists: the
/// bind keeps the file, nothing is written to a host filesystem, and nothing is left to
/// remove (the tmpfs goes with the sandbox's mount namespace).
fn mount_resolv_conf<K: Kernel>(k: &mut K, r: &ResolvMount) -> anyhow::Result<()> {
    let what = || {
        format!(
            "cannot mount the generated resolv.conf on {} (--keep-resolv-conf keeps the host's)",
            r.target.display()
        )
    };
    k.mount(&Mount {
        source: Some("tmpfs".into()),
        target: r.staging.clone(),
        fstype: Some("tmpfs"),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
    })
    .with_context(what)?;
    k.write_file(&r.staged, &r.contents).with_context(what)?;
    k.mount(&Mount {
        source: Some(r.staged.clone()),
        target: r.target.clone(),
        fstype: None,
        flags: MsFlags::MS_BIND,
    })
    .with_context(what)?;
    k.umount_detach(&r.staging).with_context(what)
}

/// Mounts a fresh proc at `dir` below `root` (and sysfs at `root`/sys when `dir` is /proc).
fn mount_proc<K: Kernel>(k: &mut K, root: &Path, dir: &Path) -> anyhow::Result<()> {
    let under = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let fs_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    k.mount(&Mount {
        source: Some("proc".into()),
        target: under(dir),
        fstype: Some("proc"),
        flags: fs_flags,
    })
    .with_context(|| format!("--mount-proc: cannot mount proc on {}", dir.display()))?;
    if dir == Path::new("/proc") {
        // A fresh sysfs shows this network namespace's devices; the kernel allows it only to
        // the owner of the network namespace (not when joining one), so failure is logged.
        if let Err(e) = k.mount(&Mount {
            source: Some("sysfs".into()),
            target: under(Path::new("/sys")),
            fstype: Some("sysfs"),
            flags: fs_flags,
        }) {
            tracing::debug!(error = %e, "sysfs not mounted");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fake::{Call, Recorder};

    fn resolv(target: &str, staging: &str) -> ResolvMount {
        ResolvMount {
            target: target.into(),
            staging: staging.into(),
            staged: PathBuf::from(staging).join("resolv.conf"),
            contents: "nameserver 10.0.2.3\n".into(),
        }
    }

    /// The four calls that put the generated resolv.conf on `target`.
    fn resolv_calls(target: &str, staging: &str) -> Vec<Call> {
        let staged = PathBuf::from(staging).join("resolv.conf");
        vec![
            Call::Mount(Mount {
                source: Some("tmpfs".into()),
                target: staging.into(),
                fstype: Some("tmpfs"),
                flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            }),
            Call::WriteFile(staged.clone(), "nameserver 10.0.2.3\n".into()),
            Call::Mount(Mount {
                source: Some(staged),
                target: target.into(),
                fstype: None,
                flags: MsFlags::MS_BIND,
            }),
            Call::Umount(staging.into()),
        ]
    }

    #[test]
    fn proc_mounted_inside_new_root_before_pivot_then_wd() {
        let mut k = Recorder::default();
        let p = FsPlan {
            mount_ns: true,
            propagation: Some(Propagation::Private),
            hostname: Some("box".into()),
            root: Some("/srv/root".into()),
            mount_proc: Some("/proc".into()),
            wd: Some("/work".into()),
            resolv_conf: None,
        };
        prepare_fs(&mut k, &p).expect("ok");
        let proc_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        assert_eq!(
            k.calls,
            [
                Call::Mount(Mount {
                    source: None,
                    target: "/".into(),
                    fstype: None,
                    flags: MsFlags::MS_PRIVATE | MsFlags::MS_REC
                }),
                Call::Hostname("box".into()),
                Call::Mount(Mount {
                    source: Some("/srv/root".into()),
                    target: "/srv/root".into(),
                    fstype: None,
                    flags: MsFlags::MS_BIND | MsFlags::MS_REC
                }),
                Call::Mount(Mount {
                    source: Some("proc".into()),
                    target: "/srv/root/proc".into(),
                    fstype: Some("proc"),
                    flags: proc_flags
                }),
                Call::Mount(Mount {
                    source: Some("sysfs".into()),
                    target: "/srv/root/sys".into(),
                    fstype: Some("sysfs"),
                    flags: proc_flags
                }),
                Call::Chdir("/srv/root".into()),
                Call::PivotRoot(".".into(), ".".into()),
                Call::Umount(".".into()),
                Call::Chdir("/work".into()),
            ]
        );
    }

    #[test]
    fn root_without_mount_namespace_uses_chroot_and_unchanged_propagation_mounts_nothing() {
        let mut k = Recorder::default();
        let p = FsPlan {
            mount_ns: false,
            root: Some("/srv/root".into()),
            ..Default::default()
        };
        prepare_fs(&mut k, &p).expect("ok");
        assert_eq!(
            k.calls,
            [Call::Chroot("/srv/root".into()), Call::Chdir("/".into())]
        );
        let mut k = Recorder::default();
        let p = FsPlan {
            mount_ns: true,
            propagation: Some(Propagation::Unchanged),
            ..Default::default()
        };
        prepare_fs(&mut k, &p).expect("ok");
        assert!(k.calls.is_empty());
    }

    #[test]
    fn resolv_conf_is_staged_bound_and_unstaged_after_propagation_is_private() {
        let mut k = Recorder::default();
        let p = FsPlan {
            propagation: Some(Propagation::Private),
            resolv_conf: Some(resolv("/run/systemd/resolve/stub-resolv.conf", "/tmp")),
            ..Default::default()
        };
        prepare_fs(&mut k, &p).expect("ok");
        let mut want = vec![Call::Mount(Mount {
            source: None,
            target: "/".into(),
            fstype: None,
            flags: MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        })];
        want.extend(resolv_calls(
            "/run/systemd/resolve/stub-resolv.conf",
            "/tmp",
        ));
        assert_eq!(k.calls, want);
    }

    #[test]
    fn resolv_conf_lands_in_the_new_root_before_pivot_root_or_chroot() {
        let mut k = Recorder::default();
        let p = FsPlan {
            mount_ns: true,
            root: Some("/srv/root".into()),
            resolv_conf: Some(resolv("/srv/root/etc/resolv.conf", "/tmp")),
            ..Default::default()
        };
        prepare_fs(&mut k, &p).expect("ok");
        let mut want = resolv_calls("/srv/root/etc/resolv.conf", "/tmp");
        want.extend([
            Call::Mount(Mount {
                source: Some("/srv/root".into()),
                target: "/srv/root".into(),
                fstype: None,
                flags: MsFlags::MS_BIND | MsFlags::MS_REC,
            }),
            Call::Chdir("/srv/root".into()),
            Call::PivotRoot(".".into(), ".".into()),
            Call::Umount(".".into()),
            Call::Chdir("/".into()),
        ]);
        assert_eq!(k.calls, want);
        // A root under /tmp is staged elsewhere (resolv::mount_plan chose /dev), and without
        // a mount namespace asked for, --root stays a chroot.
        let mut k = Recorder::default();
        let p = FsPlan {
            root: Some("/tmp/r".into()),
            resolv_conf: Some(resolv("/tmp/r/etc/resolv.conf", "/dev")),
            ..Default::default()
        };
        prepare_fs(&mut k, &p).expect("ok");
        let mut want = resolv_calls("/tmp/r/etc/resolv.conf", "/dev");
        want.extend([Call::Chroot("/tmp/r".into()), Call::Chdir("/".into())]);
        assert_eq!(k.calls, want);
    }
}
