"""scripts/bench_rootlesskit.py: the rootlesskit tools of scripts/bench (imported by it, not run alone).

Two tools run the tap-path workloads' client inside rootlesskit's child, as Docker rootless, nerdctl and
BuildKit do: `rootlesskit+slirp4netns` with the real /usr/bin/slirp4netns, and `rootlesskit+rr-slirp4netns`
with our drop-in (issue 11, item 8). rootlesskit creates tap0 in the child's network namespace, starts the
binary as `BIN --mtu MTU -r 3 PID tap0` (anchors-features.md §2.1), configures 10.0.2.100/24 with gateway
10.0.2.2, and then runs the command. `--disable-host-loopback=false` keeps 10.0.2.2 mapped to the host's
127.0.0.1, where the bench's servers listen. No port driver: every flow takes the tap path.
This module holds what is particular to these tools: their names and argv, which workloads they run, how
the helper (the slirp4netns rootlesskit started) is found for CPU and memory, the ratio columns and the
targets. scripts/bench runs them with its own Run, measurement, summary and table code.
It starts no process itself and must not grow a second measurement loop.
"""

import os

ROOTLESSKIT = "rootlesskit"
REAL = "rootlesskit+slirp4netns"  # rootlesskit with the real slirp4netns (libslirp)
DROPIN = "rootlesskit+rr-slirp4netns"  # rootlesskit with ours
TOOLS = [REAL, DROPIN]
SHORT = {REAL: "rk-slirp", DROPIN: "rk-ours"}
DROPIN_BINARY = "rr-slirp4netns"

# The workloads they can run: every tap-path one (the client in the sandbox dials 10.0.2.2). Not the
# forwarded ones (they would need a port driver, another path) nor the start-up ones, start and ttfc
# (rootlesskit's own start-up, not the helper's, would dominate them).
RUNS = ["tcp-up", "tcp-down", "tcp-4", "udp", "rr", "crr", "crr-cf"]
# What `--only rootlesskit` selects: the workloads issue 11 names.
WORKLOADS = ["tcp-up", "tcp-down", "rr", "crr"]

# Ratio columns the table adds: (numerator tool, denominator tool, heading).
COLUMNS = [
    (DROPIN, REAL, "rk-ours/rk-slirp"),
    (DROPIN, "rootless-run", "rk-ours/ours"),
]

# Issue 11's targets: (row, tool, peer, the least ratio tool/peer of the medians). The drop-in under
# rootlesskit moves bulk TCP at least 4x as fast as the real slirp4netns under rootlesskit, both ways, and
# stays within 10% of rootless-run itself on every workload the issue names.
TARGETS = [
    ("tcp-up", DROPIN, REAL, 4.0),
    ("tcp-down", DROPIN, REAL, 4.0),
] + [(w, DROPIN, "rootless-run", 0.9) for w in WORKLOADS]


def argv(rootlesskit, binary, state_dir, mtu):
    """rootlesskit's command line up to and including `--`; the sandboxed command follows."""
    return [rootlesskit, "--state-dir=" + state_dir, "--net=slirp4netns", "--slirp4netns-binary=" + binary,
            "--mtu=%d" % mtu, "--disable-host-loopback=false", "--"]  # fmt: skip


def helper_pid(rootlesskit_pid, binary):
    """The slirp4netns (or drop-in) that the rootlesskit parent started: its child whose argv[0] is the
    binary. Its own short-lived namespace-joining child has the same argv but another parent. None if gone."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
            ppid = int(s[s.rindex(")") + 2 :].split()[1])
            if ppid != rootlesskit_pid:
                continue
            with open("/proc/%s/cmdline" % d, "rb") as f:
                arg0 = f.read().split(b"\0", 1)[0].decode(errors="replace")
        except (OSError, ValueError):
            continue
        if arg0 == binary:
            return int(d)
    return None
