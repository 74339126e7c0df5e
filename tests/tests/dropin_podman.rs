//! podman 4 (Debian 12's) with containers.conf `network_cmd_path` set to the slirp4netns under
//! test (issue 11, item 6), rootless as the unprivileged test user inside the sealed netns,
//! running an image built here from busybox-static (`podman import`; no registry):
//! `podman run --network slirp4netns:port_handler=slirp4netns -p 127.0.0.1:H:80` serves a page
//! and a CGI script that names the caller, fetched from this namespace's 127.0.0.1. podman
//! starts BIN as `BIN --disable-host-loopback --mtu=65520 --enable-sandbox --enable-seccomp
//! --enable-ipv6 -c -e 3 -r 4 --api-socket ... --netns-type=path NETNS tap0` and adds the
//! forward through its API socket; when the container exits, conmon closes the exit fd and
//! nothing of BIN may be left. BIN (`dropin`) is our rr-slirp4netns, or `RR_TEST_SLIRP4NETNS`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use rr_tests::addrs::GATEWAY_V4;
use rr_tests::child::{Running, TIMEOUT};
use rr_tests::dropin::Slirp4netns;
use rr_tests::podman::{Podman, IMAGE, PAGE};
use rr_tests::ports;
use rr_tests::procs;
use rr_tests::sandbox::Harness;

/// The container's httpd port (privileged: root in the container's user namespace).
const GUEST_PORT: u16 = 80;
/// What the container prints once httpd listens (busybox httpd binds, then daemonizes).
const SERVING: &str = "serving";
/// Bound for the first `podman run` of a fresh storage: creating the rootless user namespace,
/// the vfs copy of the image and the runtime; a liveness bound for 2 busy cores.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound for one HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// `GET path` over HTTP/1.0 to `to`; returns the body (after the blank line).
fn http_get(to: SocketAddr, path: &str) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&to, HTTP_TIMEOUT).map_err(|e| format!("connect {to}: {e}"))?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(HTTP_TIMEOUT)))
        .map_err(|e| format!("set timeouts: {e}"))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .map_err(|e| format!("send the request: {e}"))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .map_err(|e| format!("read the reply: {e} (after {reply:?})"))?;
    // busybox httpd passes a CGI script's own bare-LF header end through.
    let (head, body) = [
        reply.find("\r\n\r\n").map(|i| (i, 4)),
        reply.find("\n\n").map(|i| (i, 2)),
    ]
    .into_iter()
    .flatten()
    .min()
    .map(|(i, len)| (&reply[..i], &reply[i + len..]))
    .ok_or_else(|| format!("no header end in {reply:?}"))?;
    if !head.starts_with("HTTP/1.") || !head.split_whitespace().nth(1).is_some_and(|c| c == "200") {
        return Err(format!("not a 200 reply: {reply:?}"));
    }
    Ok(body.to_owned())
}

#[test]
fn port_handler_slirp4netns_serves_a_container_on_host_loopback() {
    let h = Harness::new();
    let bin = Slirp4netns::install(&h);
    let podman = Podman::new(&h, &bin);
    podman.import_image();
    let context = format!("podman with network_cmd_path={}", bin.source().display());

    let port = ports::free_port();
    let publish = format!("127.0.0.1:{port}:{GUEST_PORT}");
    let serve = format!("httpd -p {GUEST_PORT} -h /www && echo {SERVING} && exec cat");
    let args = [
        "run",
        "--rm",
        "--interactive",
        "--network",
        "slirp4netns:port_handler=slirp4netns",
        "--publish",
        &publish,
        IMAGE,
        "sh",
        "-c",
        &serve,
    ];
    let mut container = Running::spawn(
        format!("podman {}", args.join(" ")),
        &mut podman.command(&args),
    );
    container.expect_line("the container's `serving`", RUN_TIMEOUT, |l| l == SERVING);

    // podman started the binary under test, not a slirp4netns of its own choosing.
    let started = procs::find(h.user().uid, bin.path());
    assert!(
        started
            .iter()
            .any(|p| p.cmdline.contains("--api-socket") && p.cmdline.ends_with(" tap0")),
        "{context}: no `{} ... --api-socket ... tap0` process runs: {started:?}\n{}",
        bin.path(),
        container.output_so_far()
    );

    let to = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
    let page = http_get(to, "/index.html").unwrap_or_else(|e| {
        panic!(
            "{context}: GET /index.html through -p {publish}: {e}\n{}",
            container.output_so_far()
        )
    });
    assert_eq!(page, PAGE, "{context}: the page through -p {publish}");
    let peer = http_get(to, "/cgi-bin/peer").unwrap_or_else(|e| {
        panic!(
            "{context}: GET /cgi-bin/peer through -p {publish}: {e}\n{}",
            container.output_so_far()
        )
    });
    // slirp4netns's forward shows a client on the host's loopback as the gateway; busybox
    // httpd listens on [::], so IPv4 callers appear IPv4-mapped.
    let remote = peer.trim().trim_start_matches("remote ");
    assert!(
        [
            GATEWAY_V4.to_string(),
            format!("::ffff:{GATEWAY_V4}"),
            format!("[::ffff:{GATEWAY_V4}]")
        ]
        .iter()
        .any(|g| g == remote),
        "{context}: a request from 127.0.0.1 through port_handler=slirp4netns must reach the \
         container from the gateway {GATEWAY_V4}, got {peer:?}"
    );

    container.close_stdin();
    let out = container.wait(RUN_TIMEOUT);
    assert_eq!(
        out.shell_status(),
        0,
        "{context}: the container or podman failed\n{out}"
    );
    if let Err(left) = procs::wait_gone(h.user().uid, bin.path(), TIMEOUT) {
        procs::kill_all(&left);
        panic!(
            "{context}: {} still runs after the container exited: {left:?}",
            bin.path()
        );
    }
}
