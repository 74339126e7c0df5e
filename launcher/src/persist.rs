//! Persisted sandboxes: the record directory (`--persist DIR`), namespace comparison for
//! `--join`, bind-mounting namespace files as real root, and `--stop DIR`.
//! Called by `launch` (record, bind, clean up), `holder` (clean up) and `main` (stop). The
//! holder process itself is forked by `holder`; this file only decides what it must enter and
//! where things are written.
//!
//! DIR holds `pid` (the holder: a process inside the sandbox's user, network, and any other new
//! namespaces except pid and time, for `nsenter -t PID -U -n --preserve-credentials` and
//! `rootless-run --join DIR`) and `launcher.pid` (the process serving the network, which
//! `--stop` signals). As real root the namespace files are also bind-mounted as DIR/user,
//! DIR/net, ..., as `unshare --net=FILE` does.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use nix::mount::MsFlags;
use nix::sys::signal::Signal;

use crate::config::{JoinNsType, NsFile};
use crate::kernel::{Kernel, Mount};
use crate::sys::pidfd::PidFd;

/// File in DIR naming the holder's pid.
pub const HOLDER_FILE: &str = "pid";
/// File in DIR naming the launcher's pid.
pub const LAUNCHER_FILE: &str = "launcher.pid";
/// File `--stop` creates in DIR before signalling, so the launcher knows the SIGTERM is a stop.
pub const STOP_FILE: &str = "stop";
/// How long `--stop` waits for the launcher to exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

