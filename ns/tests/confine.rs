//! `rr_ns::confine` against the real kernel. Every test runs its confined part in a child: this
//! binary started again with `--child NAME [ARG]`, so the test process itself is never
//! confined; the parent checks how the child ended (exit code or signal) and what it printed.
//! Its own `main` (harness = false) because `sandbox` needs a single-threaded process and
//! libtest runs each test on a thread of its own; it prints libtest's lines, takes name
//! filters (`--exact`, `--skip`, `--list` too) and exits 101 on a failure.
//!
//! Children that call `sandbox` run inside `unshare -Ur` (root of a fresh user namespace, which
//! is what `sandbox` needs), as the unprivileged user rrtest when the tests run as root (as
//! `scripts/test` runs them), otherwise as the calling user. Seccomp children run as whoever
//! runs the tests. Traffic stays on 127.0.0.1. No sleeps: every wait has a deadline, and a child
//! past it is killed and the test fails.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag};
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::Signal;
use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType};
use nix::unistd::Pid;
use rr_ns::confine::{
    remove_on_exit, sandbox, seccomp, ConfineError, SandboxOptions, SeccompOptions, Violation,
};

/// The unprivileged user `scripts/setup` creates for the tests.
const TEST_USER: &str = "rrtest";
/// How long a child may take; debug builds on a busy 2-core machine are slow.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);
/// How long a single step inside a child may block (a read, an accept, an epoll wait).
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Name of the socket file the remover tests bind.
const SOCKET_NAME: &str = "api.sock";

type Check = Result<(), String>;

// ---------------------------------------------------------------------------------------------
// The tests: (name, how the child runs, the child's body, the parent's check).

/// How a child is started.
#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    /// As the user running the tests, no namespace.
    Direct,
    /// Inside `unshare -Ur`, as rrtest when run as root.
    UserNs,
    /// As rrtest (or the calling user when not root), no namespace: no privilege at all.
    Unprivileged,
    /// As real root (only when the tests run as root).
    RealRoot,
}

struct Case {
    name: &'static str,
    how: How,
    child: fn(Option<&str>) -> Check,
    parent: fn(&Case, &Env) -> Check,
}

