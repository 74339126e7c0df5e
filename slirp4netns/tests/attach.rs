//! rr-slirp4netns against real namespaces, as slirp4netns's clients use it: the test user
//! makes a sandbox (`unshare -Urn`, or a user namespace nested in one as bubblewrap does), then
//! runs the drop-in with the fds and flags rootlesskit, podman and bubblewrap users pass; the
//! test checks the ready byte, the tap's configuration, TCP from the sandbox to a server on the
//! sealed namespace's 127.0.0.1 through 10.0.2.2, a forward added on the API socket, and each
//! way a run ends (exit fd closed: 0; SIGTERM: killed by it; a failing child: its status).
//! Runs as root inside `scripts/sealed-netns` (RR_SEALED_NETNS=1, or every test fails with the
//! remedy); the binaries run as `rrtest` through setpriv, from a 0755 copy. Traffic goes only to
//! 127.0.0.1 and to the namespaces these tests create. No sleeps: every wait has a timeout.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use rr_tests::api_client;
use rr_tests::child::{run, Running, TIMEOUT};
use rr_tests::ports::free_port;
use rr_tests::preflight;
use rr_tests::sandbox::{argv, as_user_argv, built_dir, command, User};
use rr_tests::servers::TcpEcho;
use tempfile::TempDir;

/// Bytes sent through the gateway and echoed back.
const ECHO_BYTES: &str = "100000";

/// Serialises "make an fd inheritable, spawn, close our copy", so that no other test's child
/// inherits an fd meant for one rr-slirp4netns (a stray copy of an exit pipe's read end is
/// harmless, but one of a ready pipe's write end would hide its close).
static SPAWN_WITH_FDS: Mutex<()> = Mutex::new(());

/// The test user and copies of the binaries it can run.
struct Setup {
    user: User,
    dir: TempDir,
    slirp: String,
    probe: String,
}

impl Setup {
    fn new() -> Setup {
        let user = preflight::require().clone();
        let dir = tempfile::Builder::new()
            .prefix("rr-s4n-tests-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let slirp = copy(Path::new(env!("CARGO_BIN_EXE_rr-slirp4netns")), dir.path());
        let probe_src = built_dir().join("rr-probe");
        assert!(
            probe_src.is_file(),
            "{} is missing: run the tests with `scripts/test -p rr-slirp4netns` (it builds \
             the workspace first)",
            probe_src.display()
        );
        let probe = copy(&probe_src, dir.path());
        Setup {
            user,
            dir,
            slirp,
            probe,
        }
    }

    fn as_user(&self, args: &[String]) -> Command {
        command(&as_user_argv(&self.user, args))
    }

    /// A directory the test user may create the API socket in.
    fn socket_path(&self) -> PathBuf {
        api_client::user_dir(self.dir.path(), "run", &self.user).join("api.sock")
    }

    /// `unshare -Urn [unshare -U] rr-probe serve tcp:0.0.0.0:80`: a sandbox holding an echo
    /// server, up once it printed `ready`. `nested` adds bubblewrap's second user namespace.
    fn sandbox(&self, nested: bool) -> Running {
        let mut args = argv(&["/usr/bin/unshare", "-Urn"]);
        if nested {
            args.extend(argv(&["/usr/bin/unshare", "-U"]));
        }
        args.extend(argv(&[&self.probe, "serve", "tcp:0.0.0.0:80"]));
        let mut sandbox = Running::spawn("sandbox", &mut self.as_user(&args));
        sandbox.expect_line("ready", TIMEOUT, |l| l == "ready");
        sandbox
    }

    /// argv running `cmd` in `pid`'s user and network namespaces, as the test user.
    fn inside(&self, pid: i32, cmd: &[&str]) -> Vec<String> {
        let mut v = argv(&[
            "/usr/bin/nsenter",
            "--preserve-credentials",
            "-U",
            "-n",
            "-t",
        ]);
        v.push(pid.to_string());
        v.extend(argv(cmd));
        v
    }

    /// Runs `cmd` inside `pid`'s namespaces and returns its stdout; panics unless it exits 0.
    fn run_inside(&self, pid: i32, cmd: &[&str]) -> String {
        let out = run(
            cmd.join(" "),
            &mut self.as_user(&self.inside(pid, cmd)),
            TIMEOUT,
        );
        assert!(out.status.success(), "{out}");
        out.stdout
    }
}

/// Copies an executable with `cp` (see rr_tests::sandbox on ETXTBSY) and makes it 0755.
fn copy(src: &Path, dir: &Path) -> String {
    let dst = dir.join(src.file_name().expect("a binary has a file name"));
    let status = Command::new("/bin/cp")
        .arg("--")
        .arg(src)
        .arg(&dst)
        .status()
        .unwrap_or_else(|e| panic!("cp {}: {e}", src.display()));
    assert!(status.success(), "cp {} failed", src.display());
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).unwrap();
    dst.to_str().expect("temp paths are UTF-8").to_owned()
}

