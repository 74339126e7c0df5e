//! Forwards as the launcher sees them (issue 9): the `--publish` host sockets are bound by
//! the launcher before it forks and then held by its stack process alone (issue 14), never by
//! the sandbox's processes (which would keep a port bound after the launcher let it go); the `--api-socket` is up (mode
//! 0600) when the command starts, lists the `--publish` forwards, and is gone after the run.
//! Forwarded traffic and the API protocol are tested with the network stack.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;

use common::{Env, Spawned};

/// The inode of the socket listening on 127.0.0.1:`port`, from /proc/net/tcp.
fn listener_inode(port: u16) -> Option<String> {
    let table = fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // local_address, state 0A (LISTEN), inode
        (f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A"))
            .then(|| f.get(9).map(|s| s.to_string()))
            .flatten()
    })
}

/// Pids with an fd on `socket:[inode]`.
fn holders(inode: &str) -> Vec<u32> {
    let want = format!("socket:[{inode}]");
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str()))
        {
            out.push(pid);
        }
    }
    out
}

#[test]
fn published_socket_is_held_by_the_stack_process_alone() {
    let env = Env::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port();
    let spec = format!("127.0.0.1:{port}:80");
    let run = Spawned::start(
        env.as_user(
            &env.bin,
            &["--publish", &spec, "--", "sh", "-c", "echo ready; sleep 30"],
        ),
        "ready",
    );
    let inode = listener_inode(port).expect("the launcher listens on the published port");
    let stack = common::stack_process_of(run.pid()).expect("the launcher has a stack process");
    assert_eq!(
        holders(&inode),
        [stack],
        "only the stack process holds the socket (not the launcher {}, nor the sandbox: {:?})",
        run.pid(),
        common::sandbox_descendants_of(run.pid())
    );
}

/// Sends one API request and returns the reply (slirp4netns's framing: one request per
/// connection, the client half-closes).
fn api(path: &std::path::Path, request: &str) -> String {
    let mut s = UnixStream::connect(path).expect("connect to the API socket");
    s.set_read_timeout(Some(common::TIMEOUT)).expect("timeout");
    s.write_all(request.as_bytes()).expect("send");
    s.shutdown(std::net::Shutdown::Write).expect("half-close");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("reply");
    reply
}

#[test]
fn api_socket_is_up_when_the_command_starts_and_gone_after() {
    let env = Env::new();
    let sock = env.scratch.join("rr.sock");
    let stop = env.scratch.join("stop");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port();
    let spec = format!("127.0.0.1:{port}:80");
    // The command waits on a FIFO the test writes to once it has looked: no polling.
    nix::unistd::mkfifo(&stop, nix::sys::stat::Mode::from_bits_truncate(0o666)).expect("mkfifo");
    let script = format!("echo ready; read line < {}", stop.display());
    let mut run = Spawned::start(
        env.as_user(
            &env.bin,
            &[
                "--api-socket",
                sock.to_str().expect("utf-8"),
                "--publish",
                &spec,
                "--",
                "sh",
                "-c",
                &script,
            ],
        ),
        "ready",
    );
    let meta = fs::metadata(&sock).expect("the socket exists when the command runs");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), env.uid);
    assert_eq!(
        api(&sock, r#"{"execute":"list_hostfwd"}"#),
        format!(
            r#"{{"entries":[{{"id":1,"proto":"tcp","host_addr":"127.0.0.1","host_port":{port},"guest_addr":"10.0.2.100","guest_port":80}}]}}"#
        )
    );
    fs::write(&stop, "stop\n").expect("tell the command to stop through its FIFO");
    assert!(run.wait().success());
    assert!(!sock.exists(), "the socket file is removed on exit");
}
