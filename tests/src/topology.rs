//! A private stand-in for "the internet", built as root for one test: an outer network namespace
//! (where the unprivileged launcher runs) joined by a veth pair to a server namespace holding a
//! TCP echo server at 198.51.100.1, a documentation address (RFC 5737). Each namespace is held by
//! an `rr-probe` process; dropping `Internet` kills both, which ends the namespaces and the veth.
//! Nothing here can reach beyond the two namespaces.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use nix::sched::{setns, CloneFlags};

use crate::child::{run, Running};
use crate::sandbox::{argv, command, Harness};

/// The echo server's address (TEST-NET-2, RFC 5737).
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// The outer namespace's address on the same link: the source the server must see.
pub const OUTER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// The echo server's port (echo, RFC 862; any port works in a private namespace).
pub const ECHO_PORT: u16 = 7;

const PREFIX: u8 = 24;
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The two namespaces and their holders.
pub struct Internet {
    outer: Running,
    server: Running,
}

impl Internet {
    /// Builds both namespaces and the link, then checks as root from the outer namespace that
    /// the server echoes, so a later failure is the launcher's and not the topology's.
    pub fn build(h: &Harness) -> Internet {
        let token = crate::sandbox::unique_token("outer");
        let mut hold = vec![
            "/usr/bin/unshare".to_owned(),
            "--net".to_owned(),
            "--".to_owned(),
        ];
        hold.extend(h.probe(&["hold", &token]));
        let mut outer = Running::spawn("outer netns holder", &mut command(&hold));
        outer.expect_line("ready", SETUP_TIMEOUT, |l| l == "ready");

        let listen = format!("0.0.0.0:{ECHO_PORT}");
        let mut serve = vec![
            "/usr/bin/unshare".to_owned(),
            "--net".to_owned(),
            "--".to_owned(),
        ];
        serve.extend(h.probe(&["serve-tcp-echo", &listen]));
        let mut server = Running::spawn("server netns echo server", &mut command(&serve));
        server.expect_line("listening", SETUP_TIMEOUT, |l| l.starts_with("listening "));

        let mut net = Internet { outer, server };
        let (o, s) = (net.outer.pid().to_string(), net.server.pid().to_string());
        let outer_cidr = format!("{OUTER_ADDR}/{PREFIX}");
        let server_cidr = format!("{SERVER_ADDR}/{PREFIX}");
        // Both namespaces are private, so fixed link names cannot clash with other tests.
        for (pid, ip_args) in [
            (&o, vec!["link", "set", "lo", "up"]),
            (
                &o,
                vec![
                    "link", "add", "rr-out", "type", "veth", "peer", "name", "rr-srv",
                ],
            ),
            (&o, vec!["link", "set", "rr-srv", "netns", s.as_str()]),
            (
                &o,
                vec!["addr", "add", outer_cidr.as_str(), "dev", "rr-out"],
            ),
            (&o, vec!["link", "set", "rr-out", "up"]),
            (&s, vec!["link", "set", "lo", "up"]),
            (
                &s,
                vec!["addr", "add", server_cidr.as_str(), "dev", "rr-srv"],
            ),
            (&s, vec!["link", "set", "rr-srv", "up"]),
        ] {
            let mut cmd = vec![
                "/usr/bin/nsenter",
                "-t",
                pid.as_str(),
                "-n",
                "--",
                "/usr/sbin/ip",
            ];
            cmd.extend(ip_args);
            let out = run(cmd.join(" "), &mut command(&argv(&cmd)), SETUP_TIMEOUT);
            assert!(
                out.status.success(),
                "building the test topology failed\n{out}"
            );
        }
        let target = format!("{SERVER_ADDR}:{ECHO_PORT}");
        let mut check = vec![
            "/usr/bin/nsenter".to_owned(),
            "-t".to_owned(),
            o,
            "-n".to_owned(),
        ];
        check.push("--".to_owned());
        check.extend(h.probe(&["tcp-echo", &target, "4096"]));
        let out = run(
            "root check of the topology",
            &mut command(&check),
            SETUP_TIMEOUT,
        );
        assert_eq!(
            out.shell_status(),
            0,
            "the test topology does not echo as root\n{out}"
        );
        let peer = net.next_peer(SETUP_TIMEOUT);
        assert_eq!(
            peer.ip(),
            OUTER_ADDR,
            "the topology routes oddly: root's check came from {peer}"
        );
        net
    }

    /// argv that runs `argv` inside the outer namespace (as root; wrap it with setpriv after).
    pub fn in_outer(&self, argv: &[String]) -> Vec<String> {
        let mut v = vec![
            "/usr/bin/nsenter".to_owned(),
            "-t".to_owned(),
            self.outer.pid().to_string(),
            "-n".to_owned(),
            "--".to_owned(),
        ];
        v.extend(argv.iter().cloned());
        v
    }

    /// argv of `sh -c SCRIPT` as root in the outer namespace, with $B the launcher, $D the
    /// harness's scratch directory and $L the outer namespace's kernel-mode lease directory.
    pub fn outer_sh(&self, h: &Harness, script: &str) -> Vec<String> {
        let full = format!(
            "B={}; D={}; L=/run/rootless-run/leases/net-$(stat -L -c %i /proc/self/ns/net); {script}",
            h.launcher(),
            h.dir().display()
        );
        self.in_outer(&["/bin/sh".to_owned(), "-c".to_owned(), full])
    }

    /// Runs `f` on a thread that has entered the outer namespace, so the sockets it creates
    /// (a `servers::TcpEcho`, a `resolver::FakeResolver`; their threads follow it) live where
    /// a kernel-mode launcher started by `in_outer` sees them as the host's.
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/proc/{}/ns/net", self.outer.pid());
        let ns = File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
        std::thread::spawn(move || {
            setns(&ns, CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("cannot enter the outer namespace: {e}"));
            f()
        })
        .join()
        .unwrap_or_else(|_| panic!("setting up inside the outer namespace panicked"))
    }

    /// The peer of the next connection the echo server accepts.
    pub fn next_peer(&mut self, timeout: Duration) -> SocketAddr {
        let line = self
            .server
            .expect_line("a peer line", timeout, |l| l.starts_with("peer "));
        let addr = line.trim_start_matches("peer ");
        addr.parse()
            .unwrap_or_else(|e| panic!("echo server printed a bad peer {addr:?}: {e}"))
    }
}
