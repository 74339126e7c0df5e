"""scripts/bench_kernel.py: the kernel-mode tool of scripts/bench (imported by it, not run alone).

`kernel` is `rootless-run --net-mode=kernel` (issue 10), run as root, the only user it serves: the sandbox
gets a veth on the bridge rrbr0 and the host kernel routes and NATs its packets (nftables DNAT of 10.0.2.2
to 127.0.0.1 with route_localnet on the bridge, masquerade out, DNAT for --publish). It runs every workload
the userspace rootless-run runs, with the same client, servers and argv apart from `--net-mode=kernel`.
The bridge, the table and the forwarding sysctls it creates live in the bench's own sealed network
namespace and go with it. There is no helper process, so it has no helper RSS or CPU rows: the kernel
carries the packets in the sender's and receiver's own system time and softirqs.
This module holds what is particular to the tool: its name, argv, ratio columns and targets. scripts/bench
runs it with its own Run, measurement, summary and table code.
"""

TOOL = "kernel"
SHORT = {TOOL: "kern"}
# The option that makes rootless-run use the kernel's data path; the rest of the argv is ours_argv's.
ARGS = ["--net-mode=kernel"]

# Ratio columns the table adds: (numerator tool, denominator tool, heading).
COLUMNS = [
    (TOOL, "loopback", "kern/loop"),
    (TOOL, "rootless-run", "kern/ours"),
]

# Issue 10's targets: (row, tool, peer, the least ratio tool/peer of the medians). Kernel mode moves bulk TCP
# at >= 0.9x plain loopback, and is ahead of the userspace stack (rootless-run as root would otherwise use)
# on every throughput and rate row.
AHEAD = ["tcp-up", "tcp-down", "tcp-4", "udp", "rr", "crr", "crr-cf", "fwd-up", "fwd-down", "fwd-rr", "fwd-crr"]
TARGETS = [
    ("tcp-up", TOOL, "loopback", 0.9),
    ("tcp-down", TOOL, "loopback", 0.9),
] + [(w, TOOL, "rootless-run", 1.0) for w in AHEAD]


def argv(ours_argv):
    """The kernel-mode command line from the userspace one (binary first, options after)."""
    return ours_argv[:1] + ARGS + ours_argv[1:]