fn cases() -> Vec<Case> {
    let killed = |name, child| Case {
        name,
        how: How::Direct,
        child,
        parent: expect_sigsys,
    };
    vec![
        killed("seccomp_kills_execve_with_sigsys", child_execve),
        killed("seccomp_kills_ptrace", child_ptrace),
        killed("seccomp_kills_mount", child_mount),
        killed("seccomp_kills_unshare", child_unshare),
        killed("seccomp_kills_setns", child_setns),
        killed("seccomp_kills_chroot", child_chroot),
        killed("seccomp_kills_spawning_a_process", child_spawn),
        killed("seccomp_kills_a_netlink_socket", child_netlink),
        killed("seccomp_kills_a_raw_socket", child_raw_socket),
        killed("seccomp_kills_kill_of_another_process", child_kill),
        killed("seccomp_kills_prctl_other_than_set_name", child_prctl),
        killed("seccomp_kills_fcntl_outside_its_list", child_fcntl),
        killed("seccomp_kills_startup_only_eventfd_creation", child_eventfd),
        killed(
            "seccomp_covers_threads_started_before_it",
            child_thread_execve,
        ),
        Case {
            name: "seccomp_allows_the_stacks_normal_work",
            how: How::Direct,
            child: child_normal_work,
            parent: expect_done,
        },
        Case {
            name: "seccomp_log_mode_lets_a_forbidden_call_through",
            how: How::Direct,
            child: child_log_mode,
            parent: expect_done,
        },
        Case {
            name: "sandbox_leaves_an_empty_read_only_root",
            how: How::UserNs,
            child: child_sandbox_view,
            parent: expect_done,
        },
        Case {
            name: "sandbox_drops_every_capability_and_sets_no_new_privs",
            how: How::UserNs,
            child: child_sandbox_caps,
            parent: expect_done,
        },
        Case {
            name: "sandbox_keeps_net_bind_service_only_when_asked",
            how: How::UserNs,
            child: child_sandbox_keep_bind,
            parent: expect_done,
        },
        Case {
            name: "sandbox_keeps_sockets_working",
            how: How::UserNs,
            child: child_sandbox_sockets,
            parent: expect_done,
        },
        Case {
            name: "sandbox_refuses_a_process_with_threads_and_changes_nothing",
            how: How::UserNs,
            child: child_sandbox_threads,
            parent: expect_done,
        },
        Case {
            name: "sandbox_without_privilege_fails_at_unshare",
            how: How::Unprivileged,
            child: child_sandbox_unprivileged,
            parent: expect_done,
        },
        Case {
            name: "sandbox_as_real_root_drops_every_capability",
            how: How::RealRoot,
            child: child_sandbox_caps,
            parent: expect_done,
        },
        Case {
            name: "confined_in_order_the_api_socket_serves_and_is_removed_after_exit",
            how: How::UserNs,
            child: child_full_order,
            parent: parent_full_order,
        },
        Case {
            name: "remove_on_exit_leaves_a_file_that_was_replaced",
            how: How::UserNs,
            child: child_remover_only,
            parent: parent_replaced,
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Children. Each prints its progress on stdout (the parent checks the lines) and returns an
// error message on failure (exit 1). A child that must die prints what happened if it lives
// (exit 3).

/// Prints a progress line at once (stdout is a pipe; println! flushes at the newline).
fn say(line: &str) {
    println!("{line}");
}

fn confine_default() -> Check {
    confine_with(&SeccompOptions::default())
}

/// Installs the filters and checks with the kernel that all three are in place.
fn confine_with(opts: &SeccompOptions) -> Check {
    let status = Status::open()?;
    seccomp(opts).map_err(|e| format!("seccomp: {}", chain(&e)))?;
    let status = status.read()?;
    // Seccomp 2 is filter mode (proc(5)); three filters: ENOENT, ENOSYS and the allowlist.
    for (field, want) in [
        ("Seccomp", "2"),
        ("Seccomp_filters", "3"),
        ("NoNewPrivs", "1"),
    ] {
        let got = status.field(field)?;
        if got != want {
            return Err(format!("{field} is {got} after seccomp(), want {want}"));
        }
    }
    say("installed");
    Ok(())
}

fn survived<T: std::fmt::Debug>(what: &str, result: T) -> Check {
    say(&format!("survived {what}: {result:?}"));
    std::process::exit(3);
}

fn child_execve(_: Option<&str>) -> Check {
    confine_default()?;
    let r = nix::unistd::execv(c"/bin/true", &[c"/bin/true"]);
    survived("execve", r)
}

fn child_ptrace(_: Option<&str>) -> Check {
    confine_default()?;
    survived("ptrace", nix::sys::ptrace::traceme())
}

fn child_mount(_: Option<&str>) -> Check {
    confine_default()?;
    let r = nix::mount::mount(
        Some("tmpfs"),
        "/tmp",
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    );
    survived("mount", r)
}

fn child_unshare(_: Option<&str>) -> Check {
    confine_default()?;
    survived("unshare", nix::sched::unshare(CloneFlags::CLONE_NEWUSER))
}

fn child_setns(_: Option<&str>) -> Check {
    let ns = File::open("/proc/self/ns/net").map_err(|e| format!("open netns: {e}"))?;
    confine_default()?;
    survived("setns", nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET))
}

fn child_chroot(_: Option<&str>) -> Check {
    confine_default()?;
    survived("chroot", nix::unistd::chroot("/"))
}

fn child_spawn(_: Option<&str>) -> Check {
    confine_default()?;
    survived("spawn", Command::new("/bin/true").status())
}

fn child_netlink(_: Option<&str>) -> Check {
    confine_default()?;
    let r = nix::sys::socket::socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    );
    survived("netlink socket", r)
}

fn child_raw_socket(_: Option<&str>) -> Check {
    confine_default()?;
    let r = nix::sys::socket::socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Icmp,
    );
    survived("raw socket", r)
}

fn child_kill(_: Option<&str>) -> Check {
    confine_default()?;
    // Signal 0 only checks; the call itself is what the filter refuses.
    survived(
        "kill",
        nix::sys::signal::kill(nix::unistd::getppid(), None::<Signal>),
    )
}

fn child_prctl(_: Option<&str>) -> Check {
    confine_default()?;
    survived("prctl", nix::sys::prctl::set_dumpable(false))
}

fn child_fcntl(_: Option<&str>) -> Check {
    let (r, _w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))?;
    confine_default()?;
    survived(
        "fcntl F_SETPIPE_SZ",
        nix::fcntl::fcntl(&r, FcntlArg::F_SETPIPE_SZ(1 << 16)),
    )
}