/// A pipe whose `child_end` (read or write) the spawned rr-slirp4netns inherits.
struct Pipe {
    ours: OwnedFd,
    theirs: OwnedFd,
}

fn pipe_for_child(child_reads: bool) -> Pipe {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    let (ours, theirs) = if child_reads { (w, r) } else { (r, w) };
    Pipe { ours, theirs }
}

/// Spawns rr-slirp4netns with `args`, where `{ready}` and `{exit}` stand for the numbers of
/// the inherited pipe ends; returns it with our ends of (ready, exit).
fn spawn_slirp(s: &Setup, args: &[String], with_exit: bool) -> (Running, OwnedFd, Option<OwnedFd>) {
    let _guard = SPAWN_WITH_FDS.lock().unwrap_or_else(|e| e.into_inner());
    let ready = pipe_for_child(false);
    let exit = with_exit.then(|| pipe_for_child(true));
    let mut full = vec![s.slirp.clone()];
    for a in args {
        let a = a.replace("{ready}", &ready.theirs.as_raw_fd().to_string());
        let a = match &exit {
            Some(e) => a.replace("{exit}", &e.theirs.as_raw_fd().to_string()),
            None => a,
        };
        full.push(a);
    }
    for p in std::iter::once(&ready).chain(exit.as_ref()) {
        fcntl(p.theirs.as_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    }
    let running = Running::spawn("rr-slirp4netns", &mut s.as_user(&full));
    // Dropping `theirs` closes our copies; only the child holds them now.
    (running, ready.ours, exit.map(|e| e.ours))
}

/// Reads `fd` until EOF within `TIMEOUT`: `Ok` with the bytes, or `Err` with those read so far.
fn read_to_eof(fd: impl AsFd) -> Result<Vec<u8>, Vec<u8>> {
    let deadline = Instant::now() + TIMEOUT;
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis().min(60_000)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let n = poll(&mut fds, PollTimeout::from(ms)).unwrap();
        if n == 0 && left.is_zero() {
            return Err(got);
        }
        if n == 0 {
            continue;
        }
        let mut buf = [0u8; 8];
        match nix::unistd::read(fd.as_fd(), &mut buf).unwrap() {
            0 => return Ok(got),
            k => got.extend_from_slice(&buf[..k]),
        }
    }
}

/// Waits for the ready byte, then for the fd's close; panics with the output on timeout.
fn wait_ready(slirp: &Running, ready: &OwnedFd) {
    let got = read_to_eof(ready).unwrap_or_else(|got| {
        panic!(
            "no ready byte and close within {TIMEOUT:?} (got {got:?})\n{}",
            slirp.output_so_far()
        )
    });
    assert_eq!(
        got,
        b"1",
        "the ready fd carries exactly the byte '1'\n{}",
        slirp.output_so_far()
    );
}

/// Connects from inside `pid` to 10.0.2.2 on `echo`'s port and checks the host saw it all,
/// coming from its own loopback.
fn echo_through_gateway(s: &Setup, pid: i32, echo: &TcpEcho) {
    let target = format!("10.0.2.2:{}", echo.port());
    let out = s.run_inside(pid, &[&s.probe, "tcp-echo", &target, ECHO_BYTES]);
    let record = echo.next_record(TIMEOUT);
    assert_eq!(
        record.bytes.to_string(),
        ECHO_BYTES,
        "{record:?}; probe said {out}"
    );
    assert_eq!(record.error, None);
    assert_eq!(
        record.peer.ip(),
        std::net::IpAddr::V4(Ipv4Addr::LOCALHOST),
        "the host sees the sandbox's connection to the gateway from its loopback"
    );
}

