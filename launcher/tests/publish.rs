//! `--publish` as the launcher sees it (issue 9): the host sockets are bound by the launcher
//! before it forks and held by it alone, never by the sandbox's processes (which would keep a
//! port bound after the launcher let it go). Forwarded traffic itself is tested with the
//! network stack, in tests/tests/.

mod common;

use std::fs;

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
fn published_socket_is_held_by_the_launcher_alone() {
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
    assert_eq!(
        holders(&inode),
        [run.pid()],
        "only the launcher holds the socket; sandbox: {:?}",
        common::descendants_of(run.pid())
    );
}
