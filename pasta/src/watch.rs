//! When the stack stops by itself: the `--netns` file is removed (podman unmounts and deletes
//! it on teardown and never signals the helper), or the target process of a PID target is
//! gone. As pasta: an inotify watch on the file's directory wakes us at once (IN_DELETE,
//! IN_MOVED_FROM); a 1 s timer covers files inotify cannot see (/proc/PID/ns/net). Then the
//! stop pipe is written, and the stack drains and returns.
//! Called by `run` after the stack is built; one thread, nothing else shared.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// How often the file is checked when no inotify event comes (pasta: 1 s).
const RECHECK: Duration = Duration::from_secs(1);

/// Starts the thread that writes `stop` once `path` no longer exists.
pub fn netns_gone(path: PathBuf, stop: OwnedFd) -> std::io::Result<()> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).ok();
    if let (Some(i), Some(dir)) = (&inotify, path.parent()) {
        if let Err(error) =
            i.add_watch(dir, AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM)
        {
            tracing::debug!(%error, dir = %dir.display(), "no inotify watch; checking every second");
        }
    }
    std::thread::Builder::new()
        .name("netns-watch".into())
        .spawn(move || {
            wait_gone(&path, inotify.as_ref());
            tracing::info!(netns = %path.display(), "target namespace gone; stopping");
            let _ = nix::unistd::write(&stop, b"q");
        })
        .map(drop)
}

fn wait_gone(path: &Path, inotify: Option<&Inotify>) {
    let timeout = PollTimeout::try_from(RECHECK).unwrap_or(PollTimeout::MAX);
    while path.exists() {
        match inotify {
            Some(i) => {
                let mut fds = [PollFd::new(i.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, timeout);
                // Drain; which entry it was does not matter, the check above decides.
                let _ = i.read_events();
            }
            None => std::thread::sleep(RECHECK),
        }
    }
}
