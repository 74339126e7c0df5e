#!/usr/bin/python3
"""scripts/bench_pasta.py: the pasta drop-in under real podman 5 beside real pasta under podman 5.

Usage (as root; re-executes itself under scripts/sealed-netns):
    scripts/bench_pasta.py                          # 3 rounds, 4 s per run, MTU 65520 and 1500
    scripts/bench_pasta.py --rounds 1 --duration 2  # a short smoke
    scripts/bench_pasta.py --rr-pasta PATH         # default: the build of scripts/build-release rr-pasta
    scripts/bench --podman                          # the same, run by scripts/bench after its own table

Both tools run in the Debian trixie root that scripts/trixie-root builds (podman 5.4, its own pasta),
entered as tests/src/trixie-enter.sh enters it for tests/tests/dropin_pasta_podman.rs: as the user rrtest,
with rr-pasta first in helper_binaries_dir ("rr-pasta") or nothing there, so that podman finds trixie's
/usr/bin/pasta ("pasta"; `podman info` is checked for the helper it found). Workloads, each `podman run --rm --network pasta:--map-gw[,-m,1500]` of an image
holding busybox, iperf3 and rr-bench (copied from this host with the libraries they link):
  tcp-up, tcp-down   iperf3 -c to the gateway address (the host's 127.0.0.1 with --map-gw), -R for down
  fwd-up             a container's iperf3 -s published on 127.0.0.1, the client on the host's loopback
                     (`podman run --network host`)
  crr                rr-bench client crr against the host's 127.0.0.1 through the gateway
tcp-up and tcp-down are repeated at MTU 1500 (pasta's `-m 1500`). Rounds alternate the tools; the table
shows medians (min-max) and the ratio drop-in/pasta. Helper CPU and memory are not measured here.
Safety: inside scripts/sealed-netns; traffic only to 127.0.0.1 and the containers. pasta is never pinged.
"""

import argparse
import json
import os
import pwd
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = "/var/cache/rootless-run/trixie"
ENTER = os.path.join(REPO, "tests", "src", "trixie-enter.sh")
USER = "rrtest"
TOOLS = ["rr-pasta", "pasta"]
IPERF_PORT, RR_PORT, FWD_PORT = 5301, 5302, 5303
WORKLOADS = ["tcp-up", "tcp-down", "fwd-up", "crr", "tcp-up@1500", "tcp-down@1500"]


def die(msg):
    sys.exit("bench_pasta: " + msg)


def inner_script(duration):
    """What runs as rrtest in the trixie root: one line `RESULT name value` per workload."""
    net = "pasta:--map-gw"
    run = "podman run --rm --network %s localhost/bench" % net
    run1500 = "podman run --rm --network %s,-m,1500 localhost/bench" % net
    d = "%g" % duration
    return f"""set -eu
tar -C /rr/img -c . | podman import -q - localhost/bench >/dev/null
echo "HELPER $(podman info --format '{{{{.Host.Pasta.Executable}}}}')"
gw=$(ip route | sed -n 's/^default via \\([^ ]*\\).*/\\1/p' | head -n1)
bulk() {{ # NAME RUN ARGS: iperf3 to the gateway, bits/s of the receiver
  $2 iperf3 -c $gw -p {IPERF_PORT} -t {d} -J $3 > /tmp/$1.json 2>&1 || head -c 600 /tmp/$1.json >&2
  echo "RESULT $1 $(sed -n 's/.*"bits_per_second":[[:space:]]*\\([0-9.e+]*\\).*/\\1/p' /tmp/$1.json | tail -n1)"
}}
bulk tcp-up "{run}" ""
bulk tcp-down "{run}" "-R"
bulk tcp-up@1500 "{run1500}" ""
bulk tcp-down@1500 "{run1500}" "-R"
echo "RESULT crr $({run} rr-bench client crr $gw:{RR_PORT} {d} | sed -n 's/.*"rate":[[:space:]]*\\([0-9.e+]*\\).*/\\1/p')"
podman run -d --name srv --network {net} -p 127.0.0.1:{FWD_PORT}:5201 localhost/bench iperf3 -s -p 5201 --forceflush >/dev/null
i=0; until podman logs srv 2>&1 | grep -q listening; do i=$((i+1)); [ $i -lt 300 ]; sleep 0.1; done
podman run --rm --network host localhost/bench iperf3 -c 127.0.0.1 -p {FWD_PORT} -t {d} -J > /tmp/fwd.json || true
echo "RESULT fwd-up $(sed -n 's/.*"bits_per_second":[[:space:]]*\\([0-9.e+]*\\).*/\\1/p' /tmp/fwd.json | tail -n1)"
podman rm -f -t 0 srv >/dev/null
"""


def image_tree(img, rr_bench):
    """busybox from the trixie root; iperf3 and rr-bench from this host, with every library they link."""
    os.makedirs(os.path.join(img, "bin"))
    os.makedirs(os.path.join(img, "tmp"))  # iperf3 keeps its stream buffer in a file there
    os.chmod(os.path.join(img, "tmp"), 0o1777)
    shutil.copy(os.path.join(ROOT, "usr/bin/busybox"), os.path.join(img, "bin/busybox"))
    for c in ["sh", "ip", "sed", "cat", "sleep"]:
        os.symlink("busybox", os.path.join(img, "bin", c))
    for exe in [shutil.which("iperf3"), rr_bench]:
        shutil.copy(exe, os.path.join(img, "bin", os.path.basename(exe)))
        ldd = subprocess.run(["ldd", exe], capture_output=True, text=True, check=True).stdout
        for lib in re.findall(r"(/\S+)", ldd):
            dst = img + lib
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy(os.path.realpath(lib), dst)