fn is_socket(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// A forward added on the API socket reaches the sandbox's echo server from the host.
fn forward_through_api(sock: &Path, sandbox: &mut Running) {
    let port = free_port();
    let body = api_client::add_body("tcp", "127.0.0.1", port, "", 80);
    assert_eq!(api_client::call(sock, &body), api_client::added(1));
    let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(b"through the API").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut back = String::new();
    c.read_to_string(&mut back).unwrap();
    assert_eq!(back, "through the API");
    // The sandbox sees a client on the host's loopback as the gateway.
    let line = sandbox.expect_line("the forwarded connection", TIMEOUT, |l| {
        l.starts_with("tcp 10.0.2.100:80 from ")
    });
    assert!(
        line.starts_with("tcp 10.0.2.100:80 from 10.0.2.2:"),
        "{line}"
    );
}

#[test]
fn configure_by_pid_reaches_host_loopback_and_exits_0_when_exit_fd_closes() {
    let s = Setup::new();
    let echo = TcpEcho::start();
    let mut sandbox = s.sandbox(false);
    let pid = sandbox.pid();
    let sock = s.socket_path();
    let args = argv(&[
        "--configure",
        "--mtu",
        "65520",
        "-r",
        "{ready}",
        "-e",
        "{exit}",
        "--api-socket",
        sock.to_str().unwrap(),
        &pid.to_string(),
        "tap0",
    ]);
    let (mut slirp, ready, exit) = spawn_slirp(&s, &args, true);
    let exit = exit.expect("asked for an exit pipe");
    wait_ready(&slirp, &ready);
    // The banner is flushed before the ready byte.
    let line = slirp.expect_line("the API Socket line", TIMEOUT, |l| l.starts_with("* API"));
    assert_eq!(line, format!("* API Socket:      {}", sock.display()));
    assert!(is_socket(&sock), "the API socket exists once ready");
    assert_eq!(
        api_client::call(&sock, r#"{"execute":"list_hostfwd"}"#),
        r#"{"entries":[]}"#
    );

    // Data on the exit fd does not end the run; only its close does.
    nix::unistd::write(&exit, b"x").unwrap();

    let addr = s.run_inside(
        pid,
        &["/usr/sbin/ip", "-o", "-4", "addr", "show", "dev", "tap0"],
    );
    assert!(addr.contains("inet 10.0.2.100/24 "), "{addr}");
    let link = s.run_inside(pid, &["/usr/sbin/ip", "-o", "link", "show", "dev", "tap0"]);
    assert!(
        link.contains(" mtu 65520 ") && link.contains(",UP"),
        "{link}"
    );
    let lo = s.run_inside(pid, &["/usr/sbin/ip", "-o", "link", "show", "dev", "lo"]);
    assert!(lo.contains(",UP"), "{lo}");
    let route = s.run_inside(pid, &["/usr/sbin/ip", "-4", "route", "show", "default"]);
    assert!(
        route.starts_with("default via 10.0.2.2 dev tap0"),
        "{route}"
    );

    echo_through_gateway(&s, pid, &echo);
    forward_through_api(&sock, &mut sandbox);

    drop(exit);
    let out = slirp.wait(TIMEOUT);
    assert_eq!(out.status.code(), Some(0), "{out}");
    assert!(!sock.exists(), "the API socket is removed on exit\n{out}");
    let sent = out
        .stderr_lines()
        .into_iter()
        .find(|l| l.starts_with("sent tapfd="));
    assert!(
        sent.is_some_and(|l| l.ends_with(" for tap0")),
        "the child's line\n{out}"
    );
    assert!(
        out.stderr_lines()
            .iter()
            .any(|l| l.starts_with("received tapfd=")),
        "{out}"
    );
    assert!(
        out.stdout
            .starts_with("Starting slirp\n* MTU:             65520\n"),
        "{out}"
    );
    sandbox.close_stdin();
    sandbox.wait(TIMEOUT);
}

#[test]
fn attaches_to_a_persistent_tap_by_path_and_dies_of_sigterm() {
    // rootlesskit: it creates tap0 itself, configures the sandbox itself, and passes
    // --userns-path and --netns-type=path with --detach-netns; no -c, no -e.
    let s = Setup::new();
    let echo = TcpEcho::start();
    let sandbox = s.sandbox(false);
    let pid = sandbox.pid();
    s.run_inside(
        pid,
        &[
            "/usr/sbin/ip",
            "tuntap",
            "add",
            "name",
            "tap0",
            "mode",
            "tap",
        ],
    );
    s.run_inside(pid, &["/usr/sbin/ip", "link", "set", "tap0", "up"]);
    let sock = s.socket_path();
    let userns = format!("--userns-path=/proc/{pid}/ns/user");
    let netns = format!("/proc/{pid}/ns/net");
    let args = argv(&[
        "--mtu",
        "65520",
        "-r",
        "{ready}",
        "--api-socket",
        sock.to_str().unwrap(),
        &userns,
        "--netns-type=path",
        &netns,
        "tap0",
    ]);
    let (slirp, ready, _) = spawn_slirp(&s, &args, false);
    wait_ready(&slirp, &ready);
    s.run_inside(
        pid,
        &[
            "/bin/sh",
            "-c",
            "ip link set tap0 mtu 65520 && ip addr add 10.0.2.100/24 dev tap0 && \
             ip route add default via 10.0.2.2",
        ],
    );
    echo_through_gateway(&s, pid, &echo);
    // Configured or not by us, the namespace's TCP ends at our stack: no pacing over the tap.
    let cc = s.run_inside(
        pid,
        &["/bin/cat", "/proc/sys/net/ipv4/tcp_congestion_control"],
    );
    assert_eq!(cc.trim(), "reno", "the namespace's congestion control");

    slirp.signal(Signal::SIGTERM);
    let out = slirp.wait(TIMEOUT);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(Signal::SIGTERM as i32), "{out}");
    assert!(
        !sock.exists(),
        "SIGTERM removes the API socket first\n{out}"
    );
    // It attached to the client's persistent device, which outlives it.
    let link = s.run_inside(pid, &["/usr/sbin/ip", "-o", "link", "show", "dev", "tap0"]);
    assert!(link.contains("tap0"), "{link}");
}

#[test]
fn joins_a_user_namespace_nested_in_the_netns_owner_as_bubblewrap_makes() {
    // The sandboxed process sits in a second user namespace made after its network namespace
    // (bubblewrap's --dev does this); slirp4netns 1.2 fails here with EPERM (slirp4netns#311).
    // nsenter -U -n would fail the same way, so the sandbox connects by itself once told the
    // port on stdin.
    let s = Setup::new();
    let echo = TcpEcho::start();
    let script = format!(
        "echo ready; read port; exec {} tcp-echo 10.0.2.2:$port {ECHO_BYTES}",
        s.probe
    );
    let args = argv(&[
        "/usr/bin/unshare",
        "-Urn",
        "/usr/bin/unshare",
        "-U",
        "/bin/sh",
        "-c",
        &script,
    ]);
    let mut sandbox = Running::spawn("nested sandbox", &mut s.as_user(&args));
    sandbox.expect_line("ready", TIMEOUT, |l| l == "ready");
    let args = argv(&["-c", "-r", "{ready}", &sandbox.pid().to_string(), "tap0"]);
    let (slirp, ready, _) = spawn_slirp(&s, &args, false);
    wait_ready(&slirp, &ready);
    sandbox.write_stdin(format!("{}\n", echo.port()).as_bytes());
    let out = sandbox.wait(TIMEOUT);
    assert!(out.status.success(), "{out}\n{}", slirp.output_so_far());
    let record = echo.next_record(TIMEOUT);
    assert_eq!(record.bytes.to_string(), ECHO_BYTES, "{record:?}");
    assert_eq!(record.error, None);
}

#[test]
fn a_failing_child_passes_its_status_on() {
    let s = Setup::new();
    let sandbox = s.sandbox(false);
    // "lo" exists and is no tap: TUNSETIFF fails in the child.
    let args = argv(&["-r", "{ready}", &sandbox.pid().to_string(), "lo"]);
    let (slirp, ready, _) = spawn_slirp(&s, &args, false);
    let out = slirp.wait(TIMEOUT);
    assert_eq!(out.status.code(), Some(1), "{out}");
    let lines = out.stderr_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("cannot create tap device lo")),
        "{out}"
    );
    assert_eq!(
        lines.last().copied(),
        Some("rr-slirp4netns: child failed(1)"),
        "{out}"
    );
    // Never ready: the fd was closed without the byte.
    let mut buf = [0u8; 1];
    assert_eq!(nix::unistd::read(&ready, &mut buf).unwrap(), 0);
    assert!(
        out.stdout.is_empty(),
        "no banner after a failed child: {out}"
    );

    let gone = format!("{}", i32::MAX);
    let out = run(
        "rr-slirp4netns on a missing pid",
        &mut s.as_user(&[s.slirp.clone(), gone.clone(), "tap0".into()]),
        TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(
        out.stderr
            .contains(&format!("cannot open /proc/{gone}/ns/net")),
        "{out}"
    );
}

