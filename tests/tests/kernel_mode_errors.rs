//! Kernel mode's bad input and failed set-up (issue 10, item 7), as root inside the outer
//! namespace of a fresh `topology::Internet` each: a bridge name taken by a link that is not
//! ours, an address range whose every address is leased, and nftables failing midway (after the
//! lease, the bridge and the sysctls; simulated by an `nft` early in PATH that refuses every
//! command, as a kernel without nf_tables makes the real one do). Each is a one-line error,
//! exit 1, with no veth, no rules, no lease held, and no bridge made by the failed run left.

use rr_tests::child::{run, TIMEOUT};
use rr_tests::sandbox::{command, Harness};
use rr_tests::topology::Internet;

/// Shell that prints what a failed run may have left: links other than lo and the topology's,
/// our table's rules, and whether the first lease is free.
const LEFTOVERS: &str = "echo links=$(ip -o link show | awk -F': ' '{print $2}' | \
    grep -v -e '^lo$' -e '^rr-out' | tr '\\n' ' '); \
    echo rules=$(nft list ruleset | grep -c owner=); \
    mkdir -p $L; flock -n $L/$FIRST true && echo lease=free";

/// The one line starting `rootless-run:` (the error), checking there is exactly one.
fn error_line(out: &rr_tests::child::Outcome) -> String {
    let errs: Vec<&str> = out
        .stderr_lines()
        .into_iter()
        .filter(|l| l.starts_with("rootless-run:"))
        .collect();
    assert_eq!(errs.len(), 1, "expected one error line\n{out}");
    errs[0].to_owned()
}

#[test]
fn kernel_mode_bridge_name_taken_by_another_link_is_one_line_and_builds_nothing() {
    let h = Harness::new();
    let net = Internet::build(&h);
    let script = format!(
        "FIRST=10.0.2.100; ip link add rrbr0 type veth peer name rrbr0p || exit 9; \
         $B --net-mode=kernel -- true; echo run=$?; \
         ip -o -d link show rrbr0 | grep -q veth && echo other=kept; \
         ip link del rrbr0; {LEFTOVERS}"
    );
    let out = run(
        "kernel mode with rrbr0 taken",
        &mut command(&net.outer_sh(&h, &script)),
        TIMEOUT,
    );
    assert!(out.stdout.contains("run=1"), "{out}");
    assert_eq!(
        error_line(&out),
        "rootless-run: --net-mode=kernel: bridge: rrbr0 exists and is not rootless-run's bridge \
         (its alias is not \"rootless-run\"); remove it or choose another name",
        "{out}"
    );
    assert!(out.stdout.contains("other=kept"), "{out}");
    assert!(
        out.stdout.lines().any(|l| l.trim_end() == "links="),
        "a link was left behind\n{out}"
    );
    assert!(out.stdout.contains("rules=0"), "{out}");
    assert!(out.stdout.contains("lease=free"), "{out}");
}

#[test]
fn kernel_mode_exhausted_address_range_is_one_line_and_builds_nothing() {
    let h = Harness::new();
    let net = Internet::build(&h);
    // Other runs hold every lease of 10.9.0.0/25 (10.9.0.100 to .126): flock(1) holds each
    // file the way a launcher does, until the test closes their stdin.
    let script = format!(
        "FIRST=10.9.0.100; mkdir -p $L; mkfifo $D/hold; exec 3<>$D/hold; \
         for i in $(seq 100 126); do flock -n $L/10.9.0.$i sh -c 'echo held; read x' <$D/hold & done; \
         until [ $(for f in $L/10.9.0.*; do flock -n $f true || echo x; done | wc -l) -eq 27 ]; do :; done; \
         $B --net-mode=kernel --cidr 10.9.0.0/25 -- true; echo run=$?; \
         ip link show rrbr0 >/dev/null 2>&1 || echo bridge=absent; \
         nft list table inet rootless_run >/dev/null 2>&1 || echo table=absent; \
         for i in $(seq 100 126); do echo; done >&3; wait; {LEFTOVERS}"
    );
    let out = run(
        "kernel mode with every address leased",
        &mut command(&net.outer_sh(&h, &script)),
        TIMEOUT,
    );
    assert!(out.stdout.contains("run=1"), "{out}");
    assert_eq!(
        error_line(&out),
        "rootless-run: --cidr 10.9.0.0/25: all 27 sandbox addresses of 10.9.0.0/25 are in use \
         (use another --cidr)",
        "{out}"
    );
    assert!(out.stdout.contains("bridge=absent"), "{out}");
    assert!(out.stdout.contains("table=absent"), "{out}");
    assert!(out.stdout.contains("lease=free"), "{out}");
}

#[test]
fn kernel_mode_nft_failing_midway_is_one_line_and_leaves_no_bridge_lease_or_rules() {
    let h = Harness::new();
    let net = Internet::build(&h);
    let script = format!(
        "FIRST=10.0.2.100; mkdir $D/bin; \
         printf '#!/bin/sh\\necho \"Error: Could not process rule: Operation not supported\" >&2\\nexit 1\\n' > $D/bin/nft; \
         chmod 755 $D/bin/nft; \
         PATH=$D/bin:$PATH $B --net-mode=kernel -- true; echo run=$?; \
         ip link show rrbr0 >/dev/null 2>&1 || echo bridge=absent; {LEFTOVERS}"
    );
    let out = run(
        "kernel mode with nft failing",
        &mut command(&net.outer_sh(&h, &script)),
        TIMEOUT,
    );
    assert!(out.stdout.contains("run=1"), "{out}");
    let err = error_line(&out);
    assert!(
        err.starts_with("rootless-run: nft cannot ") && err.contains("Operation not supported"),
        "{out}"
    );
    assert!(
        out.stdout.contains("bridge=absent"),
        "the bridge made by the failed run stayed\n{out}"
    );
    assert!(out.stdout.contains("rules=0"), "{out}");
    assert!(out.stdout.contains("lease=free"), "{out}");
    assert!(
        out.stdout.lines().any(|l| l.trim_end() == "links="),
        "a link was left behind\n{out}"
    );
}
