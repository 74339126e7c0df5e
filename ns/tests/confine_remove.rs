//! `rr_ns::confine::remove_on_exit` against the real kernel: in the order the module header
//! gives, the API socket serves and is removed after exit; a replaced file is left alone.
//! Run by cargo as its own test binary (harness = false; the runner is in `common`); children
//! run in `unshare -Ur`. The parent waits for the remover as a child subreaper.

mod common;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc;

use common::{chain, say, Case, Check, Env, How, CHILD_DEADLINE, STEP_TIMEOUT};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rr_ns::confine::{remove_on_exit, sandbox, seccomp, SandboxOptions, SeccompOptions};

/// Name of the socket file the remover tests bind.
const SOCKET_NAME: &str = "api.sock";

fn main() {
    common::main(cases);
}

fn cases() -> Vec<Case> {
    vec![
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
