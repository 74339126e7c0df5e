//! Before anything is built: the host settings that would let a new sandbox fail half-way,
//! turned into one error that names the setting and the remedy. Read from /proc and
//! /dev/net/tun, without forking or creating anything:
//!
//! | setting | effect when set so | who |
//! | --- | --- | --- |
//! | `user.max_user_namespaces` = 0 | unshare(CLONE_NEWUSER) fails with ENOSPC | everyone |
//! | `kernel.unprivileged_userns_clone` = 0 (Debian kernels) | unshare fails with EPERM | not root |
//! | `kernel.apparmor_restrict_unprivileged_userns` = 1 (Ubuntu 23.10+) and no AppArmor profile of ours | the namespace is made, but holds no capability: the id maps, tap and netlink fail with EPERM | not root |
//! | /dev/net/tun missing or not read-writable | the tap cannot be opened | userspace network |
//!
//! Called by `launch::run` for a new sandbox, first thing. `Facts::read` gathers; `check`
//! decides (the unit tests feed it hand-made facts; the integration tests in
//! launcher/tests/diagnosis.rs put fake sysctl files in a mount namespace they own).

use std::path::Path;

use netstack::sys::SysError;
use netstack::tap::TapError;
use nix::errno::Errno;
use nix::unistd::AccessFlags;

/// Where the sysctls live.
const SYSCTL_DIR: &str = "/proc/sys";
/// The user-namespace limit of the caller's user namespace (and its ancestors').
const MAX_USER_NAMESPACES: &str = "user/max_user_namespaces";
/// Debian's switch for unprivileged user namespaces.
const UNPRIVILEGED_USERNS_CLONE: &str = "kernel/unprivileged_userns_clone";
/// Ubuntu's AppArmor restriction of unprivileged user namespaces.
const APPARMOR_RESTRICT: &str = "kernel/apparmor_restrict_unprivileged_userns";
/// Our AppArmor label (Linux 5.8+), and the LSM-neutral file before it.
const APPARMOR_LABELS: [&str; 2] = [
    "/proc/self/attr/apparmor/current",
    "/proc/self/attr/current",
];

/// Why a sandbox cannot be built here.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// `user.max_user_namespaces` is 0.
    #[error(
        "user namespaces are disabled: sysctl user.max_user_namespaces is 0 \
         (enable them: sysctl -w user.max_user_namespaces=15000)"
    )]
    MaxUserNamespaces,
    /// `kernel.unprivileged_userns_clone` is 0.
    #[error(
        "unprivileged user namespaces are disabled: sysctl kernel.unprivileged_userns_clone is 0 \
         (enable them as root: sysctl -w kernel.unprivileged_userns_clone=1)"
    )]
    UnprivilegedClone,
    /// Ubuntu's restriction is on and we run without a profile that allows `userns`.
    #[error(
        "AppArmor leaves unconfined programs no capabilities in a new user namespace: sysctl \
         kernel.apparmor_restrict_unprivileged_userns is 1 and rootless-run runs as '{label}' \
         (load its profile as root: apparmor_parser -r /etc/apparmor.d/rootless-run, which \
         scripts/setup and the package install; or sysctl -w \
         kernel.apparmor_restrict_unprivileged_userns=0)"
    )]
    AppArmor {
        /// Our AppArmor label, as the kernel reports it.
        label: String,
    },
    /// /dev/net/tun cannot be used.
    #[error("cannot create the sandbox's tap device")]
    Tun(#[source] TapError),
}

/// What the checks look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The caller's uid (0: real root, exempt from the unprivileged restrictions).
    pub uid: u32,
    /// `user.max_user_namespaces`, if readable.
    pub max_user_namespaces: Option<String>,
    /// `kernel.unprivileged_userns_clone`, if the kernel has it.
    pub unprivileged_userns_clone: Option<String>,
    /// `kernel.apparmor_restrict_unprivileged_userns`, if the kernel has it.
    pub apparmor_restrict: Option<String>,
    /// Our AppArmor label, if AppArmor reports one.
    pub apparmor_label: Option<String>,
    /// access(/dev/net/tun, R_OK|W_OK), when the userspace network needs it.
    pub tun: Option<Result<(), Errno>>,
}

impl Facts {
    /// Reads the facts for `uid`; `tun` says whether the run opens a tap device.
    pub fn read(uid: u32, tun: bool) -> Facts {
        let sysctl = |name: &str| std::fs::read_to_string(Path::new(SYSCTL_DIR).join(name)).ok();
        Facts {
            uid,
            max_user_namespaces: sysctl(MAX_USER_NAMESPACES),
            unprivileged_userns_clone: sysctl(UNPRIVILEGED_USERNS_CLONE),
            apparmor_restrict: sysctl(APPARMOR_RESTRICT),
            apparmor_label: APPARMOR_LABELS
                .iter()
                .find_map(|p| std::fs::read_to_string(p).ok()),
            tun: tun.then(|| {
                nix::unistd::access(
                    netstack::sys::tap::TUN_PATH,
                    AccessFlags::R_OK | AccessFlags::W_OK,
                )
            }),
        }
    }
}

