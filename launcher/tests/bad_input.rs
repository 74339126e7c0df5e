//! Bad input and broken machines (issues 3, 5 and 9): each must give one line
//! `rootless-run: <what>: <why and remedy>` and the documented exit status, without a panic.
//! A missing or locked /dev/net/tun and a missing newuidmap are simulated in a private mount
//! namespace (as root, then switching to the test user), so the machine itself is not touched.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Env, Out};

/// Asserts a one-line error with this prefix and status.
fn one_line_error(out: &Out, status: i32, prefix: &str) {
    assert_eq!(out.code(), status, "{out:?}");
    let lines: Vec<_> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {out:?}");
    assert!(
        lines[0].starts_with(prefix),
        "{:?} does not start with {prefix:?}",
        lines[0]
    );
    assert!(!out.stderr.contains("panicked"), "{out:?}");
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let env = Env::new();
    let out = env.rr(&["--bogus", "true"]);
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(
        out.stderr.contains("unexpected argument '--bogus'"),
        "{out:?}"
    );
}

#[test]
fn double_dash_without_command_is_a_usage_error() {
    let env = Env::new();
    one_line_error(
        &env.rr(&["--"]),
        2,
        "rootless-run: missing command after '--'",
    );
}

#[test]
fn command_not_found_and_not_executable() {
    let env = Env::new();
    let out = env.rr(&["--", "no-such-command-here"]);
    one_line_error(
        &out,
        127,
        "rootless-run: cannot execute 'no-such-command-here': No such file or directory",
    );
    let file = env.scratch.join("not-executable");
    std::fs::write(&file, "echo should not run\n").expect("write");
    let f = file.to_str().expect("utf-8");
    let out = env.rr(&["--", f]);
    one_line_error(
        &out,
        126,
        &format!("rootless-run: cannot execute '{f}': Permission denied"),
    );
}

#[test]
fn root_on_a_missing_directory() {
    let env = Env::new();
    one_line_error(
        &env.rr(&["--root=/nonexistent/rootfs", "true"]),
        2,
        "rootless-run: --root=/nonexistent/rootfs: not an existing directory",
    );
}