fn child_eventfd(_: Option<&str>) -> Check {
    confine_default()?;
    survived("eventfd", EventFd::new().map(drop))
}

fn child_thread_execve(_: Option<&str>) -> Check {
    let (go, wait) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("before".into())
        .spawn(move || {
            if wait.recv().is_ok() {
                let r = nix::unistd::execv(c"/bin/true", &[c"/bin/true"]);
                say(&format!("survived execve in the thread: {r:?}"));
            }
        })
        .map_err(|e| format!("spawn: {e}"))?;
    confine_default()?;
    go.send(()).map_err(|e| format!("send: {e}"))?;
    let _ = thread.join();
    survived("the thread's execve", ())
}

fn child_log_mode(_: Option<&str>) -> Check {
    confine_with(&SeccompOptions {
        violation: Violation::Log,
    })?;
    EventFd::new().map_err(|e| format!("eventfd in log mode: {e}"))?;
    say("done");
    Ok(())
}

/// What the stack does after start-up, under the filter: TCP and UDP on loopback, a listener
/// made at run time, epoll, eventfd, pipe, a named thread using a HashMap, fd flags, no files.
fn child_normal_work(_: Option<&str>) -> Check {
    // Start-up, before the filter, as the stack does it.
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| format!("epoll: {e}"))?;
    let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .map_err(|e| format!("eventfd: {e}"))?;
    let (pipe_r, pipe_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))?;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("listen: {e}"))?;
    confine_default()?;

    tcp_echo(&listener)?;
    say("tcp echo");
    let late = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("late listener: {e}"))?;
    tcp_echo(&late)?;
    say("listener made after the filter");
    udp_echo()?;
    say("udp echo");
    // Ping sockets may be refused by net.ipv4.ping_group_range (EACCES), never killed.
    let ping = nix::sys::socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::Icmp,
    );
    match ping {
        Ok(_) | Err(Errno::EACCES) => {}
        Err(e) => return Err(format!("ping socket: {e}")),
    }
    nix::sys::socket::socket(
        AddressFamily::Inet6,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("IPv6 UDP socket: {e}"))?;
    say("ping and IPv6 sockets");

    epoll
        .add(&efd, EpollEvent::new(EpollFlags::EPOLLIN, 7))
        .map_err(|e| format!("epoll_ctl: {e}"))?;
    efd.write(1).map_err(|e| format!("eventfd write: {e}"))?;
    let mut events = [EpollEvent::empty(); 4];
    let timeout = u16::try_from(STEP_TIMEOUT.as_millis()).unwrap_or(u16::MAX);
    let n = epoll
        .wait(&mut events, timeout)
        .map_err(|e| format!("epoll_wait: {e}"))?;
    if n != 1 || events[0].data() != 7 {
        return Err(format!("epoll_wait: {n} events, first {:?}", events[0]));
    }
    let value = efd.read().map_err(|e| format!("eventfd read: {e}"))?;
    if value != 1 {
        return Err(format!("eventfd read {value}"));
    }
    say("epoll and eventfd");

    nix::unistd::write(&pipe_w, b"x").map_err(|e| format!("pipe write: {e}"))?;
    let mut byte = [0u8; 1];
    nix::unistd::read(&pipe_r, &mut byte).map_err(|e| format!("pipe read: {e}"))?;
    if byte != *b"x" {
        return Err(format!("pipe carried {byte:?}"));
    }
    say("pipe");

    let thread = std::thread::Builder::new()
        .name("confined-thread".into())
        .spawn(|| {
            let mut seen = HashMap::new();
            seen.insert("key", 1);
            seen.len()
        })
        .map_err(|e| format!("thread spawn: {e}"))?;
    match thread.join() {
        Ok(1) => say("thread spawned and joined"),
        other => return Err(format!("thread returned {other:?}")),
    }
    let cpus = std::thread::available_parallelism().map_err(|e| format!("cpus: {e}"))?;
    say(&format!("{cpus} cpus"));

    for path in ["/etc/passwd", "/"] {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return Err(format!("stat {path}: {other:?}, want NotFound")),
        }
        match File::open(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return Err(format!("open {path}: {other:?}, want NotFound")),
        }
    }
    say("no filesystem");
    say("done");
    Ok(())
}

