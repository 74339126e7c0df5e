//! Joining an existing sandbox's network namespace from outside it, together with a user
//! namespace that has the capabilities there: what slirp4netns's child does before it opens the
//! tap device, and what `rootless-run`'s join may use.
//! Called by the drop-in's forked child (`Target::open` may run in the parent first, so a bad PID
//! or path fails before the fork). Decides which user namespace to enter and in what order;
//! knows nothing of taps or addresses. Small: one plan, two setns calls.
//!
//! Which user namespace. setns(CLONE_NEWNET) needs CAP_SYS_ADMIN in the user namespace that
//! *owns* the network namespace, so that is the one to enter (NS_GET_USERNS names it):
//! - `--userns-path` given: that one, as slirp4netns does.
//! - otherwise the network namespace's owner. slirp4netns enters /proc/PID/ns/user instead,
//!   which is the owner only when the target process did not unshare another user namespace
//!   after its network namespace. bubblewrap does (`--dev` and friends leave the command in a
//!   second, nested user namespace), so slirp4netns#311 gets EPERM from setns(CLONE_NEWNET)
//!   there: it holds every capability in the nested namespace and none in its parent, which
//!   owns the network namespace.
//! - the owner is our own user namespace (podman runs the helper inside its user namespace):
//!   none; setns would fail with EINVAL.
//! - the kernel cannot say (NS_GET_USERNS is Linux 4.9+: ENOTTY before): /proc/PID/ns/user for a
//!   PID target, none for a path. The owner lies outside our user namespace tree (EPERM: e.g. a
//!   namespace root made with `ip netns add`): none, and setns(CLONE_NEWNET) decides.
//!
//! Both setns calls need a single-threaded caller (setns(CLONE_NEWUSER) refuses otherwise):
//! call `enter` in a freshly forked child.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::sys::nsfs::Linux;

/// Where the network namespace to join comes from (slirp4netns's `--netns-type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetTarget {
    /// A process in it: /proc/PID/ns/net (`--netns-type=pid`, the default).
    Pid(i32),
    /// A namespace file: a bind mount or a /proc/PID/ns/net path (`--netns-type=path`).
    Path(PathBuf),
}

impl NetTarget {
    /// The network namespace file to open.
    pub fn net_path(&self) -> PathBuf {
        match self {
            NetTarget::Pid(pid) => proc_ns(*pid, "net"),
            NetTarget::Path(p) => p.clone(),
        }
    }
}

fn proc_ns(pid: i32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/{name}"))
}

/// Why a namespace could not be joined. Each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum EnterError {
    /// The namespace file could not be opened (no such process or path, no permission).
    #[error("cannot open {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// NS_GET_USERNS failed for a reason other than the ones `open` handles.
    #[error("cannot find the user namespace that owns {path}")]
    Owner {
        /// The network namespace file.
        path: PathBuf,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// Our own user namespace could not be examined.
    #[error("cannot compare {path} with our own user namespace")]
    Compare {
        /// The user namespace file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// setns(CLONE_NEWUSER) failed.
    #[error("cannot join the user namespace {what}")]
    JoinUser {
        /// The user namespace (a path, or "owning PATH").
        what: UsernsSource,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// setns(CLONE_NEWNET) failed.
    #[error("cannot join the network namespace {path}{}", net_hint(*.source, *.user_joined))]
    JoinNet {
        /// The network namespace file.
        path: PathBuf,
        /// Whether a user namespace was joined first.
        user_joined: bool,
        /// The errno.
        #[source]
        source: Errno,
    },
}

fn net_hint(errno: Errno, user_joined: bool) -> &'static str {
    match (errno, user_joined) {
        (Errno::EPERM, false) => {
            " (it belongs to a user namespace we cannot enter; run as its owner or as root)"
        }
        (Errno::EPERM, true) => {
            " (the user namespace joined has no CAP_SYS_ADMIN over it; drop --userns-path to \
             join the namespace's owner)"
        }
        (Errno::EINVAL, _) => " (not a network namespace)",
        _ => "",
    }
}

/// Where the user namespace to join came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsernsSource {
    /// A file named by the caller or /proc/PID/ns/user.
    Path(PathBuf),
    /// The owner of this network namespace file (NS_GET_USERNS).
    OwnerOf(PathBuf),
}

impl fmt::Display for UsernsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsernsSource::Path(p) => write!(f, "{}", p.display()),
            UsernsSource::OwnerOf(p) => write!(f, "owning {}", p.display()),
        }
    }
}

/// The seam between the plan and the kernel: `sys::nsfs::Linux` makes the calls, the tests'
/// recorder scripts their answers and records their order.
pub(crate) trait NsKernel {
    /// An open namespace.
    type Ns;
    /// Opens a namespace file (O_RDONLY | O_CLOEXEC).
    fn open(&mut self, path: &Path) -> io::Result<Self::Ns>;
    /// NS_GET_USERNS: the user namespace owning `ns`.
    fn owner(&mut self, ns: &Self::Ns) -> Result<Self::Ns, Errno>;
    /// Whether `ns` is the user namespace we are in.
    fn is_current_userns(&mut self, ns: &Self::Ns) -> io::Result<bool>;
    /// setns(2) into a user namespace.
    fn join_user(&mut self, ns: &Self::Ns) -> Result<(), Errno>;
    /// setns(2) into a network namespace.
    fn join_net(&mut self, ns: &Self::Ns) -> Result<(), Errno>;
}

