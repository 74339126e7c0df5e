"""scripts/bench_policy.py: the egress policy A/B of scripts/bench (imported by it, not run alone).

One tool, `rootless-run+policy`: rootless-run with `--policy FILE` holding 1,000 rules (issue 12, item 7),
run in the same rounds as plain rootless-run, so the ratio policy/ours shows what the policy costs. The rules
are written so that every flow of the bench walks the whole lookup: 998 deny rules around documentation
addresses (203.0.113.0/24, 2001:db8::/32 and their supernets) at every prefix length from /8 to /32 (IPv4) and /16 to /128
(IPv6), with ports and protocols, and names (whose answers would be learnt, never asked here), then
`allow tcp:10.0.2.2` and `allow udp:10.0.2.2` last, under `egress deny`: the bench's flows to the gateway
are allowed by the last rules, after every prefix length in use has been probed.
Targets: bulk and RR within noise (>= 0.95 of plain rootless-run), CRR >= 0.9 (one rule check per flow).
It starts no process itself and must not grow a second measurement loop.
"""

import ipaddress

TOOL = "rootless-run+policy"
SHORT = {TOOL: "ours+pol"}
RULES = 1000
# The workloads it runs: the tap-path ones, where every flow is the sandbox's and meets the policy.
RUNS = ["tcp-up", "tcp-down", "tcp-4", "udp", "rr", "crr", "crr-cf"]
COLUMNS = [(TOOL, "rootless-run", "pol/ours")]
TARGETS = [(w, TOOL, "rootless-run", 0.95) for w in ["tcp-up", "tcp-down", "rr"]] + [
    ("crr", TOOL, "rootless-run", 0.9)
]


def policy_text(rules=RULES):
    """The policy file: rules - 2 deny rules spread over prefix lengths, then the two allows."""
    out = ["# scripts/bench: %d rules; the bench's flows match only the last two" % rules, "egress deny"]
    base4 = int(ipaddress.IPv4Address("203.0.113.0"))
    base6 = int(ipaddress.IPv6Address("2001:db8::"))
    for i in range(rules - 2):
        kind = i % 4
        if kind == 0:
            length = 8 + i % 25
            net = ipaddress.IPv4Network((base4 + (i % 256), 32)).supernet(new_prefix=length)
            out.append("deny %s" % net)
        elif kind == 1:
            length = 16 + i % 113
            net = ipaddress.IPv6Network((base6 + i, 128)).supernet(new_prefix=length)
            out.append("deny tcp:[%s]:%d" % (net, 1 + i % 65000))
        elif kind == 2:
            out.append("deny udp:%s:%d-%d" % (ipaddress.IPv4Address(base4 + i % 256), 1000 + i, 2000 + i))
        else:
            out.append("deny tcp:host%d.bench.example:443" % i)
    out += ["allow tcp:10.0.2.2", "allow udp:10.0.2.2"]
    return "\n".join(out) + "\n"
