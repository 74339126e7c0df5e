//! Real podman 5.4 (Debian trixie root, `rr_tests::trixie`) running containers on the pasta
//! under test, as the test user: `--network pasta` gets the host's addresses and routes, DNS
//! through the forward address, the host at `--map-guest-addr`, the host's loopback only with
//! `pasta:--map-gw`, the exit status passed through; `-p` TCP and UDP publishes serve a client
//! in another namespace and show its address; `podman rm -f` leaves no helper.
//! One test: the podman runs share a client namespace and must not overlap. The client sends
//! to the host's address on its own link (198.51.100.1): replies to published UDP ports leave
//! from the address the kernel picks for the client, not the one it was sent to.
//! RR_TEST_PASTA=/var/cache/rootless-run/trixie/usr/bin/pasta proves it against trixie's pasta.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::time::Duration;

use rr_tests::child::run;
use rr_tests::pasta::install;
use rr_tests::resolver::{Behaviour, FakeResolver, ANSWER_V4, ZONE};
use rr_tests::sandbox::Harness;
use rr_tests::servers::TcpEcho;
use rr_tests::trixie::Session;

/// podman's first run imports the image and sets up storage: generous on 2 busy cores.
const TIMEOUT: Duration = Duration::from_secs(300);

/// Waits for a file, 0.1 s at a time, at most 60 s.
const AWAIT: &str = "w() { i=0; while [ ! -e \"$1\" ]; do i=$((i+1)); \
    [ $i -lt 600 ] || { echo \"timeout waiting for $1\"; return 1; }; sleep 0.1; done; }\n";

#[test]
fn podman5_runs_containers_on_the_pasta_under_test() {
    let h = Harness::new();
    let pasta = install(&h);
    let resolver_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 63));
    let resolver = FakeResolver::start(resolver_ip, 53, Behaviour::Answer);
    let echo = TcpEcho::start();
    let host = TcpListener::bind("192.0.2.1:0").expect("bind on the sealed host's address");
    let host_port = host.local_addr().expect("bound").port();
    let (tcp_port, udp_port) = (rr_tests::ports::free_port(), rr_tests::ports::free_port());
    let lo = echo.port();
    let session = Session::new(&h, &pasta, &resolver_ip.to_string());
    let inner = format!(
        "{AWAIT}tar -C /rr/img -c . | podman import -q - localhost/bb >/dev/null\n\
         podman run --rm --network pasta localhost/bb sh -c 'ip -o addr show; ip route; \
           ip -6 route; ip -o link show; cat /etc/resolv.conf /etc/hosts; \
           nslookup probe.{ZONE} 169.254.1.1; \
           /rr-probe poke tcp:169.254.1.2:{host_port} tcp:192.0.2.254:{lo}; exit 7' && rc=0 || rc=$?\n\
         echo \"status $rc\"\n\
         podman run --rm --network pasta:--map-gw localhost/bb /rr-probe poke tcp:192.0.2.254:{lo} | sed 's/^/map /'\n\
         podman run -d --name srv --network pasta -p {tcp_port}:8080 -p {udp_port}:8081/udp localhost/bb \
           sh -c 'sleep 600 | /rr-probe serve tcp:0.0.0.0:8080 udp:0.0.0.0:8081' >/dev/null\n\
         key=$(podman inspect srv --format '{{{{.NetworkSettings.SandboxKey}}}}')\n\
         helper() {{ grep -qsa -- \"[/]${{key#/}}\" /proc/[0-9]*/cmdline; }}\n\
         i=0; until podman logs srv 2>&1 | grep -q '^ready'; do i=$((i+1)); [ $i -lt 600 ]; sleep 0.1; done\n\
         touch /rr/ready; w /rr/go\n\
         podman logs srv 2>&1 | sed 's/^/srv /'\n\
         helper && echo 'helper running'\n\
         podman rm -f -t 0 srv >/dev/null\n\
         i=0; while helper && [ $i -lt 100 ]; do i=$((i+1)); sleep 0.1; done\n\
         helper && echo 'helper left' || echo 'helper gone'\n"
    );
    let during = format!(
        "{AWAIT}ip link add rrcl0 type veth peer name rrcl1\n\
         unshare --net sleep 600 & client=$!\n\
         w /proc/$client/ns/net; while [ \"$(readlink /proc/$client/ns/net)\" = \"$(readlink /proc/self/ns/net)\" ]; do sleep 0.1; done\n\
         ip link set rrcl1 netns $client\n\
         ip addr add 198.51.100.1/24 dev rrcl0; ip link set rrcl0 up\n\
         nsenter -t $client -n sh -c 'ip link set lo up; ip addr add 198.51.100.5/24 dev rrcl1; \
           ip link set rrcl1 up; ip route add default via 198.51.100.1'\n\
         w $S/ready\n\
         nsenter -t $client -n $PROBE tcp-echo 198.51.100.1:{tcp_port} 1000 | sed 's/^/client /' || true\n\
         nsenter -t $client -n $PROBE udp-echo 198.51.100.1:{udp_port} 1 | sed 's/^/client /' || true\n\
         touch $S/go; kill $client; ip link del rrcl0\n"
    );
    let probe = h.probe(&[]).remove(0);
    let out = run(
        "podman 5",
        &mut session.command(&h, &probe, &inner, &during),
        TIMEOUT,
    );
    let s = &out.stdout;
    let has = |needle: &str| assert!(s.contains(needle), "missing {needle:?}: {out:?}");
    has("session 0");
    has("ext0    inet 192.0.2.1/24");
    has("ext0    inet6 2001:db8::1/64");
    has("default via 192.0.2.254 dev ext0");
    has("default via 2001:db8::fe dev ext0");
    has("mtu 65520");
    has("nameserver 169.254.1.1");
    has("169.254.1.2\thost.containers.internal");
    has(&format!("Address: {ANSWER_V4}"));
    has(&format!("tcp 169.254.1.2:{host_port} connected"));
    let unmapped = format!("tcp 192.0.2.254:{lo} connected");
    assert!(
        !s.lines().any(|l| l == unmapped),
        "podman's --no-map-gw: the gateway is not the host: {out:?}"
    );
    has(&format!("map tcp 192.0.2.254:{lo} connected"));
    has("status 7");
    has("srv tcp ");
    has("from 198.51.100.5:");
    has("srv udp ");
    has("helper running");
    has("helper gone");
    assert!(
        !resolver.seen().is_empty(),
        "the forwarder relayed to the host's resolver"
    );
    drop(host);
}