#[test]
fn map_auto_without_a_subuid_entry_names_the_file() {
    let env = Env::new();
    // `nobody` has no /etc/subuid entry on a stock system.
    let mut c = Command::new("/usr/bin/setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(&env.bin)
        .args(["--map-auto", "true"])
        .current_dir("/");
    let out = env.run(c);
    one_line_error(
        &out,
        2,
        "rootless-run: --map-auto: nobody has no range in /etc/subuid",
    );
}

#[test]
fn mount_proc_with_a_join_that_has_no_mount_namespace() {
    let env = Env::new();
    one_line_error(
        &env.rr(&["--join-ns", "net=/proc/self/ns/net", "--mount-proc", "true"]),
        2,
        "rootless-run: --mount-proc: the joined namespaces have no mount namespace",
    );
}

#[test]
fn tun_device_missing() {
    let env = Env::new();
    let out = env.rr_with_mounts("mount -t tmpfs none /dev/net", &["true"]);
    one_line_error(
        &out,
        1,
        "rootless-run: cannot create the sandbox's tap device: /dev/net/tun is missing",
    );
}

#[test]
fn tun_device_not_permitted() {
    let env = Env::new();
    let out = env.rr_with_mounts(
        "mount -t tmpfs none /dev/net; mknod -m 0600 /dev/net/tun c 10 200",
        &["true"],
    );
    one_line_error(
        &out,
        1,
        "rootless-run: cannot create the sandbox's tap device: /dev/net/tun is not accessible",
    );
    assert!(
        out.stderr.contains("chmod 0666"),
        "names the remedy: {out:?}"
    );
}

#[test]
fn newuidmap_missing() {
    let env = Env::new();
    let hide: String = [
        "/usr/bin/newuidmap",
        "/usr/sbin/newuidmap",
        "/bin/newuidmap",
        "/sbin/newuidmap",
    ]
    .iter()
    .filter(|p| Path::new(p).exists())
    .map(|p| format!("mount --bind /dev/null {p}; "))
    .collect();
    let out = env.rr_with_mounts(hide.trim_end_matches("; "), &["--map-auto", "true"]);
    one_line_error(
        &out,
        1,
        "rootless-run: --map-users/--map-groups/--map-auto: newuidmap not found",
    );
    assert!(out.stderr.contains("uidmap package"), "{out:?}");
}

#[test]
fn malformed_network_options_are_usage_errors_naming_flag_and_value() {
    let env = Env::new();
    for (args, line) in [
        (
            &["--publish", "8080"][..],
            "rootless-run: --publish 8080: expected [HOSTIP:]HOSTPORT[-END]:SANDBOXPORT[-END][/tcp|/udp]",
        ),
        (
            &["--publish", "0:80"][..],
            "rootless-run: --publish 0:80: port 0 is out of range (1-65535)",
        ),
        (
            &["--publish", "8080:70000"][..],
            "rootless-run: --publish 8080:70000: port 70000 is out of range (1-65535)",
        ),
        (
            &["--publish", "9000-8990:80-90"][..],
            "rootless-run: --publish 9000-8990:80-90: range 9000-8990 ends before it starts",
        ),
        (
            &["--publish", "8000-8002:80"][..],
            "rootless-run: --publish 8000-8002:80: the host range has 3 ports and the sandbox range 1",
        ),
        (
            &["--publish", "8000-8010:80-90", "--publish", "127.0.0.1:8005:80"][..],
            "rootless-run: --publish 127.0.0.1:8005:80: tcp port 8005 on 127.0.0.1 is already published by --publish 8000-8010:80-90",
        ),
        (
            &["--publish", "::1:8080:80"][..],
            "rootless-run: --publish ::1:8080:80: write IPv6 host addresses in brackets",
        ),
        (
            &["--disable-ipv6", "--publish", "[::1]:8080:80"][..],
            "rootless-run: --publish [::1]:8080:80: IPv6 is off in the sandbox",
        ),
        (
            &["--cidr", "10.0.2.100/24"][..],
            "rootless-run: --cidr 10.0.2.100/24: CIDR needs to be a network address",
        ),
        (
            &["--cidr", "10.0.2.0/26"][..],
            "rootless-run: --cidr 10.0.2.0/26: prefix length needs to be 1-25",
        ),
        (
            &["--cidr6", "fd00::/48"][..],
            "rootless-run: --cidr6 fd00::/48: prefix length must be 64",
        ),
        (
            &["--mac", "01:00:5e:00:00:01"][..],
            "rootless-run: --mac 01:00:5e:00:00:01: not a unicast address",
        ),
        (
            &["--outbound-addr", "::1"][..],
            "rootless-run: --outbound-addr ::1: not an IPv4 address (use --outbound-addr6)",
        ),
        (
            &["--dns-upstream", "resolver.example"][..],
            "rootless-run: --dns-upstream resolver.example: expected ADDR[:PORT]",
        ),
        (
            &["--join=1", "--publish", "8080:80"][..],
            "rootless-run: --publish: cannot be combined with --join",
        ),
    ] {
        let mut argv = args.to_vec();
        argv.push("true");
        one_line_error(&env.rr(&argv), 2, line);
    }
    let long = format!("/tmp/{}", "s".repeat(110));
    one_line_error(
        &env.rr(&["--api-socket", &long, "true"]),
        2,
        &format!("rootless-run: --api-socket {long}: must be 1 to 107 bytes"),
    );
}

/// A TCP port on 127.0.0.1 that nothing listens on (the sealed namespace is ours alone).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

#[test]
fn publish_of_a_port_in_use_fails_at_start_and_leaves_nothing_bound() {
    let env = Env::new();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let busy_port = busy.local_addr().expect("addr").port();
    let free = free_port();
    let first = format!("127.0.0.1:{free}:80");
    let second = format!("127.0.0.1:{busy_port}:81");
    let out = env.rr(&["--publish", &first, "--publish", &second, "true"]);
    one_line_error(
        &out,
        1,
        &format!(
            "rootless-run: --publish {second}: cannot listen on 127.0.0.1:{busy_port}: \
             Address already in use (os error 98)"
        ),
    );
    // The forward bound before the failing one was closed with the launcher.
    std::net::TcpListener::bind(("127.0.0.1", free)).expect("the first port is free again");
}

#[test]
fn publish_below_1024_without_privilege_fails_at_start() {
    let env = Env::new();
    one_line_error(
        &env.rr(&["--publish", "127.0.0.1:80:80", "true"]),
        1,
        "rootless-run: --publish 127.0.0.1:80:80: cannot listen on 127.0.0.1:80: \
         Permission denied (os error 13)",
    );
}

#[test]
fn outbound_interface_without_such_interface_fails_at_start() {
    let env = Env::new();
    one_line_error(
        &env.rr(&["--outbound-addr", "nosuch0", "true"]),
        1,
        "rootless-run: --outbound-addr nosuch0: no such interface",
    );
}

#[test]
fn api_socket_in_a_missing_directory_fails_at_start() {
    let env = Env::new();
    one_line_error(
        &env.rr(&["--api-socket", "/nonexistent/rr.sock", "true"]),
        1,
        "rootless-run: --api-socket: cannot bind /nonexistent/rr.sock: No such file or directory",
    );
}