#[test]
fn standard_streams_serve_as_exit_and_ready_fds() {
    // slirp4netns takes any fd >= 0 (main.c): `-e 0` ends the run when whoever feeds stdin
    // closes it, `-r 1` says "ready" on stdout and closes it. Run `-c -r 1 -e 0 PID tap0` with
    // both streams piped to us and stderr to a file.
    let s = Setup::new();
    let sandbox = s.sandbox(false);
    let pid = sandbox.pid();
    let log = s.dir.path().join("stdio-fds.stderr");
    let full = [s.slirp.clone()]
        .into_iter()
        .chain(argv(&[
            "-c",
            "-r",
            "1",
            "-e",
            "0",
            &pid.to_string(),
            "tap0",
        ]))
        .collect::<Vec<_>>();
    let mut slirp = {
        let _guard = SPAWN_WITH_FDS.lock().unwrap_or_else(|e| e.into_inner());
        s.as_user(&full)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap()
    };
    let stderr = || fs::read_to_string(&log).unwrap_or_default();
    let stdin = slirp.stdin.take().expect("stdin was piped");
    let stdout = slirp.stdout.take().expect("stdout was piped");
    let got = read_to_eof(&stdout);
    if got.is_err() {
        let _ = slirp.kill();
    }
    // Exactly the byte, then EOF while the run goes on: nothing else (the banner) on stdout.
    assert_eq!(got.as_deref(), Ok(&b"1"[..]), "stderr:\n{}", stderr());
    assert_eq!(
        slirp.try_wait().unwrap(),
        None,
        "still running\n{}",
        stderr()
    );
    let addr = s.run_inside(
        pid,
        &["/usr/sbin/ip", "-o", "-4", "addr", "show", "dev", "tap0"],
    );
    assert!(addr.contains("inet 10.0.2.100/24 "), "{addr}");

    let pid = slirp.id();
    let (tx, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(slirp.wait());
    });
    drop(stdin);
    let status = match exited.recv_timeout(TIMEOUT) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
            panic!("no exit within {TIMEOUT:?} of closing stdin\n{}", stderr());
        }
    };
    assert_eq!(status.code(), Some(0), "{}", stderr());
}

