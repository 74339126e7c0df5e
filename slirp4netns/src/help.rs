//! rr-slirp4netns's `--help` and `--version` texts, which clients read: rootlesskit and podman
//! grep `--help` for flags, and parse `--version`'s first line as slirp4netns's.
//! Called by `main` when `cli` returns `Action::Help` or `Action::Version`; it parses
//! nothing and prints nothing itself. Grows only with the options `cli` takes.

use crate::cli::{DEFAULT_MTU, MAX_MTU};

/// The slirp4netns release whose command line this one follows (1.3.2 adds nothing to the
/// interface of 1.2 but `--netns-type=tapfd`).
pub const SLIRP4NETNS_VERSION: &str = "1.3.2";
/// libslirp's `SLIRP_CONFIG_VERSION_MAX` of the builds whose options we all take
/// (2: --outbound-addr, 3: --disable-dns, 4: what libslirp 4.7 in Debian 12 reports).
pub const SLIRP_CONFIG_VERSION_MAX: u32 = 4;

/// The `--help` text, with `prog` (argv[0]) in the first line. Every option appears with its
/// default; the strings rootlesskit and podman look for are in it (see the tests).
pub fn usage(prog: &str) -> String {
    format!(
        "Usage: {prog} [OPTION]... PID|PATH|FD [TAPNAME]
User-mode networking for unprivileged network namespaces.
This is rr-slirp4netns: rootless-run's network stack behind slirp4netns's command line.

-c, --configure          bring up lo and TAPNAME, set its MTU, 10.0.2.100/24 (network + 100)
                         and a default route via 10.0.2.2 (network + 2); with -6 also
                         fd00::100/64 via fd00::2 (default: configure nothing)
-e, --exit-fd=FD         exit 0 when the other end of FD closes (default: none)
-r, --ready-fd=FD        write \"1\" to FD, then close it, once the network is ready
                         (default: none)
-m, --mtu=MTU            specify MTU (default={DEFAULT_MTU}, max={MAX_MTU})
-6, --enable-ipv6        enable IPv6 (fd00::/64, gateway fd00::2, DNS fd00::3)
-a, --api-socket=PATH    serve the port-forwarding API on a UNIX socket at PATH
                         (default: none)
--cidr=CIDR              specify network address CIDR (default=10.0.2.0/24)
--disable-host-loopback  prohibit connecting to 127.0.0.1:* on the host namespace
                         (default: the gateway address reaches the host's 127.0.0.1)
--netns-type=TYPE        what the first argument is ([path|pid|tapfd], default=pid)
--userns-path=PATH       join this user namespace before the network namespace
                         (default: the user namespace owning the network namespace)
--enable-sandbox         create a new mount namespace (empty read-only root) and
                         drop capabilities (default: off)
--enable-seccomp         limit the system calls of the process to an allowlist with
                         seccomp; others kill it (default: off)
--outbound-addr=IPv4     bind outbound IPv4 sockets to this address, or to the first one
                         of this interface name (default: the kernel's choice)
--outbound-addr6=IPv6    the same for IPv6 (default: the kernel's choice)
--disable-dns            do not forward DNS at 10.0.2.3 (network + 3) to the host's
                         resolvers (default: forward)
--macaddress=MAC         specify the MAC address of the TAP (only valid with -c)
                         (default: the kernel's)
--target-type=TYPE       specify the target type ([netns], default=netns; bess is refused)
-h, --help               show this help and exit
-v, --version            show version and exit
"
    )
}

/// The `--version` text: slirp4netns's machine-readable lines (its first line is what
/// clients parse), saying what this really is.
pub fn version() -> String {
    let ours = env!("CARGO_PKG_VERSION");
    let commit = option_env!("RR_GIT_COMMIT").unwrap_or("unknown");
    format!(
        "slirp4netns version {SLIRP4NETNS_VERSION}+rr-slirp4netns.{ours}
commit: {commit}
libslirp: none (rootless-run netstack {ours})
SLIRP_CONFIG_VERSION_MAX: {SLIRP_CONFIG_VERSION_MAX}
libseccomp: none
rr-slirp4netns: {ours} (a slirp4netns-compatible command line over rootless-run's netstack)
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_names_every_flag_clients_look_for() {
        // rootlesskit's DetectFeatures and podman's checkSlirpFlags (research §1.1).
        let help = usage("slirp4netns");
        for flag in [
            "--netns-type",
            "--enable-ipv6",
            "--cidr",
            "--disable-host-loopback",
            "--api-socket",
            "--enable-sandbox",
            "--enable-seccomp",
            "--mtu",
            "--outbound-addr",
            "--userns-path",
            "--disable-dns",
            "--macaddress",
            "--target-type",
            "--configure",
            "--exit-fd",
            "--ready-fd",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
        assert!(help.starts_with("Usage: slirp4netns [OPTION]... PID|PATH|FD [TAPNAME]\n"));
        assert!(help.contains("default=1500, max=65521"));
    }

    #[test]
    fn version_first_line_parses_as_slirp4netns() {
        let v = version();
        let first = v.lines().next().unwrap();
        let ver = first.strip_prefix("slirp4netns version ").unwrap();
        // Semver with build metadata: "1.3.2+rr-slirp4netns.0.1.0".
        let (core, build) = ver.split_once('+').unwrap();
        assert_eq!(core.split('.').count(), 3);
        assert!(core.split('.').all(|p| p.parse::<u32>().is_ok()));
        assert!(build.starts_with("rr-slirp4netns."));
        for key in [
            "commit: ",
            "libslirp: ",
            "SLIRP_CONFIG_VERSION_MAX: 4",
            "libseccomp: ",
        ] {
            assert!(v.lines().any(|l| l.starts_with(key)), "{key}");
        }
    }
}