/// True when `value` (a sysctl file's contents) is exactly `want`.
fn is(value: &Option<String>, want: &str) -> bool {
    value.as_deref().map(str::trim) == Some(want)
}

/// The first refusal the facts call for, in the order the kernel would hit them.
pub fn check(f: &Facts) -> Result<(), Refusal> {
    if is(&f.max_user_namespaces, "0") {
        return Err(Refusal::MaxUserNamespaces);
    }
    if f.uid != 0 && is(&f.unprivileged_userns_clone, "0") {
        return Err(Refusal::UnprivilegedClone);
    }
    if f.uid != 0 && is(&f.apparmor_restrict, "1") {
        let label = f
            .apparmor_label
            .as_deref()
            .map(|l| l.trim_end_matches(['\n', '\0']).trim())
            .unwrap_or("unconfined");
        // "unconfined" is no profile at all; a profile (even one in complain or unconfined
        // mode, "rootless-run (unconfined)") is the administrator's choice to allow us.
        if label.is_empty() || label == "unconfined" {
            return Err(Refusal::AppArmor {
                label: "unconfined".into(),
            });
        }
    }
    match f.tun {
        Some(Err(Errno::ENOENT | Errno::ENOTDIR)) => {
            Err(tun_error(Errno::ENOENT, TapError::Missing))
        }
        Some(Err(e)) => Err(tun_error(e, TapError::Denied)),
        _ => Ok(()),
    }
}

fn tun_error(e: Errno, kind: fn(SysError) -> TapError) -> Refusal {
    Refusal::Tun(kind(SysError {
        call: "access",
        source: std::io::Error::from(e),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unprivileged caller on a machine where everything is allowed.
    fn open_host() -> Facts {
        Facts {
            uid: 1000,
            max_user_namespaces: Some("15000\n".into()),
            unprivileged_userns_clone: Some("1\n".into()),
            apparmor_restrict: Some("0\n".into()),
            apparmor_label: Some("unconfined\n".into()),
            tun: Some(Ok(())),
        }
    }

    fn refusal(f: &Facts) -> String {
        check(f).expect_err("refused").to_string()
    }

    #[test]
    fn an_open_host_and_a_host_without_the_knobs_pass() {
        assert!(check(&open_host()).is_ok());
        assert!(
            check(&Facts::default()).is_ok(),
            "unreadable: let the kernel decide"
        );
    }

    #[test]
    fn zero_max_user_namespaces_is_refused_for_everyone_with_the_sysctl_named() {
        for uid in [0, 1000] {
            let f = Facts {
                uid,
                max_user_namespaces: Some("0\n".into()),
                ..open_host()
            };
            assert_eq!(
                refusal(&f),
                "user namespaces are disabled: sysctl user.max_user_namespaces is 0 \
                 (enable them: sysctl -w user.max_user_namespaces=15000)"
            );
        }
    }

    #[test]
    fn debian_switch_off_refuses_users_but_not_root() {
        let f = Facts {
            unprivileged_userns_clone: Some("0\n".into()),
            ..open_host()
        };
        assert!(refusal(&f).contains("sysctl kernel.unprivileged_userns_clone is 0"));
        assert!(check(&Facts { uid: 0, ..f }).is_ok());
    }

    #[test]
    fn apparmor_restriction_refuses_an_unconfined_caller_but_not_our_profile() {
        let f = Facts {
            apparmor_restrict: Some("1\n".into()),
            ..open_host()
        };
        let e = refusal(&f);
        assert!(
            e.contains("kernel.apparmor_restrict_unprivileged_userns is 1"),
            "{e}"
        );
        assert!(
            e.contains("apparmor_parser -r /etc/apparmor.d/rootless-run"),
            "{e}"
        );
        let no_label = Facts {
            apparmor_label: None,
            ..f.clone()
        };
        assert!(check(&no_label).is_err(), "no label reads as unconfined");
        let profiled = Facts {
            apparmor_label: Some("rootless-run (unconfined)\n".into()),
            ..f.clone()
        };
        assert!(check(&profiled).is_ok());
        assert!(
            check(&Facts { uid: 0, ..f }).is_ok(),
            "root keeps its capabilities"
        );
    }

    #[test]
    fn tun_missing_and_denied_name_the_device_and_the_remedy() {
        let missing = Facts {
            tun: Some(Err(Errno::ENOENT)),
            ..open_host()
        };
        let e = check(&missing).expect_err("missing");
        assert_eq!(
            format!("{:#}", anyhow::Error::new(e)),
            "cannot create the sandbox's tap device: /dev/net/tun is missing (load the tun \
             module or create the device node): access failed: No such file or directory \
             (os error 2)"
        );
        let denied = Facts {
            tun: Some(Err(Errno::EACCES)),
            ..open_host()
        };
        let e = format!(
            "{:#}",
            anyhow::Error::new(check(&denied).expect_err("denied"))
        );
        assert!(e.contains("/dev/net/tun is not accessible"), "{e}");
        assert!(e.contains("chmod 0666 /dev/net/tun"), "{e}");
    }
}