#[test]
fn enable_ipv6_advertises_a_router_the_sandbox_configures_itself_from() {
    // rootlesskit --ipv6 passes --enable-ipv6 and configures only IPv4 in its child: the
    // sandbox's kernel takes its IPv6 address (SLAAC in fd00::/64) and default route (via
    // fe80::2) from router advertisements, as libslirp sends them.
    let s = Setup::new();
    let server = std::net::TcpListener::bind((rr_tests::addrs::HOST_V6, 0))
        .unwrap_or_else(|e| panic!("bind [{}]:0: {e}", rr_tests::addrs::HOST_V6));
    let port = server.local_addr().unwrap().port();
    let sandbox = s.sandbox(false);
    let pid = sandbox.pid();
    let args = argv(&["--enable-ipv6", "-r", "{ready}", &pid.to_string(), "tap0"]);
    let (slirp, ready, _) = spawn_slirp(&s, &args, false);
    wait_ready(&slirp, &ready);
    // Waits on the kernel's own notification of the address, once its duplicate address
    // detection is over (no longer tentative): the event, not a poll.
    let script = "exec 3< <(exec ip -6 monitor address); mon=$!; ip link set tap0 up; \
                  timeout 30 grep -m1 -P 'tap0 .*inet6 fd00::(?!.*tentative)' <&3; \
                  rc=$?; kill $mon; exit $rc";
    let line = s.run_inside(pid, &["/bin/bash", "-c", script]);
    assert!(line.contains("/64 scope global"), "{line}");
    let route = s.run_inside(pid, &["/usr/sbin/ip", "-6", "route", "show", "default"]);
    assert!(
        route.starts_with("default via fe80::2 dev tap0 proto ra"),
        "{route}\n{}",
        slirp.output_so_far()
    );
    // Through the advertised router (the neighbour entry of fe80::2 included) to an address
    // outside the virtual network: this namespace's own 2001:db8::1.
    let target = format!("[{}]:{port}", rr_tests::addrs::HOST_V6);
    let out = s.run_inside(pid, &[&s.probe, "connect", &target]);
    assert_eq!(out.trim(), "connected");
    let (_, peer) = server.accept().unwrap();
    assert!(peer.is_ipv6(), "{peer}");
}