/// Connect, accept, data both ways, half-close, and the socket calls the stack makes on flows.
fn tcp_echo(listener: &TcpListener) -> Check {
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?;
    let mut client =
        TcpStream::connect_timeout(&addr, STEP_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    let (mut server, peer) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let mine = client
        .local_addr()
        .map_err(|e| format!("getsockname: {e}"))?;
    if peer != mine {
        return Err(format!("accepted {peer}, connected from {mine}"));
    }
    for s in [&client, &server] {
        s.set_read_timeout(Some(STEP_TIMEOUT))
            .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
        s.set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    }
    client
        .write_all(b"ping")
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = [0u8; 4];
    server
        .read_exact(&mut buf)
        .map_err(|e| format!("read: {e}"))?;
    server
        .write_all(b"pong")
        .map_err(|e| format!("write back: {e}"))?;
    client
        .read_exact(&mut buf)
        .map_err(|e| format!("read back: {e}"))?;
    if buf != *b"pong" {
        return Err(format!("echo carried {buf:?}"));
    }
    client
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    let n = server
        .read(&mut buf)
        .map_err(|e| format!("read FIN: {e}"))?;
    if n != 0 {
        return Err(format!("{n} bytes after the FIN"));
    }
    let copy = server.try_clone().map_err(|e| format!("dup: {e}"))?;
    copy.set_nonblocking(true)
        .map_err(|e| format!("FIONBIO: {e}"))?;
    if let Some(e) = copy.take_error().map_err(|e| format!("SO_ERROR: {e}"))? {
        return Err(format!("socket error {e}"));
    }
    Ok(())
}

fn udp_echo() -> Check {
    let a = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("udp bind: {e}"))?;
    let b = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("udp bind: {e}"))?;
    b.set_read_timeout(Some(STEP_TIMEOUT))
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    let to = b.local_addr().map_err(|e| format!("local_addr: {e}"))?;
    a.send_to(b"datagram", to)
        .map_err(|e| format!("send_to: {e}"))?;
    let mut buf = [0u8; 16];
    let (n, from) = b
        .recv_from(&mut buf)
        .map_err(|e| format!("recv_from: {e}"))?;
    let sent_from = a.local_addr().map_err(|e| format!("local_addr: {e}"))?;
    if buf.get(..n) != Some(b"datagram".as_slice()) || from != sent_from {
        return Err(format!("got {:?} from {from}", buf.get(..n)));
    }
    Ok(())
}

fn child_sandbox_view(_: Option<&str>) -> Check {
    sandbox(&SandboxOptions::default()).map_err(|e| format!("sandbox: {}", chain(&e)))?;
    say("sandboxed");
    let entries: Vec<String> = std::fs::read_dir("/")
        .map_err(|e| format!("read_dir /: {e}"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if !entries.is_empty() {
        return Err(format!("/ holds {entries:?}"));
    }
    for path in ["/home", "/root", "/etc", "/proc", "/tmp", "/usr", "/dev"] {
        if Path::new(path).exists() {
            return Err(format!("{path} is visible"));
        }
    }
    let cwd = std::env::current_dir().map_err(|e| format!("getcwd: {e}"))?;
    if cwd != Path::new("/") {
        return Err(format!("working directory {}", cwd.display()));
    }
    if File::create("/new-file").is_ok() || std::fs::create_dir("/new-dir").is_ok() {
        return Err("created something in the sandbox's root".into());
    }
    say("empty read-only root");
    say("done");
    Ok(())
}

/// /proc/self/status, opened before confinement (afterwards there is no /proc to open) and
/// read once, from its start, afterwards: a single read needs no lseek, which seccomp refuses.
struct Status(File);

impl Status {
    fn open() -> Result<Status, String> {
        File::open("/proc/self/status")
            .map(Status)
            .map_err(|e| format!("open /proc/self/status: {e}"))
    }

    fn read(mut self) -> Result<StatusText, String> {
        let mut text = String::new();
        self.0
            .read_to_string(&mut text)
            .map_err(|e| format!("read status: {e}"))?;
        Ok(StatusText(text))
    }
}

/// The text of /proc/self/status at one moment.
struct StatusText(String);

impl StatusText {
    fn field(&self, name: &str) -> Result<String, String> {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| format!("no {name} in /proc/self/status"))
    }
}

const ALL_ZERO: &str = "0000000000000000";

fn child_sandbox_caps(_: Option<&str>) -> Check {
    let before = Status::open()?.read()?.field("CapEff")?;
    let after = Status::open()?;
    if before == ALL_ZERO {
        return Err("no capabilities to drop before the sandbox: the check would be empty".into());
    }
    say(&format!("before CapEff {before}"));
    sandbox(&SandboxOptions::default()).map_err(|e| format!("sandbox: {}", chain(&e)))?;
    let status = after.read()?;
    for name in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let value = status.field(name)?;
        if value != ALL_ZERO {
            return Err(format!("{name} is {value} after the sandbox"));
        }
    }
    let nnp = status.field("NoNewPrivs")?;
    if nnp != "1" {
        return Err(format!("NoNewPrivs is {nnp}"));
    }
    say("all capability sets empty, no_new_privs");
    match nix::sched::unshare(CloneFlags::CLONE_NEWNS) {
        Err(Errno::EPERM) => {}
        other => return Err(format!("unshare(CLONE_NEWNS) after the sandbox: {other:?}")),
    }
    let remount = nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND,
        None::<&str>,
    );
    match remount {
        Err(Errno::EPERM) => {}
        other => return Err(format!("remount / read-write: {other:?}")),
    }
    say("privileged calls refused");
    say("done");
    Ok(())
}

