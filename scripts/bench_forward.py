"""scripts/bench_forward.py: the forwarded-port workloads of scripts/bench (imported by it, not run alone).

A client on the host dials a published port on 127.0.0.1; the tool forwards each connection to a server
inside the sandbox. So these workloads run the other way round from the tap-path ones: the server is the
sandboxed command, the client runs beside the bench. This module holds what is particular to them: the
ports, how each tool is told to forward (pasta's -t, slirp4netns's add_hostfwd over its API socket,
rootless-run's --publish), the wrapper that starts the server in the sandbox, and the targets.
scripts/bench runs them with its own Run, measurement, summary and table code.
It starts no process itself and must not grow a second measurement loop.
"""

import itertools
import json
import re
import socket
import time

# Workloads, in table order. Bulk ones run iperf3, the others rr-bench.
BULK = ["fwd-up", "fwd-down"]
WORKLOADS = BULK + ["fwd-rr", "fwd-crr"]

# (host port, sandbox port). On loopback the server listens on the host port itself, so every tool's client
# runs the same command. The ports differ from the tap-path ones (5201, 7000 on the host), which stay in use.
IPERF_PORTS = (15201, 5201)
RR_PORTS = (17000, 7000)
HOST_ADDR = "127.0.0.1"
SANDBOX_ADDR = "10.0.2.100"  # slirp4netns's add_hostfwd delivers here (the sandbox's address, --configure)

# Rows of the table: key, label, unit, higher is better. "up" and "down" are the client's view.
ROWS = [
    ("fwd-up", "fwd TCP upload, host->sandbox", "Gbit/s", True),
    ("fwd-down", "fwd TCP download, sandbox->host", "Gbit/s", True),
    ("fwd-rr", "fwd TCP RR, 1-byte ping-pong", "/s", True),
    ("fwd-crr", "fwd TCP CRR, connect+1 exchange+close", "/s", True),
]
CPU_ROWS = [("cpu:" + w, "helper CPU per GB, " + w, "s/GB", False) for w in BULK]
RSS_ROW = ("rss-fwd", "helper peak RSS under fwd bulk", "MiB", False)

# The benchmark's targets for forwarding (issue 9): row, peer, the least ratio ours/peer of the medians.
TARGETS = [
    ("fwd-up", "loopback", 0.8),
    ("fwd-down", "loopback", 0.8),
    ("fwd-up", "pasta", 1.2),
    ("fwd-down", "pasta", 1.2),
    ("fwd-crr", "loopback", 0.7),
]

# Runs in the sandbox (or on the host, for loopback): starts the server, says "ready" once a TCP socket
# listens on the port in this network namespace, and stops the server when the bench writes a line.
# If the server dies or does not listen within the deadline, it says why instead of "ready".
WRAPPER = r"""#!/bin/sh
d=$1 port=$2 tries=$3; shift 3
exec 3>"$d/up" 4<"$d/down"
"$@" >"$d/out" 2>"$d/err" </dev/null 3>&- 4<&- &
srv=$!
hex=$(printf ':%04X' "$port")
n=0
until cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
  awk -v h="$hex" '$4 == "0A" && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }'; do
  st=$(cut -d' ' -f3 "/proc/$srv/stat" 2>/dev/null)
  if [ -z "$st" ] || [ "$st" = Z ] || [ "$n" -ge "$tries" ]; then
    echo "failed: the server is not listening on port $port" >&3
    kill "$srv" 2>/dev/null
    exit 1
  fi
  n=$((n + 1))
  sleep 0.01
done
echo ready >&3
read _ <&4
kill "$srv" 2>/dev/null
wait "$srv"
"""
WRAPPER_POLL_S = 0.01  # the wrapper's polling interval above


# Each run takes the next host port above its base. connect/close workloads leave thousands of TIME_WAIT
# sockets on the host's loopback for 60 s; on one shared port, every tool's run met the previous tools' (a
# rootless-run fwd-crr run after slirp4netns's and pasta's made 266/s, alone 5,569-7,771/s), so the order of
# the tools, not the tools, set the figure. A fresh port per run keeps runs independent.
_RUNS = itertools.count()


def ports(workload):
    """(host port, sandbox port) for a new run of `workload`: call once per run and pass the pair on."""
    host_port, sandbox_port = IPERF_PORTS if workload in BULK else RR_PORTS
    return host_port + next(_RUNS) % 1000, sandbox_port


def server_cmd(workload, tool, rr_bench, forward):
    """The server, as run in the sandbox, or on the host's 127.0.0.1 at the host port for loopback."""
    host_port, sandbox_port = forward
    addr, port = (HOST_ADDR, host_port) if tool == "loopback" else ("0.0.0.0", sandbox_port)
    if workload in BULK:
        return ["iperf3", "-s", "-1", "-B", addr, "-p", str(port)]
    return [rr_bench, "server", "%s:%d" % (addr, port)]


def listen_port(tool, forward):
    """The port the wrapper waits for, in the namespace where the server runs."""
    host_port, sandbox_port = forward
    return host_port if tool == "loopback" else sandbox_port


def client_cmd(workload, duration, rr_bench, forward):
    """The client on the host, the same for every tool: it dials the published port on 127.0.0.1."""
    host_port = forward[0]
    if workload in BULK:
        c = ["iperf3", "-c", HOST_ADDR, "-p", str(host_port), "-t", "%g" % duration, "-J"]
        return c + ["--connect-timeout", "5000"] + (["-R"] if workload == "fwd-down" else [])
    return [rr_bench, "client", workload[len("fwd-") :], "%s:%d" % (HOST_ADDR, host_port), "%g" % duration]


def accepted_from(server_out):
    """The client address the iperf3 server in the sandbox saw ("Accepted connection from ADDR, port N"):
    it tells which path a forwarded connection took (pasta's splice: 127.0.0.1; slirp4netns: 10.0.2.2)."""
    m = re.search(r"Accepted connection from (\S+), port", server_out)
    return m.group(1) if m else None


# --- how each tool is told to forward --------------------------------------------------------------------


def pasta_spec(forward):
    """pasta's -t SPEC: bind HOST_ADDR:host_port, forward to sandbox_port. A loopback client takes pasta's
    splice path: pasta connects to the port on the sandbox's own loopback and splices, with no tap."""
    return "%s/%d:%d" % (HOST_ADDR, forward[0], forward[1])


def publish_spec(forward):
    """rootless-run's --publish HOSTIP:HOSTPORT:SANDBOXPORT."""
    return "%s:%d:%d" % (HOST_ADDR, forward[0], forward[1])


def hostfwd_request(forward):
    """slirp4netns's API request (anchors-features.md §1.3), as rootlesskit sends it."""
    args = {"proto": "tcp", "host_addr": HOST_ADDR, "host_port": forward[0],
            "guest_addr": SANDBOX_ADDR, "guest_port": forward[1]}  # fmt: skip
    return {"execute": "add_hostfwd", "arguments": args}


def add_hostfwd(path, forward, timeout):
    """One request on slirp4netns's API socket: send, half-close, read the reply to EOF. Returns the id."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(hostfwd_request(forward)).encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    try:
        fid = json.loads(reply)["return"]["id"]
    except (ValueError, KeyError, TypeError):
        fid = None
    if not isinstance(fid, int):
        raise RuntimeError("slirp4netns add_hostfwd replied %r" % reply.decode(errors="replace"))
    return fid