/// The namespaces to join, opened: a network namespace and, if we need one, the user namespace
/// to enter first. Holding it keeps both alive.
#[derive(Debug)]
pub struct Target {
    plan: Plan<<Linux as NsKernel>::Ns>,
}

#[derive(Debug)]
struct Plan<N> {
    net: N,
    net_path: PathBuf,
    user: Option<(N, UsernsSource)>,
}

impl Target {
    /// Opens `net` and picks the user namespace to enter (see the module header): `userns` if
    /// given, else the network namespace's owner unless that is ours.
    pub fn open(net: &NetTarget, userns: Option<&Path>) -> Result<Target, EnterError> {
        Ok(Target {
            plan: plan(&mut Linux, net, userns)?,
        })
    }

    /// The network namespace file.
    pub fn net_path(&self) -> &Path {
        &self.plan.net_path
    }

    /// The user namespace `enter` joins first, if any.
    pub fn userns(&self) -> Option<&UsernsSource> {
        self.plan.user.as_ref().map(|(_, source)| source)
    }

    /// Joins the user namespace (if any), then the network namespace. The calling process must
    /// be single-threaded; it stays in both.
    pub fn enter(&self) -> Result<(), EnterError> {
        enter(&mut Linux, &self.plan)
    }

    /// Joins only the user namespace (if any), staying in our network namespace: a helper
    /// whose sockets must stay on the host but that must be root over the sandbox to confine
    /// itself (`confine::sandbox`). Single-threaded callers only.
    pub fn enter_user(&self) -> Result<(), EnterError> {
        enter_user(&mut Linux, &self.plan)
    }
}

fn plan<K: NsKernel>(
    k: &mut K,
    net: &NetTarget,
    userns: Option<&Path>,
) -> Result<Plan<K::Ns>, EnterError> {
    let net_path = net.net_path();
    let net_ns = k.open(&net_path).map_err(|source| EnterError::Open {
        path: net_path.clone(),
        source,
    })?;
    let candidate = match userns {
        Some(path) => Some(open_user(k, path, UsernsSource::Path(path.to_owned()))?),
        None => match k.owner(&net_ns) {
            Ok(owner) => Some((owner, UsernsSource::OwnerOf(net_path.clone()))),
            // Linux < 4.9, or not an nsfs file: fall back to what slirp4netns does.
            Err(Errno::ENOTTY | Errno::EINVAL) => match net {
                NetTarget::Pid(pid) => {
                    let path = proc_ns(*pid, "user");
                    Some(open_user(k, &path, UsernsSource::Path(path.clone()))?)
                }
                NetTarget::Path(_) => None,
            },
            // The owner is an ancestor of our user namespace: not enterable; setns(NEWNET)
            // will tell whether we hold the capability anyway.
            Err(Errno::EPERM) => None,
            Err(source) => {
                return Err(EnterError::Owner {
                    path: net_path,
                    source,
                })
            }
        },
    };
    let user = match candidate {
        Some((ns, source)) => {
            let current = k.is_current_userns(&ns).map_err(|e| EnterError::Compare {
                path: match &source {
                    UsernsSource::Path(p) | UsernsSource::OwnerOf(p) => p.clone(),
                },
                source: e,
            })?;
            if current {
                None
            } else {
                Some((ns, source))
            }
        }
        None => None,
    };
    Ok(Plan {
        net: net_ns,
        net_path,
        user,
    })
}

fn open_user<K: NsKernel>(
    k: &mut K,
    path: &Path,
    source: UsernsSource,
) -> Result<(K::Ns, UsernsSource), EnterError> {
    let ns = k.open(path).map_err(|e| EnterError::Open {
        path: path.to_owned(),
        source: e,
    })?;
    Ok((ns, source))
}

fn enter<K: NsKernel>(k: &mut K, plan: &Plan<K::Ns>) -> Result<(), EnterError> {
    enter_user(k, plan)?;
    k.join_net(&plan.net).map_err(|source| EnterError::JoinNet {
        path: plan.net_path.clone(),
        user_joined: plan.user.is_some(),
        source,
    })
}