def session(shared, tool, rr_pasta, duration):
    """One podman session for `tool`; returns {workload: value}."""
    pasta = os.path.join(shared, "pasta")
    if os.path.exists(pasta):
        os.remove(pasta)
    if tool == "rr-pasta":
        shutil.copy(rr_pasta, pasta)
    with open(os.path.join(shared, "inner.sh"), "w") as f:
        f.write(inner_script(duration))
    u = pwd.getpwnam(USER)
    env = dict(os.environ, ROOT=ROOT, S=shared, U=str(u.pw_uid), G=str(u.pw_gid))
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", ENTER], env=env,
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    out = {}
    want = "/opt/rr/pasta" if tool == "rr-pasta" else "/usr/bin/pasta"
    if "HELPER " + want not in r.stdout:
        sys.stderr.write(r.stdout + r.stderr)
        die("%s: podman did not pick %s" % (tool, want))
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "RESULT":
            out[parts[1]] = float(parts[2])
    if r.returncode != 0 or not out:
        sys.stderr.write(r.stdout + r.stderr)
        die("%s: the podman session failed (exit %d)" % (tool, r.returncode))
    return out


def table(results):
    def cell(vals, unit):
        if not vals:
            return "-"
        scale = 1e9 if unit == "Gbit/s" else 1.0
        return "%.2f (%.2f-%.2f)" % (statistics.median(vals) / scale, min(vals) / scale, max(vals) / scale)

    print("%-15s %-26s %-26s %s" % ("workload", "rr-pasta under podman", "pasta under podman", "ours/pasta"))
    for w in WORKLOADS:
        unit = "conn/s" if w == "crr" else "Gbit/s"
        ours, theirs = results["rr-pasta"].get(w, []), results["pasta"].get(w, [])
        ratio = "%.1fx" % (statistics.median(ours) / statistics.median(theirs)) if ours and theirs and statistics.median(theirs) else "-"
        print("%-15s %-26s %-26s %s   [%s]" % (w, cell(ours, unit), cell(theirs, unit), ratio, unit))


def inner(args):
    bench_dir = tempfile.mkdtemp(prefix="rr-bench-pasta-")
    os.chmod(bench_dir, 0o755)
    shared = os.path.join(bench_dir, "shared")
    os.makedirs(shared)
    os.chmod(shared, 0o1777)
    with open(os.path.join(shared, "resolv.conf"), "w") as f:
        f.write("nameserver 127.0.0.1\n")
    rr_bench = os.path.join(bench_dir, "rr-bench")
    rustc = shutil.which("rustc") or os.path.expanduser("~/.cargo/bin/rustc")
    subprocess.run([rustc, "-O", "--edition", "2021", os.path.join(REPO, "tests/src/bin/rr-bench.rs"), "-o", rr_bench], check=True)
    image_tree(os.path.join(shared, "img"), rr_bench)
    servers = [subprocess.Popen(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(IPERF_PORT)], stdout=subprocess.DEVNULL),
               subprocess.Popen([rr_bench, "server", "127.0.0.1:%d" % RR_PORT], stdout=subprocess.DEVNULL)]  # fmt: skip
    results = {t: {} for t in TOOLS}
    try:
        for rnd in range(args.rounds):
            for tool in TOOLS if rnd % 2 == 0 else reversed(TOOLS):
                for w, v in session(shared, tool, args.rr_pasta, args.duration).items():
                    results[tool].setdefault(w, []).append(v)
    finally:
        for s in servers:
            s.terminate()
        shutil.rmtree(bench_dir, ignore_errors=True)
    print(json.dumps(results), file=sys.stderr)
    table(results)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=4)
    p.add_argument("--rr-pasta", default=None, help="default: build it with scripts/build-release rr-pasta")
    args = p.parse_args()
    if args.rr_pasta is None and os.environ.get("RR_SEALED_NETNS") != "1":
        r = subprocess.run([os.path.join(REPO, "scripts", "build-release"), "rr-pasta"], cwd=REPO,
                           stdout=subprocess.PIPE, text=True)  # fmt: skip
        if r.returncode != 0:
            die("building rr-pasta failed; give --rr-pasta PATH")
        args.rr_pasta = r.stdout.strip()
        sys.argv += ["--rr-pasta", args.rr_pasta]
    if os.geteuid() != 0:
        die("run as root: it enters the trixie root and a sealed network namespace")
    if not os.path.exists(os.path.join(ROOT, ".rr-trixie-root")):
        die("no trixie root at %s: run sudo scripts/trixie-root" % ROOT)
    if not os.path.exists(args.rr_pasta):
        die("%s missing: scripts/build-release rr-pasta, or give --rr-pasta PATH" % args.rr_pasta)
    args.rr_pasta = os.path.abspath(args.rr_pasta)
    for b in ["iperf3", "ldd", "unshare"]:
        if not shutil.which(b):
            die("%s not found (apt-get install iperf3 libc-bin util-linux)" % b)
    if os.environ.get("RR_SEALED_NETNS") != "1":
        sealed = os.path.join(REPO, "scripts", "sealed-netns")
        os.execv(sealed, [sealed, sys.executable, os.path.abspath(__file__)] + sys.argv[1:])
    inner(args)


if __name__ == "__main__":
    main()