fn child_sandbox_keep_bind(_: Option<&str>) -> Check {
    let status = Status::open()?;
    let opts = SandboxOptions {
        keep_net_bind_service: true,
    };
    sandbox(&opts).map_err(|e| format!("sandbox: {}", chain(&e)))?;
    let status = status.read()?;
    // Bit 10, CAP_NET_BIND_SERVICE.
    let want = [
        ("CapInh", ALL_ZERO),
        ("CapPrm", "0000000000000400"),
        ("CapEff", "0000000000000400"),
        ("CapBnd", "0000000000000400"),
        ("CapAmb", ALL_ZERO),
    ];
    for (name, value) in want {
        let got = status.field(name)?;
        if got != value {
            return Err(format!("{name} is {got}, want {value}"));
        }
    }
    say("done");
    Ok(())
}

fn child_sandbox_sockets(_: Option<&str>) -> Check {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("listen: {e}"))?;
    sandbox(&SandboxOptions::default()).map_err(|e| format!("sandbox: {}", chain(&e)))?;
    tcp_echo(&listener)?;
    let late = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("late listener: {e}"))?;
    tcp_echo(&late)?;
    udp_echo()?;
    say("done");
    Ok(())
}

fn child_sandbox_threads(_: Option<&str>) -> Check {
    let (go, wait) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || wait.recv().is_ok());
    let result = sandbox(&SandboxOptions::default());
    let _ = go.send(());
    let _ = thread.join();
    match result {
        Err(ConfineError::Threads { count: 2 }) => {}
        other => return Err(format!("sandbox with two threads: {other:?}")),
    }
    if !Path::new("/etc").exists() {
        return Err("the refused sandbox changed the root".into());
    }
    say("done");
    Ok(())
}

fn child_sandbox_unprivileged(_: Option<&str>) -> Check {
    match sandbox(&SandboxOptions::default()) {
        Err(ConfineError::Unshare {
            source: Errno::EPERM,
        }) => {}
        other => return Err(format!("sandbox without privilege: {other:?}")),
    }
    say("done");
    Ok(())
}

/// The order the module header gives: bind the API socket, remove_on_exit, sandbox, start the
/// threads (an "api" thread answering on the socket), seccomp, ready; then serve one client.
fn child_full_order(dir: Option<&str>) -> Check {
    let dir = dir.ok_or("no directory argument")?;
    let path = Path::new(dir).join(SOCKET_NAME);
    let api = UnixListener::bind(&path).map_err(|e| format!("bind {}: {e}", path.display()))?;
    let remover = remove_on_exit(&[&path]).map_err(|e| format!("remove_on_exit: {}", chain(&e)))?;
    say(&format!("remover {remover}"));
    sandbox(&SandboxOptions::default()).map_err(|e| format!("sandbox: {}", chain(&e)))?;
    let server = std::thread::Builder::new()
        .name("api".into())
        .spawn(move || -> io::Result<()> {
            let (mut conn, _) = api.accept()?;
            conn.set_read_timeout(Some(STEP_TIMEOUT))?;
            let mut request = [0u8; 4];
            conn.read_exact(&mut request)?;
            conn.write_all(b"pong")?;
            conn.shutdown(Shutdown::Both)
        })
        .map_err(|e| format!("spawn: {e}"))?;
    seccomp(&SeccompOptions::default()).map_err(|e| format!("seccomp: {}", chain(&e)))?;
    say("ready");
    match server.join() {
        Ok(Ok(())) => say("served"),
        other => return Err(format!("api thread: {other:?}")),
    }
    // What netstack's socket guard does on drop; under confinement it finds nothing.
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return Err(format!("stat of the socket inside: {other:?}")),
    }
    wait_for_stdin_eof()?;
    say("done");
    Ok(())
}

