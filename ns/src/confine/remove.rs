//! `remove_on_exit`: removes files (the API socket) once this process has ended, from a tiny
//! process forked before confinement, because the confined process can no longer reach them:
//! after `sandbox` the host's filesystem is detached, and under `seccomp` path calls fail.
//! Called once by the binaries, after binding the API socket and before `sandbox`/`seccomp`.
//!
//! Why a process, and not a directory fd kept across pivot_root (or /proc/self/fd): the
//! confined process would then hold a way back into the host's filesystem: `unlinkat(dirfd,
//! "../../home/...")` reaches any file of the user's, and no seccomp rule can read the path.
//! The remover holds no such handle for the helper; it takes no input but an EOF, and it
//! removes a path only if it still names the same file (device and inode) as when registered,
//! so a socket that someone replaced meanwhile stays. It also removes the file when the helper
//! is killed (SIGKILL included), which slirp4netns does not: it ignores terminal and group
//! signals (SIGINT, SIGTERM, SIGHUP...) and runs in a session of its own, so a group kill of the
//! helper does not end it first. It acts when every copy of the pipe's write end is closed:
//! a child the helper forks later and that does not exec delays it until that child exits too.

use std::ffi::CString;
use std::os::fd::IntoRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::Pid;

use super::ConfineError;
use crate::sys::remover::{self, Target};

/// Forks a process that unlinks each of `paths` once this process has exited, however it exits,
/// if the path then still names the same file as now. The files must exist. Relative paths
/// resolve against the current directory (the remover keeps it). Safe to call with threads
/// running; the remover closes every fd it inherited but its own. Returns the remover's pid,
/// for logs: it outlives this process, so there is nothing to wait for.
pub fn remove_on_exit(paths: &[&Path]) -> Result<Pid, ConfineError> {
    let mut targets = Vec::with_capacity(paths.len());
    for path in paths {
        let meta =
            std::fs::symlink_metadata(path).map_err(|source| ConfineError::StatRemovable {
                path: path.to_path_buf(),
                source,
            })?;
        let c_path =
            CString::new(path.as_os_str().as_bytes()).map_err(|_| ConfineError::NulInPath {
                path: path.to_path_buf(),
            })?;
        targets.push(Target {
            path: c_path,
            dev: meta.dev(),
            ino: meta.ino(),
        });
    }
    let (pid, write_end) =
        remover::spawn(&targets).map_err(|source| ConfineError::SpawnRemover { source })?;
    // Deliberately never closed: the kernel closes it when this process ends, and that EOF is
    // the remover's signal. Close-on-exec, so no program started later holds it.
    let _ = write_end.into_raw_fd();
    tracing::debug!(%pid, files = paths.len(), "remover started");
    Ok(pid)
}