fn ns_id(path: &Path) -> io::Result<(u64, u64)> {
    let m = fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// The namespace types in which process `pid` differs from us, in entering order.
pub fn differing_types(pid: i32) -> anyhow::Result<Vec<JoinNsType>> {
    let mut out = Vec::new();
    for t in JoinNsType::ORDER {
        let theirs = PathBuf::from(format!("/proc/{pid}/ns/{}", t.name()));
        let theirs = match ns_id(&theirs) {
            Ok(id) => id,
            // A kernel without this namespace type (e.g. time before 5.6).
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    && Path::new("/proc/self/ns").join(t.name()).exists() =>
            {
                bail!("process {pid} does not exist")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot inspect the namespaces of process {pid}"))
            }
        };
        let ours = ns_id(&Path::new("/proc/self/ns").join(t.name()))
            .with_context(|| format!("cannot inspect our {} namespace", t.name()))?;
        if theirs != ours {
            out.push(t);
        }
    }
    Ok(out)
}

fn read_pid(path: &Path) -> anyhow::Result<i32> {
    let s = fs::read_to_string(path)
        .with_context(|| format!("no sandbox recorded there ({} unreadable)", path.display()))?;
    s.trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
        .with_context(|| format!("{} does not hold a pid", path.display()))
}

/// The holder pid recorded in DIR (for `--join DIR`).
pub fn holder_pid(dir: &Path) -> anyhow::Result<i32> {
    read_pid(&dir.join(HOLDER_FILE))
}

/// A persisted record: what to remove when the launcher stops.
#[derive(Debug)]
pub struct Record {
    dir: PathBuf,
    created_dir: bool,
    mounted: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

impl Record {
    /// Creates DIR (0700) if needed and refuses one that a live launcher still uses.
    pub fn claim(dir: &Path) -> anyhow::Result<Record> {
        let created_dir = match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => false,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("--persist={}: cannot create it", dir.display()))
            }
        };
        if let Ok(pid) = read_pid(&dir.join(LAUNCHER_FILE)) {
            if Path::new(&format!("/proc/{pid}")).exists() {
                bail!(
                    "--persist={}: a sandbox is already recorded there (stop it: rootless-run --stop {})",
                    dir.display(),
                    dir.display()
                );
            }
        }
        Ok(Record {
            dir: dir.to_path_buf(),
            created_dir,
            mounted: Vec::new(),
            files: Vec::new(),
        })
    }

    /// Writes the holder's and the launcher's pids.
    pub fn write_pids(&mut self, holder: i32, launcher: i32) -> anyhow::Result<()> {
        for (name, pid) in [(HOLDER_FILE, holder), (LAUNCHER_FILE, launcher)] {
            let p = self.dir.join(name);
            fs::write(&p, format!("{pid}\n"))
                .with_context(|| format!("cannot write {}", p.display()))?;
            self.files.push(p);
        }
        Ok(())
    }

    /// Bind-mounts /proc/PID/ns/KIND onto each file (real root only), creating the files.
    pub fn bind_ns_files<K: Kernel>(
        &mut self,
        k: &mut K,
        pid: i32,
        files: &[NsFile],
    ) -> anyhow::Result<()> {
        for f in files {
            if create_missing(&f.path)? {
                self.files.push(f.path.clone());
            }
            bind_ns_file(k, pid, f)?;
            self.mounted.push(f.path.clone());
        }
        Ok(())
    }

    /// The DIR/KIND files for `types` (for real root's --persist).
    pub fn dir_ns_files(&self, types: &[JoinNsType]) -> Vec<NsFile> {
        types
            .iter()
            .map(|t| NsFile {
                kind: t.name(),
                path: self.dir.join(t.name()),
            })
            .collect()
    }

    /// Unmounts and removes what `claim`, `write_pids` and `bind_ns_files` made.
    pub fn remove<K: Kernel>(self, k: &mut K) {
        for m in &self.mounted {
            if let Err(e) = k.umount_detach(m) {
                tracing::warn!(path = %m.display(), error = %e, "cannot unmount namespace file");
            }
        }
        for f in self.files.iter().chain([&self.dir.join(STOP_FILE)]) {
            let _ = fs::remove_file(f);
        }
        if self.created_dir {
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

/// Bind-mounts /proc/PID/ns/KIND onto each of `files` (`--net=FILE` and friends, real root
/// only), creating them; nothing is recorded for removal: these files outlive the launcher.
pub fn bind_ns_files<K: Kernel>(k: &mut K, pid: i32, files: &[NsFile]) -> anyhow::Result<()> {
    for f in files {
        create_missing(&f.path)?;
        bind_ns_file(k, pid, f)?;
    }
    Ok(())
}

/// Creates an empty file at `path` unless something is there; says whether it did.
fn create_missing(path: &Path) -> anyhow::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(true)
}

/// Bind-mounts /proc/PID/ns/KIND onto `f.path`.
fn bind_ns_file<K: Kernel>(k: &mut K, pid: i32, f: &NsFile) -> anyhow::Result<()> {
    k.mount(&Mount {
        source: Some(PathBuf::from(format!("/proc/{pid}/ns/{}", f.kind))),
        target: f.path.clone(),
        fstype: None,
        flags: MsFlags::MS_BIND,
    })
    .with_context(|| {
        format!(
            "cannot bind the {} namespace to {}",
            f.kind,
            f.path.display()
        )
    })
}

/// `--stop DIR`: asks the launcher recorded in DIR to stop the sandbox (command included) and
/// waits for it; after `STOP_TIMEOUT` it is killed and the record removed here.
pub fn stop(dir: &Path) -> anyhow::Result<()> {
    let ctx = || format!("--stop={}", dir.display());
    let pid = read_pid(&dir.join(LAUNCHER_FILE)).with_context(ctx)?;
    let pidfd = PidFd::open(pid)
        .map_err(io::Error::from)
        .with_context(|| format!("the launcher (pid {pid}) is not running"))
        .with_context(ctx)?;
    // Guard against a recycled pid: the process must be a persisting launcher.
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !cmdline
        .split(|b| *b == 0)
        .any(|a| a.starts_with(b"--persist"))
    {
        bail!(
            "{}: pid {pid} is not a rootless-run --persist launcher (stale record?)",
            ctx()
        );
    }
    fs::write(dir.join(STOP_FILE), "")
        .with_context(|| format!("cannot write {}", dir.join(STOP_FILE).display()))
        .with_context(ctx)?;
    let signal = |sig| {
        pidfd
            .signal(sig)
            .map_err(io::Error::from)
            .with_context(|| format!("cannot signal pid {pid}"))
            .with_context(ctx)
    };
    signal(Signal::SIGTERM)?;
    let exited = pidfd
        .wait(STOP_TIMEOUT)
        .map_err(io::Error::from)
        .with_context(ctx)?;
    if !exited {
        tracing::warn!(pid, "launcher did not stop in time; killing it");
        signal(Signal::SIGKILL)?;
        pidfd
            .wait(STOP_TIMEOUT)
            .map_err(io::Error::from)
            .with_context(ctx)?;
        // It had no chance to clean up (its holder died with it): remove the record.
        for f in [HOLDER_FILE, LAUNCHER_FILE, STOP_FILE] {
            let _ = fs::remove_file(dir.join(f));
        }
        let _ = fs::remove_dir(dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fake::{Call, Recorder};

    /// An existing file and a missing one in `dir`, for the `net` and `user` namespaces.
    fn ns_files(dir: &Path) -> [NsFile; 2] {
        let existing = dir.join("net");
        fs::write(&existing, "").expect("write");
        [
            NsFile {
                kind: "net",
                path: existing,
            },
            NsFile {
                kind: "user",
                path: dir.join("user"),
            },
        ]
    }

    fn bind(kind: &str, target: &Path) -> Call {
        Call::Mount(Mount {
            source: Some(format!("/proc/7/ns/{kind}").into()),
            target: target.into(),
            fstype: None,
            flags: MsFlags::MS_BIND,
        })
    }

    #[test]
    fn ns_files_are_created_if_missing_then_bound_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ns_files(dir.path());
        let mut k = Recorder::default();
        bind_ns_files(&mut k, 7, &files).expect("ok");
        assert!(files[1].path.is_file(), "the missing file is created");
        assert_eq!(
            k.calls,
            [bind("net", &files[0].path), bind("user", &files[1].path)]
        );
    }

    #[test]
    fn record_unbinds_every_file_and_removes_only_the_ones_it_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ns_files(dir.path());
        let mut rec = Record::claim(&dir.path().join("rec")).expect("claim");
        let mut k = Recorder::default();
        rec.bind_ns_files(&mut k, 7, &files).expect("ok");
        assert_eq!(
            k.calls,
            [bind("net", &files[0].path), bind("user", &files[1].path)]
        );
        let mut k = Recorder::default();
        rec.remove(&mut k);
        assert_eq!(
            k.calls,
            [
                Call::Umount(files[0].path.clone()),
                Call::Umount(files[1].path.clone())
            ]
        );
        assert!(files[0].path.is_file(), "a file that was there stays");
        assert!(!files[1].path.exists(), "the file it created goes");
        assert!(
            !dir.path().join("rec").exists(),
            "the directory it created goes"
        );
    }
}