/// Binds a socket, registers it with remove_on_exit, says ready and waits for stdin's EOF.
fn child_remover_only(dir: Option<&str>) -> Check {
    let dir = dir.ok_or("no directory argument")?;
    let path = Path::new(dir).join(SOCKET_NAME);
    let _api = UnixListener::bind(&path).map_err(|e| format!("bind {}: {e}", path.display()))?;
    let remover = remove_on_exit(&[&path]).map_err(|e| format!("remove_on_exit: {}", chain(&e)))?;
    say(&format!("remover {remover}"));
    sandbox(&SandboxOptions::default()).map_err(|e| format!("sandbox: {}", chain(&e)))?;
    say("ready");
    wait_for_stdin_eof()?;
    say("done");
    Ok(())
}

fn wait_for_stdin_eof() -> Check {
    let mut rest = Vec::new();
    io::stdin()
        .read_to_end(&mut rest)
        .map_err(|e| format!("stdin: {e}"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Parent-side checks.

fn expect_sigsys(case: &Case, env: &Env) -> Check {
    let out = env.run(case, None)?.finish()?;
    if !out.stdout.contains("installed") {
        return Err(format!("the filter was not installed\n{out}"));
    }
    match out.status.signal() {
        Some(sig) if sig == Signal::SIGSYS as i32 => Ok(()),
        _ => Err(format!("want death by SIGSYS\n{out}")),
    }
}

fn expect_done(case: &Case, env: &Env) -> Check {
    let out = env.run(case, None)?.finish()?;
    if out.status.code() == Some(0) && out.stdout.lines().any(|l| l == "done") {
        Ok(())
    } else {
        Err(format!("want exit 0 after \"done\"\n{out}"))
    }
}

fn parent_full_order(case: &Case, env: &Env) -> Check {
    let dir = env.user_dir()?;
    let path = dir.path().join(SOCKET_NAME);
    let mut child = env.run(case, Some(dir.path()))?;
    let remover = child.remover()?;
    child.expect_line("ready")?;
    let mut conn = UnixStream::connect(&path).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(STEP_TIMEOUT))
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    conn.write_all(b"ping").map_err(|e| format!("write: {e}"))?;
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply)
        .map_err(|e| format!("read: {e}"))?;
    if reply != b"pong" {
        return Err(format!("the API thread answered {reply:?}"));
    }
    child.expect_line("served")?;
    if !is_socket(&path) {
        return Err("the socket file went away while the helper ran".into());
    }
    let out = child.finish()?;
    if out.status.code() != Some(0) {
        return Err(format!("want exit 0\n{out}"));
    }
    wait_pid(remover)?;
    if path.exists() {
        return Err(format!(
            "{} is still there after the remover exited",
            path.display()
        ));
    }
    Ok(())
}

fn parent_replaced(case: &Case, env: &Env) -> Check {
    let dir = env.user_dir()?;
    let path = dir.path().join(SOCKET_NAME);
    let mut child = env.run(case, Some(dir.path()))?;
    let remover = child.remover()?;
    child.expect_line("ready")?;
    std::fs::remove_file(&path).map_err(|e| format!("remove: {e}"))?;
    std::fs::write(&path, b"someone else's").map_err(|e| format!("replace: {e}"))?;
    let out = child.finish()?;
    if out.status.code() != Some(0) {
        return Err(format!("want exit 0\n{out}"));
    }
    wait_pid(remover)?;
    match std::fs::read(&path) {
        Ok(data) if data == b"someone else's" => Ok(()),
        other => Err(format!("the replacement is gone or changed: {other:?}")),
    }
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Waits for `pid`, a child of ours since this process is a subreaper, within the deadline.
fn wait_pid(pid: Pid) -> Check {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(nix::sys::wait::waitpid(pid, None));
    });
    match rx.recv_timeout(CHILD_DEADLINE) {
        Ok(Ok(nix::sys::wait::WaitStatus::Exited(_, 0))) => Ok(()),
        Ok(other) => Err(format!("remover {pid} ended as {other:?}")),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            Err(format!(
                "remover {pid} still running after {CHILD_DEADLINE:?}"
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running children.

/// What the parent knows about the machine.
struct Env {
    /// A copy of this binary that the test user can execute.
    exe: PathBuf,
    _exe_dir: tempfile::TempDir,
    root: bool,
    /// The test user's uid and gid, when running as root.
    user: Option<(u32, u32)>,
}

/// How a child ended.
struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status: {:?}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// A started child: its stdout lines arrive on a channel, stderr is collected.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: mpsc::Receiver<String>,
    deadline: Instant,
}

impl Env {
    fn new() -> Result<Env, String> {
        let root = nix::unistd::geteuid().is_root();
        let user = if root {
            Some(find_user(TEST_USER)?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("rr-ns-confine-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        set_mode(dir.path(), 0o755)?;
        let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let exe = dir.path().join("confine");
        std::fs::copy(&me, &exe).map_err(|e| format!("copy {}: {e}", me.display()))?;
        set_mode(&exe, 0o755)?;
        Ok(Env {
            exe,
            _exe_dir: dir,
            root,
            user,
        })
    }

    /// A fresh directory the child's user may write in.
    fn user_dir(&self) -> Result<tempfile::TempDir, String> {
        let dir = tempfile::Builder::new()
            .prefix("rr-ns-confine-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        if let Some((uid, gid)) = self.user {
            nix::unistd::chown(
                dir.path(),
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| format!("chown: {e}"))?;
        }
        Ok(dir)
    }

    fn argv(&self, case: &Case, arg: Option<&Path>) -> Vec<String> {
        let mut me = vec![
            self.exe.display().to_string(),
            "--child".to_owned(),
            case.name.to_owned(),
        ];
        me.extend(arg.map(|a| a.display().to_string()));
        let as_user = |mut rest: Vec<String>| match self.root {
            true => {
                let mut v: Vec<String> = [
                    "/usr/bin/setpriv",
                    &format!("--reuid={TEST_USER}"),
                    &format!("--regid={TEST_USER}"),
                    "--init-groups",
                    "--reset-env",
                    "--",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                v.append(&mut rest);
                v
            }
            false => rest,
        };
        match case.how {
            How::Direct | How::RealRoot => me,
            How::Unprivileged => as_user(me),
            How::UserNs => {
                let mut v = vec!["/usr/bin/unshare".to_owned(), "-Ur".to_owned()];
                v.append(&mut me);
                as_user(v)
            }
        }
    }

    fn run(&self, case: &Case, arg: Option<&Path>) -> Result<Running, String> {
        let argv = self.argv(case, arg);
        let (program, args) = argv.split_first().ok_or("empty argv")?;
        let mut child = Command::new(program)
            .args(args)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {argv:?}: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (line_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            let _ = err_tx.send(text);
        });
        Ok(Running {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            stderr: err_rx,
            deadline: Instant::now() + CHILD_DEADLINE,
        })
    }
}

impl Running {
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Waits for a stdout line starting with `prefix`; returns it.
    fn expect_line(&mut self, prefix: &str) -> Result<String, String> {
        loop {
            match self.lines.recv_timeout(self.left()) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return Ok(line);
                    }
                }
                Err(_) => {
                    let out = self.kill_and_collect();
                    return Err(format!("no line \"{prefix}\" from the child\n{out}"));
                }
            }
        }
    }

    /// The pid the child printed as "remover PID".
    fn remover(&mut self) -> Result<Pid, String> {
        let line = self.expect_line("remover ")?;
        line.trim_start_matches("remover ")
            .parse()
            .map(Pid::from_raw)
            .map_err(|e| format!("{line}: {e}"))
    }

    /// Closes stdin and waits for the child to end within the deadline.
    fn finish(mut self) -> Result<Outcome, String> {
        drop(self.stdin.take());
        // stdout closes when the child (and the remover, which closes its copy at once) ends.
        loop {
            match self.lines.recv_timeout(self.left()) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let out = self.kill_and_collect();
                    return Err(format!("the child outlived its deadline\n{out}"));
                }
            }
        }
        let status = self
            .child
            .wait()
            .map_err(|e| format!("wait for the child: {e}"))?;
        let stderr = self.stderr.recv_timeout(self.left()).unwrap_or_default();
        Ok(Outcome {
            status,
            stdout: self.seen.iter().map(|l| format!("{l}\n")).collect(),
            stderr,
        })
    }

    fn kill_and_collect(&mut self) -> String {
        let _ = self.child.kill();
        let status = self.child.wait().map(|s| format!("{s:?}"));
        let stderr = self
            .stderr
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        format!(
            "status after kill: {status:?}\n--- stdout\n{}--- stderr\n{stderr}",
            self.seen
                .iter()
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        )
    }
}

impl Drop for Running {
    /// A test that fails before `finish` must not leave its child running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> Check {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// uid and gid of `name` from /etc/passwd.
fn find_user(name: &str) -> Result<(u32, u32), String> {
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| format!("read /etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let mut f = line.split(':');
            if f.next()? != name {
                return None;
            }
            let uid = f.nth(1)?.parse().ok()?;
            let gid = f.next()?.parse().ok()?;
            Some((uid, gid))
        })
        .ok_or_else(|| {
            format!(
                "the test user {name} does not exist. Remedy: run `sudo scripts/setup` once \
                 (or `useradd -m {name}`)"
            )
        })
}

/// An error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

// ---------------------------------------------------------------------------------------------
// main: a child's body, or the runner.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child_main(&args[1..]);
    }
    std::process::exit(runner(&args));
}

