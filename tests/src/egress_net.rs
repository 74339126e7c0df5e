//! The egress policy tests' network: an outer namespace (where the unprivileged launcher
//! runs, as with `topology::Internet`) routed over a veth to a server namespace whose TCP echo
//! server (port 7, all addresses) answers at one address in each range the policy tells apart:
//! a "public" documentation address (198.51.100.1, 2001:db8::1), the address the fake resolver
//! gives for every name (198.51.100.53), and one address in each private, shared, link-local,
//! metadata and unique-local block `--no-lan` denies. A fake DNS upstream runs on the outer
//! namespace's loopback (a thread enters it with setns just to bind), so the launcher's DNS
//! forwarder, which lives there, can reach it. Nothing here reaches beyond the namespaces.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use nix::sched::{setns, CloneFlags};

use crate::child::{run, Running};
use crate::resolver::{Behaviour, FakeResolver};
use crate::sandbox::{argv, command, Harness};

/// The public server (TEST-NET-2, RFC 5737).
pub const PUBLIC_V4: &str = "198.51.100.1";
/// The public server over IPv6 (documentation prefix, RFC 3849).
pub const PUBLIC_V6: &str = "2001:db8::1";
/// What the fake resolver answers for every `resolver::ZONE` name.
pub const NAMED_V4: &str = "198.51.100.53";
/// The echo server's port.
pub const PORT: u16 = 7;

/// One server address in each block `--no-lan` denies, as (label, address).
pub const LAN: [(&str, &str); 8] = [
    ("rfc1918-10", "10.99.0.1"),
    ("rfc1918-172", "172.16.5.1"),
    ("rfc1918-192", "192.168.77.1"),
    ("cgnat", "100.64.0.9"),
    ("link-local", "169.254.7.7"),
    ("metadata", "169.254.169.254"),
    ("ula", "fd12:3456::1"),
    ("metadata-v6", "fd00:ec2::254"),
];

const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The namespaces, their holders and the fake upstream.
pub struct EgressNet {
    outer: Running,
    server: Running,
    resolver: FakeResolver,
}

impl EgressNet {
    /// Builds both namespaces, the link, the addresses and routes, and the fake upstream.
    pub fn build(h: &Harness) -> EgressNet {
        let token = crate::sandbox::unique_token("egress-outer");
        let mut hold = argv(&["/usr/bin/unshare", "--net", "--"]);
        hold.extend(h.probe(&["hold", &token]));
        let mut outer = Running::spawn("egress outer netns", &mut command(&hold));
        outer.expect_line("ready", SETUP_TIMEOUT, |l| l == "ready");
        let mut serve = argv(&["/usr/bin/unshare", "--net", "--"]);
        serve.extend(h.probe(&[
            "serve",
            &format!("tcp:[::]:{PORT}"),
            &format!("udp:[::]:{PORT}"),
        ]));
        let mut server = Running::spawn("egress server netns", &mut command(&serve));
        server.expect_line("ready", SETUP_TIMEOUT, |l| l == "ready");
        let (o, s) = (outer.pid().to_string(), server.pid().to_string());
        let mut script = format!(
            "set -e\nip link set lo up\nip link add rr-out type veth peer name rr-srv\n\
             ip link set rr-srv netns {s}\nip addr add 198.51.100.2/24 dev rr-out\n\
             ip addr add 2001:db8::2/64 dev rr-out nodad\nip link set rr-out up\n\
             ip route add default via {PUBLIC_V4}\nip -6 route add default via {PUBLIC_V6}\n"
        );
        let mut inner = format!(
            "set -e\nip link set lo up\nip addr add {PUBLIC_V4}/24 dev rr-srv\n\
             ip addr add {PUBLIC_V6}/64 dev rr-srv nodad\nip addr add {NAMED_V4}/32 dev rr-srv\n\
             ip link set rr-srv up\nip route add default via 198.51.100.2\n\
             ip -6 route add default via 2001:db8::2\n"
        );
        for (_, a) in LAN {
            let len = if a.contains(':') { 128 } else { 32 };
            inner.push_str(&format!("ip addr add {a}/{len} dev rr-srv nodad\n"));
        }
        script.push_str(&format!("nsenter -t {s} -n -- sh -c '{inner}'\n"));
        let cmd = argv(&[
            "/usr/bin/nsenter",
            "-t",
            &o,
            "-n",
            "--",
            "/bin/sh",
            "-c",
            &script,
        ]);
        let out = run(
            "building the egress topology",
            &mut command(&cmd),
            SETUP_TIMEOUT,
        );
        assert!(
            out.status.success(),
            "building the egress topology failed\n{out}"
        );
        let resolver = resolver_in(outer.pid());
        EgressNet {
            outer,
            server,
            resolver,
        }
    }

    /// argv that runs `argv` inside the outer namespace (as root; wrap it with setpriv after).
    pub fn in_outer(&self, then: &[String]) -> Vec<String> {
        let pid = self.outer.pid().to_string();
        [
            argv(&["/usr/bin/nsenter", "-t", &pid, "-n", "--"]),
            then.to_vec(),
        ]
        .concat()
    }

    /// Waits for the server's next TCP caller line (`tcp LOCAL from PEER`); returns it.
    pub fn next_tcp_caller(&mut self, timeout: Duration) -> String {
        self.server
            .expect_line("a tcp caller", timeout, |l| l.starts_with("tcp "))
    }

    /// The fake upstream's address, on the outer namespace's loopback.
    pub fn upstream(&self) -> SocketAddr {
        self.resolver.addr()
    }

    /// The fake upstream.
    pub fn resolver(&self) -> &FakeResolver {
        &self.resolver
    }
}

/// Starts the fake resolver on 127.0.0.1 of the network namespace of `pid`: a thread enters
/// it only to bind; the sockets stay there.
fn resolver_in(pid: i32) -> FakeResolver {
    let ns = File::open(format!("/proc/{pid}/ns/net")).expect("the outer netns");
    std::thread::spawn(move || {
        setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns into the outer netns");
        FakeResolver::start(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, Behaviour::Answer)
    })
    .join()
    .expect("the resolver thread")
}
