//! podman 4 (Debian 12's) run rootless as the test user with everything of its own under the
//! harness's temp dir: HOME, XDG_RUNTIME_DIR, vfs storage, and a containers.conf whose
//! `network_cmd_path` is the slirp4netns under test. The image is built here from files on
//! the machine (busybox-static, a page and a CGI script) and loaded with `podman import`:
//! nothing is pulled from a registry. Dropping `Podman` removes what a failed test left
//! running: containers (`podman rm -f --all`), processes whose command line names its
//! directory, and podman's rootless pause process (by the pid it recorded).
//! Called by `tests/tests/dropin_podman.rs`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::api_client::user_dir;
use crate::child::{run, Outcome};
use crate::dropin::{require_tools, Slirp4netns};
use crate::procs;
use crate::sandbox::{argv, as_user_argv_env, command, Harness, User};

/// podman from Debian 12's `podman` package (4.3).
pub const PODMAN: &str = "/usr/bin/podman";
/// The OCI runtime podman is told to use.
pub const RUNC: &str = "/usr/sbin/runc";
/// The statically linked busybox from `busybox-static`: the image's only executable.
pub const BUSYBOX: &str = "/bin/busybox";
/// The image's name; `localhost/` keeps podman from ever asking a registry about it.
pub const IMAGE: &str = "localhost/rr-test-busybox:local";
/// The page the image's httpd serves at /index.html.
pub const PAGE: &str = "rr-test page served from inside podman\n";
/// A CGI script that reports the caller's address as the container sees it.
const PEER_CGI: &str =
    "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"remote $REMOTE_ADDR\"\n";

/// Bound for podman's bookkeeping commands (import, rm).
const PODMAN_TIMEOUT: Duration = Duration::from_secs(120);

/// sockaddr_un's sun_path (unix(7)): podman puts slirp4netns's API socket at
/// `$XDG_RUNTIME_DIR/libpod/tmp/<64 hex>.net`, which must fit with its NUL.
const SUN_PATH_MAX: usize = 108;
const API_SOCKET_SUFFIX: usize = "/libpod/tmp/".len() + 64 + ".net".len();

/// One rootless podman setup of the test user's.
pub struct Podman {
    user: User,
    dir: PathBuf,
    runtime_dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Podman {
    /// Writes containers.conf (network_cmd_path = `bin`, runc, cgroupfs, file events) and
    /// storage.conf (vfs under the temp dir), and makes the test user's HOME and
    /// XDG_RUNTIME_DIR.
    pub fn new(h: &Harness, bin: &Slirp4netns) -> Podman {
        require_tools(&[
            (PODMAN, "podman"),
            (RUNC, "runc"),
            ("/usr/bin/conmon", "conmon"),
            ("/usr/bin/newuidmap", "uidmap"),
            (BUSYBOX, "busybox-static"),
            ("/bin/tar", "tar"),
        ]);
        let user = h.user().clone();
        let dir = user_dir(h.dir(), "podman", &user);
        // Short, because the API socket's path is built on it.
        let runtime_dir = user_dir(h.dir(), "r", &user);
        let socket_len = runtime_dir.as_os_str().len() + API_SOCKET_SUFFIX;
        assert!(
            socket_len < SUN_PATH_MAX,
            "podman's slirp4netns API socket under {} would be {socket_len} bytes, over \
             sockaddr_un's {SUN_PATH_MAX}: run the tests with a shorter TMPDIR",
            runtime_dir.display()
        );
        let home = user_dir(&dir, "home", &user);
        let conf = dir.join("containers.conf");
        // runc, not crun: Debian 12's crun 1.8 refuses hybrid cgroup hierarchies ("cgroups in
        // hybrid mode not supported"), which this project's machines have.
        write(
            &conf,
            &format!(
                "[containers]\nnetns = \"slirp4netns\"\n\n[engine]\nnetwork_cmd_path = \"{}\"\n\
                 runtime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
                bin.path()
            ),
        );
        let storage = dir.join("storage.conf");
        write(
            &storage,
            &format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                dir.join("graph").display(),
                dir.join("run").display()
            ),
        );
        let env = [
            ("HOME", home.as_path()),
            ("XDG_RUNTIME_DIR", runtime_dir.as_path()),
            ("CONTAINERS_CONF", conf.as_path()),
            ("CONTAINERS_STORAGE_CONF", storage.as_path()),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.display().to_string()))
        .collect();
        Podman {
            user,
            dir,
            runtime_dir,
            env,
        }
    }

    /// A Command running `podman ARGS...` as the test user in this setup's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut cmd = vec![PODMAN.to_owned()];
        cmd.extend(argv(args));
        command(&as_user_argv_env(&self.user, &env, &cmd))
    }

    /// `podman ARGS...` to completion.
    pub fn run(&self, args: &[&str], timeout: Duration) -> Outcome {
        run(
            format!("podman {}", args.join(" ")),
            &mut self.command(args),
            timeout,
        )
    }

    /// Builds the busybox image from files on this machine and imports it as `IMAGE`.
    pub fn import_image(&self) {
        let rootfs = self.dir.join("rootfs");
        for d in ["bin", "www/cgi-bin", "etc", "proc", "sys", "dev", "tmp"] {
            fs::create_dir_all(rootfs.join(d))
                .unwrap_or_else(|e| panic!("mkdir {}/{d}: {e}", rootfs.display()));
        }
        let busybox = rootfs.join("bin/busybox");
        fs::copy(BUSYBOX, &busybox).unwrap_or_else(|e| {
            panic!("copy {BUSYBOX}: {e}. Remedy: apt-get install busybox-static")
        });
        set_mode(&busybox, 0o755);
        for applet in ["sh", "httpd", "cat"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .unwrap_or_else(|e| panic!("symlink bin/{applet}: {e}"));
        }
        write(&rootfs.join("www/index.html"), PAGE);
        let cgi = rootfs.join("www/cgi-bin/peer");
        write(&cgi, PEER_CGI);
        set_mode(&cgi, 0o755);
        let tar = self.dir.join("rootfs.tar");
        let out = run(
            "tar the image's rootfs",
            &mut command(&argv(&[
                "/bin/tar",
                "--numeric-owner",
                "--owner=0",
                "--group=0",
                "-C",
                path_str(&rootfs),
                "-cf",
                path_str(&tar),
                ".",
            ])),
            PODMAN_TIMEOUT,
        );
        assert!(out.status.success(), "tar failed\n{out}");
        set_mode(&tar, 0o644);
        let out = self.run(
            &["import", "--quiet", path_str(&tar), IMAGE],
            PODMAN_TIMEOUT,
        );
        assert!(
            out.status.success(),
            "podman import of a local tarball failed\n{out}"
        );
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Best effort, after a failure: podman's own cleanup first, then whatever is left.
        let _ = self.run(&["rm", "--force", "--all", "--time", "0"], PODMAN_TIMEOUT);
        if let Some(token) = self.dir.parent().and_then(Path::to_str) {
            procs::kill_all(&procs::find(self.user.uid, token));
        }
        let pid_file = self.runtime_dir.join("libpod/tmp/pause.pid");
        if let Some(pid) = fs::read_to_string(pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|p| *p > 0)
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    set_mode(path, 0o644);
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp dir paths are UTF-8")
}
