//! Baits: listeners that must see nothing, to prove that something is not forwarded.
//! `LoopbackBait` holds one port on several host loopback addresses (127.0.0.1, 127.0.0.2, ::1
//! ...) for TCP and UDP in the test's own (sealed) namespace and records every connection and
//! datagram; `caught` sends the test's own marker to each first, so it returns everything that
//! came before (the tests show each bait catching in a control run). `BaitNet` builds, as root, an outer network namespace for the launcher whose
//! routes all lead over a veth into a bait namespace; there `rr-probe sniff` reports every IP
//! packet addressed into the prefixes under watch (any protocol, any port), and `rr-probe
//! serve` answers on a control address. A test ends a phase with a control connection from the
//! sandbox through the same path (`barrier`): the netstack handles the sandbox's frames in
//! order, so anything it would have leaked before the control connection is on the wire first.
//! `BaitNet` checks itself when built (a bait that cannot see is no bait). Nothing here reaches
//! beyond loopback and the namespaces it creates; dropping a `BaitNet` kills its holders.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use crate::child::{run, Running};
use crate::peer_echo::PeerEcho;
use crate::ports;
use crate::sandbox::{argv, command, unique_token, Harness};

/// What a `LoopbackBait` caught.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Catch {
    /// A TCP connection was accepted on `local` from `peer`.
    Tcp {
        /// The bait's address.
        local: SocketAddr,
        /// The caller.
        peer: SocketAddr,
    },
    /// A datagram of `len` bytes arrived on `local` from `peer`.
    Udp {
        /// The bait's address.
        local: SocketAddr,
        /// The sender.
        peer: SocketAddr,
        /// Its size.
        len: usize,
    },
}

/// What the test itself sends to a UDP bait to mark "everything before this".
const MARKER: &[u8] = b"rr-bait-marker";

/// TCP listeners and UDP sockets on one port of several host addresses.
pub struct LoopbackBait {
    port: u16,
    addrs: Vec<SocketAddr>,
    catches: Receiver<Catch>,
}

impl LoopbackBait {
    /// Binds TCP and UDP on a free port of every address in `ips`. Panics if one cannot bind.
    pub fn start(ips: &[IpAddr]) -> LoopbackBait {
        let port = ports::free_port();
        let (tx, catches) = mpsc::channel();
        for ip in ips {
            let addr = SocketAddr::new(*ip, port);
            let l =
                TcpListener::bind(addr).unwrap_or_else(|e| panic!("bait: bind TCP {addr}: {e}"));
            let u = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bait: bind UDP {addr}: {e}"));
            let tcp_tx = tx.clone();
            thread::spawn(move || {
                // accept's own address, not peer_addr(): a connection reset while it waited
                // in the queue has no peer any more, and it was still a catch.
                while let Ok((_conn, peer)) = l.accept() {
                    let _ = tcp_tx.send(Catch::Tcp { local: addr, peer });
                }
            });
            let udp_tx = tx.clone();
            thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while let Ok((len, peer)) = u.recv_from(&mut buf) {
                    let _ = udp_tx.send(Catch::Udp {
                        local: addr,
                        peer,
                        len,
                    });
                }
            });
        }
        // The sockets live on in their threads for the rest of the test binary: a bait must
        // not let go of its port while the launcher under test could still reach it.
        let addrs = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
        LoopbackBait {
            port,
            addrs,
            catches,
        }
    }

    /// The port every bait address listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything caught before now: the test itself sends a marker connection and datagram
    /// to every bait address, and everything caught before all markers arrive is returned
    /// (each bait socket is served in order, so nothing that came earlier can be missed).
    /// Panics if the markers do not all arrive within `timeout`.
    pub fn caught(&self, timeout: Duration) -> Vec<Catch> {
        let mut markers = Vec::new();
        let mut streams = Vec::new();
        for addr in &self.addrs {
            let s = TcpStream::connect_timeout(addr, timeout)
                .unwrap_or_else(|e| panic!("bait marker: connect {addr}: {e}"));
            markers.push(Catch::Tcp {
                local: *addr,
                peer: s.local_addr().expect("a connected socket has an address"),
            });
            streams.push(s);
            let u = UdpSocket::bind(SocketAddr::new(addr.ip(), 0))
                .unwrap_or_else(|e| panic!("bait marker: bind UDP on {}: {e}", addr.ip()));
            u.send_to(MARKER, addr)
                .unwrap_or_else(|e| panic!("bait marker: send to {addr}: {e}"));
            markers.push(Catch::Udp {
                local: *addr,
                peer: u.local_addr().expect("a bound socket has an address"),
                len: MARKER.len(),
            });
        }
        let deadline = Instant::now() + timeout;
        let mut caught = Vec::new();
        while !markers.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.catches.recv_timeout(left) {
                Ok(c) => match markers.iter().position(|m| *m == c) {
                    Some(i) => {
                        markers.swap_remove(i);
                    }
                    None => caught.push(c),
                },
                Err(_) => panic!(
                    "bait markers {markers:?} did not arrive within {timeout:?}; caught {caught:?}"
                ),
            }
        }
        caught
    }

    /// Waits up to `timeout` for the next catch (for the check that the bait can catch).
    pub fn next_catch(&self, timeout: Duration) -> Option<Catch> {
        self.catches.recv_timeout(timeout).ok()
    }
}