fn enter_user<K: NsKernel>(k: &mut K, plan: &Plan<K::Ns>) -> Result<(), EnterError> {
    if let Some((ns, what)) = &plan.user {
        k.join_user(ns).map_err(|source| EnterError::JoinUser {
            what: what.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A namespace as the recorder sees it: the path it was opened from, or "owner(PATH)".
    type Name = String;

    /// Scripted answers; every call appended to `calls`.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
        /// NS_GET_USERNS answer for every network namespace.
        owner: Option<Result<Name, Errno>>,
        /// Names that are our own user namespace.
        current: Vec<Name>,
        /// Paths whose open fails with ENOENT.
        missing: Vec<&'static str>,
        join_net_errno: Option<Errno>,
    }

    impl NsKernel for Recorder {
        type Ns = Name;
        fn open(&mut self, path: &Path) -> io::Result<Name> {
            let p = path.display().to_string();
            self.calls.push(format!("open {p}"));
            if self.missing.contains(&p.as_str()) {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            Ok(p)
        }
        fn owner(&mut self, ns: &Name) -> Result<Name, Errno> {
            self.calls.push(format!("owner {ns}"));
            self.owner.clone().unwrap_or(Err(Errno::ENOTTY))
        }
        fn is_current_userns(&mut self, ns: &Name) -> io::Result<bool> {
            Ok(self.current.contains(ns))
        }
        fn join_user(&mut self, ns: &Name) -> Result<(), Errno> {
            self.calls.push(format!("setns user {ns}"));
            Ok(())
        }
        fn join_net(&mut self, ns: &Name) -> Result<(), Errno> {
            self.calls.push(format!("setns net {ns}"));
            self.join_net_errno.map_or(Ok(()), Err)
        }
    }

    fn run(k: &mut Recorder, net: NetTarget, userns: Option<&str>) -> Result<(), EnterError> {
        let p = plan(k, &net, userns.map(Path::new))?;
        enter(k, &p)
    }

    #[test]
    fn nested_user_namespace_joins_the_owner_of_the_netns_not_the_pids() {
        // bubblewrap: PID 42 sits in a user namespace nested in the one owning its netns.
        let mut k = Recorder {
            owner: Some(Ok("userns-owning-net".into())),
            ..Default::default()
        };
        run(&mut k, NetTarget::Pid(42), None).unwrap();
        assert_eq!(
            k.calls,
            [
                "open /proc/42/ns/net",
                "owner /proc/42/ns/net",
                "setns user userns-owning-net",
                "setns net /proc/42/ns/net",
            ]
        );
    }

    #[test]
    fn userns_path_wins_over_the_owner() {
        let mut k = Recorder {
            owner: Some(Ok("owner".into())),
            ..Default::default()
        };
        let net = NetTarget::Path("/run/netns/x".into());
        run(&mut k, net, Some("/proc/7/ns/user")).unwrap();
        assert_eq!(
            k.calls,
            [
                "open /run/netns/x",
                "open /proc/7/ns/user",
                "setns user /proc/7/ns/user",
                "setns net /run/netns/x",
            ]
        );
    }

    #[test]
    fn owner_that_is_our_own_user_namespace_is_not_joined() {
        // podman: the helper already runs in the rootless user namespace.
        let mut k = Recorder {
            owner: Some(Ok("ours".into())),
            current: vec!["ours".into()],
            ..Default::default()
        };
        run(
            &mut k,
            NetTarget::Path("/run/user/1000/netns/n".into()),
            None,
        )
        .unwrap();
        assert_eq!(
            k.calls,
            [
                "open /run/user/1000/netns/n",
                "owner /run/user/1000/netns/n",
                "setns net /run/user/1000/netns/n",
            ]
        );
    }

    #[test]
    fn old_kernel_falls_back_to_the_pids_user_namespace() {
        let mut k = Recorder::default(); // NS_GET_USERNS: ENOTTY
        run(&mut k, NetTarget::Pid(9), None).unwrap();
        assert_eq!(
            k.calls,
            [
                "open /proc/9/ns/net",
                "owner /proc/9/ns/net",
                "open /proc/9/ns/user",
                "setns user /proc/9/ns/user",
                "setns net /proc/9/ns/net",
            ]
        );
        // A path target has no PID to fall back to: netns only.
        let mut k = Recorder::default();
        run(&mut k, NetTarget::Path("/n".into()), None).unwrap();
        assert_eq!(k.calls, ["open /n", "owner /n", "setns net /n"]);
    }

    #[test]
    fn owner_outside_our_tree_leaves_the_decision_to_setns_net() {
        let mut k = Recorder {
            owner: Some(Err(Errno::EPERM)),
            join_net_errno: Some(Errno::EPERM),
            ..Default::default()
        };
        let err = run(&mut k, NetTarget::Pid(5), None).unwrap_err();
        assert_eq!(
            k.calls,
            [
                "open /proc/5/ns/net",
                "owner /proc/5/ns/net",
                "setns net /proc/5/ns/net"
            ]
        );
        assert!(matches!(
            err,
            EnterError::JoinNet {
                user_joined: false,
                source: Errno::EPERM,
                ..
            }
        ));
        assert!(err.to_string().contains("cannot enter"), "{err}");
    }

    #[test]
    fn missing_process_fails_before_any_setns() {
        let mut k = Recorder {
            missing: vec!["/proc/77/ns/net"],
            ..Default::default()
        };
        let err = run(&mut k, NetTarget::Pid(77), None).unwrap_err();
        assert_eq!(k.calls, ["open /proc/77/ns/net"]);
        match err {
            EnterError::Open { path, source } => {
                assert_eq!(path, Path::new("/proc/77/ns/net"));
                assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
            }
            other => panic!("expected Open, got {other:?}"),
        }
    }
}
