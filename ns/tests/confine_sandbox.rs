//! `rr_ns::confine::sandbox` against the real kernel: an empty read-only root, capabilities
//! dropped (but CAP_NET_BIND_SERVICE when asked), sockets still working, and the refusals
//! (threads, no privilege). Run by cargo as its own test binary (harness = false; the runner
//! is in `common`); children run in `unshare -Ur`, unprivileged or as real root. No seccomp.

mod common;

use std::fs::File;
use std::net::TcpListener;
use std::path::Path;
use std::sync::mpsc;

use common::work::{tcp_echo, udp_echo, Status};
use common::{chain, expect_done, say, Case, Check, How};
use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use rr_ns::confine::{sandbox, ConfineError, SandboxOptions};

fn main() {
    common::main(cases);
}

fn cases() -> Vec<Case> {
    vec![
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
    ]
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
        ..SandboxOptions::default()
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