fn child_main(args: &[String]) -> ! {
    // A child killed on purpose must not leave a core file behind.
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    let all = cases();
    let Some(case) = args.first().and_then(|n| all.iter().find(|c| c.name == n)) else {
        eprintln!("unknown child {args:?}");
        std::process::exit(2);
    };
    match (case.child)(args.get(1).map(String::as_str)) {
        Ok(()) => std::process::exit(0),
        Err(why) => {
            eprintln!("{}: {why}", case.name);
            std::process::exit(1);
        }
    }
}

/// libtest's command line, as far as it matters here.
struct Selection {
    filters: Vec<String>,
    skip: Vec<String>,
    exact: bool,
    list: bool,
}

impl Selection {
    fn parse(args: &[String]) -> Selection {
        let mut s = Selection {
            filters: Vec::new(),
            skip: Vec::new(),
            exact: false,
            list: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--exact" => s.exact = true,
                "--list" => s.list = true,
                "--skip" => s.skip.extend(it.next().cloned()),
                // Options with a value that do not matter here.
                "--format" | "--test-threads" | "--color" | "--logfile" | "-Z" => {
                    it.next();
                }
                flag if flag.starts_with('-') => {}
                filter => s.filters.push(filter.to_owned()),
            }
        }
        s
    }

    fn wants(&self, name: &str) -> bool {
        let matches = |f: &String| {
            if self.exact {
                name == f
            } else {
                name.contains(f.as_str())
            }
        };
        (self.filters.is_empty() || self.filters.iter().any(matches))
            && !self.skip.iter().any(|s| name.contains(s.as_str()))
    }
}