/// The outer namespace's address on the bait link (TEST-NET-3, RFC 5737).
pub const OUTER_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The bait namespace's address on the link; every IPv4 route of the outer namespace ends here.
pub const BAIT_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The outer namespace's IPv6 address on the bait link (RFC 3849).
pub const OUTER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 2);
/// The bait namespace's IPv6 address; every IPv6 route of the outer namespace ends here.
pub const BAIT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 1);
/// Port of the control server's self-check; barriers use the ports after it.
const CHECK_PORT: u16 = 7000;
/// Barrier ports available (`barrier(0..BARRIERS)`).
pub const BARRIERS: u16 = 4;
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// An outer namespace for the launcher, routed entirely into a watched bait namespace.
pub struct BaitNet {
    outer: Running,
    sniffer: Running,
    control: PeerEcho,
}

impl BaitNet {
    /// Builds the namespaces and starts the sniffer on `watch` (prefixes `ADDR/LEN`), then
    /// checks as root from the outer namespace that the control server answers and that
    /// datagrams to `probes` (addresses inside `watch`) are reported.
    pub fn build(h: &Harness, watch: &[&str], probes: &[IpAddr]) -> BaitNet {
        let token = unique_token("baitnet");
        let mut hold = argv(&["/usr/bin/unshare", "--net", "--"]);
        hold.extend(h.probe(&["hold", &token]));
        let mut outer = Running::spawn("bait: outer netns holder", &mut command(&hold));
        outer.expect_line("ready", SETUP_TIMEOUT, |l| l == "ready");

        let control_prefix = format!("{BAIT_V4}/32");
        let mut sniff_args = vec!["sniff", control_prefix.as_str()];
        sniff_args.extend(watch.iter().copied());
        let mut sniff = argv(&["/usr/bin/unshare", "--net", "--"]);
        sniff.extend(h.probe(&sniff_args));
        let mut sniffer = Running::spawn("bait: sniffer", &mut command(&sniff));
        sniffer.expect_line("ready", SETUP_TIMEOUT, |l| l == "ready");

        let (o, b) = (outer.pid().to_string(), sniffer.pid().to_string());
        let (outer4, bait4) = (format!("{OUTER_V4}/24"), format!("{BAIT_V4}/24"));
        let (outer6, bait6) = (format!("{OUTER_V6}/64"), format!("{BAIT_V6}/64"));
        let (via4, via6) = (BAIT_V4.to_string(), BAIT_V6.to_string());
        // Both namespaces are private, so fixed link names cannot clash with other tests.
        let steps: [(&str, Vec<&str>); 12] = [
            (&o, vec!["link", "set", "lo", "up"]),
            (
                &o,
                vec![
                    "link", "add", "rr-out", "type", "veth", "peer", "name", "rr-bait",
                ],
            ),
            (&o, vec!["link", "set", "rr-bait", "netns", &b]),
            (&o, vec!["addr", "add", &outer4, "dev", "rr-out"]),
            (
                &o,
                vec!["-6", "addr", "add", &outer6, "dev", "rr-out", "nodad"],
            ),
            (&o, vec!["link", "set", "rr-out", "up"]),
            (&b, vec!["link", "set", "lo", "up"]),
            (&b, vec!["addr", "add", &bait4, "dev", "rr-bait"]),
            (
                &b,
                vec!["-6", "addr", "add", &bait6, "dev", "rr-bait", "nodad"],
            ),
            (&b, vec!["link", "set", "rr-bait", "up"]),
            (&o, vec!["route", "add", "default", "via", &via4]),
            (&o, vec!["-6", "route", "add", "default", "via", &via6]),
        ];
        for (pid, ip_args) in steps {
            ip_in(pid, &ip_args);
        }

        let mut serve = argv(&["/usr/bin/nsenter", "-t", &b, "-n", "--"]);
        let listens: Vec<String> = (CHECK_PORT..=CHECK_PORT + BARRIERS)
            .map(|p| format!("tcp:[::]:{p}"))
            .collect();
        let mut serve_args = vec!["serve"];
        serve_args.extend(listens.iter().map(String::as_str));
        serve.extend(h.probe(&serve_args));
        let control = PeerEcho::ready(
            Running::spawn("bait: control server", &mut command(&serve)),
            SETUP_TIMEOUT,
        );
        let mut net = BaitNet {
            outer,
            sniffer,
            control,
        };
        net.self_check(h, probes);
        net
    }

