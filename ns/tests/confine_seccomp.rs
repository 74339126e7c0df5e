//! `rr_ns::confine::seccomp` against the real kernel: each forbidden call kills its child
//! with SIGSYS, the stack's normal work passes, log mode lets a call through.
//! Run by cargo as its own test binary (harness = false; the runner is in `common`); the
//! children run as whoever runs the tests, in no namespace. Only seccomp cases belong here.

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::mpsc;

use common::work::{tcp_echo, udp_echo, Status};
use common::{chain, expect_done, say, Case, Check, Env, How, STEP_TIMEOUT};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag};
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::Signal;
use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType};
use rr_ns::confine::{seccomp, SeccompOptions, Violation};

fn main() {
    common::main(cases);
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
    ]
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