fn runner(args: &[String]) -> i32 {
    let selection = Selection::parse(args);
    let all = cases();
    let chosen: Vec<&Case> = all.iter().filter(|c| selection.wants(c.name)).collect();
    if selection.list {
        for c in &chosen {
            println!("{}: test", c.name);
        }
        return 0;
    }
    let filtered = all.len() - chosen.len();
    println!("\nrunning {} tests", chosen.len());
    let started = Instant::now();
    // Orphaned grandchildren (the remover) become our children, so we can wait for them.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        println!("cannot become a child subreaper: {e}");
        return 101;
    }
    let env = Env::new();
    let (mut passed, mut ignored, mut failures) = (0, 0, Vec::new());
    for case in chosen {
        let result = match &env {
            Err(why) => Err(why.clone()),
            Ok(env) if case.how == How::RealRoot && !env.root => {
                println!("test {} ... ignored, needs real root", case.name);
                ignored += 1;
                continue;
            }
            Ok(env) => (case.parent)(case, env),
        };
        match result {
            Ok(()) => {
                println!("test {} ... ok", case.name);
                passed += 1;
            }
            Err(why) => {
                println!("test {} ... FAILED", case.name);
                failures.push((case.name, why));
            }
        }
    }
    if !failures.is_empty() {
        println!("\nfailures:\n");
        for (name, why) in &failures {
            println!("---- {name} ----\n{why}\n");
        }
        println!("failures:");
        for (name, _) in &failures {
            println!("    {name}");
        }
    }
    let verdict = if failures.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {} failed; {ignored} ignored; 0 measured; \
         {filtered} filtered out; finished in {:.2}s\n",
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        0
    } else {
        101
    }
}