    /// As root in the outer namespace: the control server answers, and a datagram to each of
    /// `probes` reaches the sniffer.
    fn self_check(&mut self, h: &Harness, probes: &[IpAddr]) {
        let check = SocketAddr::from((BAIT_V4, CHECK_PORT)).to_string();
        let mut poke_args = vec!["poke".to_owned(), format!("tcp:{check}")];
        poke_args.extend(
            probes
                .iter()
                .map(|ip| format!("udp:{}", SocketAddr::new(*ip, 9))),
        );
        let poke_refs: Vec<&str> = poke_args.iter().map(String::as_str).collect();
        let out = run(
            "bait: root self-check from the outer netns",
            &mut command(&self.in_outer(&h.probe(&poke_refs))),
            SETUP_TIMEOUT,
        );
        assert!(
            out.status.success() && out.stdout.contains(&format!("tcp {check} connected")),
            "the bait topology's control server does not answer root\n{out}"
        );
        let call = self.control.next_tcp(SETUP_TIMEOUT);
        assert_eq!(
            call.peer.ip(),
            IpAddr::V4(OUTER_V4),
            "the bait topology routes oddly"
        );
        // The datagrams leave in parallel threads: they may be reported in any order.
        let missing = RefCell::new(
            probes
                .iter()
                .map(|ip| format!("-> {}", SocketAddr::new(*ip, 9)))
                .collect::<Vec<_>>(),
        );
        if !missing.borrow().is_empty() {
            self.sniffer.expect_line(
                "the sniffer's report of every self-check datagram",
                SETUP_TIMEOUT,
                |l| {
                    missing
                        .borrow_mut()
                        .retain(|want| !l.contains(want.as_str()));
                    missing.borrow().is_empty()
                },
            );
        }
    }

    /// Runs `ip ARGS...` as root in the outer namespace (e.g. to give it another address).
    pub fn ip_outer(&self, args: &[&str]) {
        ip_in(&self.outer.pid().to_string(), args);
    }

    /// Runs `ip ARGS...` as root in the bait namespace (e.g. a route back to a new address).
    pub fn ip_bait(&self, args: &[&str]) {
        ip_in(&self.sniffer.pid().to_string(), args);
    }

    /// The next connection the control server accepted (on any control or barrier port),
    /// as the control server saw it.
    pub fn next_control_call(&mut self, timeout: Duration) -> SocketAddr {
        self.control.next_tcp(timeout).peer
    }

    /// argv that runs `argv` in the outer namespace (as root; wrap it with setpriv after).
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

    /// The control address for barrier `n` (< BARRIERS): the sandbox connects here last.
    pub fn barrier(n: u16) -> SocketAddr {
        assert!(n < BARRIERS, "only {BARRIERS} barriers");
        SocketAddr::from((BAIT_V4, CHECK_PORT + 1 + n))
    }

    /// Waits for barrier `n`'s SYN and returns every watched packet the sniffer reported
    /// before it (the control traffic of earlier barriers left out).
    pub fn seen_before_barrier(&mut self, n: u16, timeout: Duration) -> Vec<String> {
        let barrier = format!("-> {} SYN", BaitNet::barrier(n));
        let control = format!("-> {BAIT_V4}:");
        let seen = RefCell::new(Vec::new());
        self.sniffer
            .expect_line(&format!("barrier {n} (`{barrier}`)"), timeout, |l| {
                if l.contains(&barrier) {
                    return true;
                }
                if !l.contains(&control) {
                    seen.borrow_mut().push(l.to_owned());
                }
                false
            });
        seen.into_inner()
    }
}

/// Runs `ip ARGS...` as root in the network namespace of process `pid`; panics if it fails.
fn ip_in(pid: &str, args: &[&str]) {
    let mut cmd = vec!["/usr/bin/nsenter", "-t", pid, "-n", "--", "/usr/sbin/ip"];
    cmd.extend(args);
    let out = run(cmd.join(" "), &mut command(&argv(&cmd)), SETUP_TIMEOUT);
    assert!(
        out.status.success(),
        "ip in the bait topology failed\n{out}"
    );
}
