"""scripts/stress_lib.py: what scripts/stress and scripts/soak share (imported by them, not run alone).

- outer(): the root check, the builds (scripts/build-release rootless-run; rr-probe, debug, for raw frames),
  then re-executing the caller inside scripts/sealed-netns, where inner code checks check_sealed().
- Host: the servers on the host's 127.0.0.1 that the sandbox reaches through the gateway 10.0.2.2: a sink that
  verifies the bystander's byte stream and records its rate, a 1-byte probe server, a UDP echo, a holder that
  accepts and keeps connections, a download source, an RR echo, and a fake DNS upstream answering every query.
- Sandbox: one `rootless-run -- sleep` as the unprivileged user; commands run in its network namespace as root
  through nsenter (the hostile sandbox's root may do the same: raw frames on tap0); the helper's RSS and fds.
Processes come from scripts/bench's Procs (spawn as rrtest, stop, kill everything on the way out).
Traffic only goes to 127.0.0.0/8 and the sandbox's namespace.
"""

import importlib.machinery
import importlib.util
import os
import queue
import random
import resource
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True

def load_bench():
    """scripts/bench as a module (it has no .py suffix, so a plain import cannot find it)."""
    loader = importlib.machinery.SourceFileLoader("bench", os.path.join(REPO, "scripts", "bench"))
    spec = importlib.util.spec_from_loader("bench", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


bench = load_bench()
import bench_sandboxes  # noqa: E402  (the helper's definition, shared with scripts/bench --sandboxes)

GATEWAY, DNS, SANDBOX = "10.0.2.2", "10.0.2.3", "10.0.2.100"
# Host ports (127.0.0.1), reached from the sandbox at the gateway.
SINK, PROBE, UDP_ECHO, HOLD, SOURCE, RR, UDP_DISCARD, FAKE_DNS = 7101, 7102, 7103, 7105, 7106, 7107, 7108, 5353
AGENT = os.path.join(REPO, "scripts", "stress_agent.py")
# The bystander's byte stream: a random block of prime length, repeated (a lost, doubled or reordered chunk
# shows at once).
PERIOD = 65521
PATTERN = random.Random(14).randbytes(PERIOD)
DOUBLED = PATTERN + PATTERN
CHUNK = 32768
T_READY = 15  # sandbox up
PROBE_TIMEOUT = 2.0  # a new connection must be served or refused within this (issue 14's target)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die(prog, msg):
    print("%s: %s" % (prog, msg), file=sys.stderr)
    sys.exit(2)


def outer(prog, script, argv, rootless_run=None):
    """Builds what is missing, then re-executes `script argv` inside scripts/sealed-netns (does not return)."""
    if os.geteuid() != 0:
        die(prog, "run as root: it creates a sealed network namespace and runs the sandbox as %s" % bench.USER)
    for b in ["unshare", "nsenter", "prlimit", "ip", "nft"]:
        if not shutil.which(b, path=bench.PATH):
            die(prog, "%s not found: apt-get install util-linux iproute2 nftables" % b)
    env = dict(os.environ)
    if rootless_run is None:
        log("%s: scripts/build-release rootless-run" % prog)
        r = subprocess.run([os.path.join(REPO, "scripts", "build-release"), "rootless-run"], cwd=REPO,
                           stdout=subprocess.PIPE, text=True)  # fmt: skip
        if r.returncode != 0 or not r.stdout.strip():
            die(prog, "building rootless-run failed; or pass --rootless-run PATH")
        rootless_run = r.stdout.split()[-1]
    log("%s: cargo build -p rr-tests --bin rr-probe" % prog)
    cargo = shutil.which("cargo") or os.path.expanduser("~/.cargo/bin/cargo")
    if subprocess.run([cargo, "build", "-q", "-p", "rr-tests", "--bin", "rr-probe"], cwd=REPO).returncode != 0:
        die(prog, "building rr-probe failed")
    env["RR_STRESS_ROOTLESS_RUN"] = os.path.abspath(rootless_run)
    env["RR_STRESS_RR_PROBE"] = os.path.join(REPO, "target", "debug", "rr-probe")
    cmd = [os.path.join(REPO, "scripts", "sealed-netns"), sys.executable, script] + argv
    os.execvpe(cmd[0], cmd, env)


def check_sealed(prog):
    if os.environ.get("RR_SEALED_NETNS") != "1":
        die(prog, "not in a sealed network namespace")
    bench.check_sealed()
    # Thousands of held connections and flows: the harness's own fd limit must not be the bottleneck. The
    # sandbox keeps the limit the harness was given (Sandbox), as a user's rootless-run would.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    os.environ["RR_STRESS_NOFILE"] = "%d:%d" % (soft, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


# ---------------------------------------------------------------------------------------------------------
# Host side


def listener(port, backlog=4096):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(backlog)
    return s


def spawn(fn, *args):
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


class Stream:
    """One bystander connection at the sink: bytes verified against PATTERN, (time, total) samples."""

    def __init__(self):
        self.total, self.corrupt, self.end, self.samples = 0, None, None, [(time.monotonic(), 0)]
        self.done = threading.Event()

    def rate(self, t0, t1):
        """Bytes per second between t0 and t1 (monotonic). Samples come every 50 ms while bytes flow and not at
        all in a stall, so the count at t is the last sample at or before t."""

        def at(t):
            return max((s[1] for s in self.samples if s[0] <= t), default=0)

        return (at(t1) - at(t0)) / max(t1 - t0, 1e-9)


class Host:
    """The host-side servers, each on its own thread(s)."""

    def __init__(self):
        self.streams = []  # sink connections, in order
        self.held = []
        self.downloads = []  # [(outcome, bytes)] of the source server's connections
        self.dns_answers = 0
        for port, fn in [(SINK, self.sink), (PROBE, self.probe), (HOLD, self.hold), (SOURCE, self.source),
                         (RR, self.rr)]:  # fmt: skip
            spawn(self.accept_loop, listener(port), fn)
        for port, fn in [(UDP_ECHO, self.udp_echo), (UDP_DISCARD, self.udp_discard)]:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", port))
            spawn(fn, udp)
        dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dns.bind(("127.0.0.1", FAKE_DNS))
        spawn(self.fake_dns, dns)

    def accept_loop(self, lst, fn):
        while True:
            try:
                conn, _ = lst.accept()
            except OSError:
                continue
            if fn == self.hold:
                self.held.append(conn)
            else:
                spawn(fn, conn)

    def next_stream(self, before, timeout=10):
        """The sink connection after the first `before` ones, once accepted; None by the deadline."""
        deadline = time.monotonic() + timeout
        while len(self.streams) <= before and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.streams[before] if len(self.streams) > before else None

    def hold(self, conn):
        pass  # kept open in self.held until release()

    def release(self):
        held, self.held = self.held, []
        for c in held:
            c.close()

    def sink(self, conn):
        st = Stream()
        self.streams.append(st)
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        last = 0.0
        try:
            while True:
                n = conn.recv_into(buf)
                if n == 0:
                    st.end = "eof"
                    break
                o = st.total % PERIOD
                if st.corrupt is None and view[:n] != DOUBLED[o : o + n]:
                    st.corrupt = st.total
                st.total += n
                now = time.monotonic()
                if now - last >= 0.05:
                    st.samples.append((now, st.total))
                    last = now
        except OSError as e:
            st.end = "reset" if isinstance(e, ConnectionResetError) else "error " + str(e)
        st.samples.append((time.monotonic(), st.total))
        conn.close()
        st.done.set()

    def source(self, conn):
        """Sends the pattern until the peer goes; records how the connection ended for us."""
        sent, outcome = 0, "eof"
        try:
            while True:
                o = sent % PERIOD
                sent += conn.send(DOUBLED[o : o + CHUNK])
        except (BrokenPipeError, ConnectionResetError):
            outcome = "reset"
        except OSError as e:
            outcome = "error " + str(e)
        self.downloads.append((outcome, sent))
        conn.close()

    def probe(self, conn):
        conn.settimeout(PROBE_TIMEOUT)
        try:
            if conn.recv(1):
                conn.sendall(b"k")
        except OSError:
            pass
        conn.close()

    def rr(self, conn):
        try:
            while True:
                b = conn.recv(64)
                if not b:
                    break
                conn.sendall(b)
        except OSError:
            pass
        conn.close()

    def udp_echo(self, sock):
        while True:
            data, peer = sock.recvfrom(65536)
            sock.sendto(data, peer)

    def udp_discard(self, sock):
        while True:
            sock.recv(65536)

    def fake_dns(self, sock):
        """Answers every query that has a question with one A record (192.0.2.77, TTL 60); ignores the rest."""
        while True:
            q, peer = sock.recvfrom(65536)
            if len(q) < 12 or struct.unpack("!H", q[4:6])[0] != 1:
                continue
            end = 12
            while end < len(q) and q[end] != 0:
                end += 1 + q[end]
            if end + 5 > len(q):
                continue
            question = q[12 : end + 5]
            head = q[:2] + b"\x81\x80" + struct.pack("!HHHH", 1, 1, 0, 0)
            answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 77])
            sock.sendto(head + question + answer, peer)
            self.dns_answers += 1


# ---------------------------------------------------------------------------------------------------------
# The sandbox and its helper


netns_of = bench_sandboxes.netns_of


def status_kb(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Sandbox:
    """`rootless-run ARGS -- sleep` as the unprivileged user. The helper is every process of the run that is
    not in the sandbox's network namespace (today the rootless-run process itself, whose thread runs the
    stack; a confined stack process of its own counts the same way)."""

    def __init__(self, procs, tmp, extra=()):
        self.procs = procs
        self.log = os.path.join(tmp, "rootless-run-%d.log" % time.monotonic_ns())
        # prlimit execs rootless-run with the fd limit the harness started with (check_sealed raised its own),
        # or the one scripts/stress --nofile asks for.
        argv = ["prlimit", "--nofile=" + os.environ.get("RR_STRESS_NOFILE", "1024:1024"), "--",
                os.environ["RR_STRESS_ROOTLESS_RUN"], "--dns-upstream", "127.0.0.1:%d" % FAKE_DNS]  # fmt: skip
        self.p = procs.spawn(argv + list(extra) + ["--", "sleep", "100000"], self.log)
        self.ns_pid = None
        ours = netns_of(os.getpid())
        deadline = time.monotonic() + T_READY
        while time.monotonic() < deadline and self.ns_pid is None:
            for pid, _ in bench.descendants(self.p.pid):
                ns = netns_of(pid)
                if ns and ns != ours and self.tap_ready(pid):
                    self.ns_pid = pid
                    break
            else:
                time.sleep(0.05)
        if self.ns_pid is None:
            raise RuntimeError("sandbox not up within %d s: %s" % (T_READY, bench.tail(self.log)))
        self.netns = netns_of(self.ns_pid)

    @staticmethod
    def tap_ready(pid):
        r = subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % pid, "ip", "-4", "-o", "addr", "show", "tap0"],
                           capture_output=True, text=True)  # fmt: skip
        return SANDBOX in r.stdout

    def helpers(self):
        if self.procs.exited(self.p) is not None:
            return []
        return bench_sandboxes.helper_pids(self.p.pid, self.netns, bench.descendants)

    def up(self):
        return bool(self.helpers())

    def sample(self):
        """(RSS KiB, open fds) summed over the helper processes; None when it is gone."""
        pids = self.helpers()
        if not pids:
            return None
        rss = fds = 0
        for pid in pids:
            rss += status_kb(pid, "VmRSS") or 0
            try:
                fds += len(os.listdir("/proc/%d/fd" % pid))
            except OSError:
                pass
        return rss, fds

    def run(self, argv, stdin=subprocess.DEVNULL):
        """argv in the sandbox's network namespace, as root; stdout is a pipe of text lines."""
        cmd = ["nsenter", "--net=/proc/%d/ns/net" % self.ns_pid, "--"] + argv
        p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)  # fmt: skip
        p.lines = queue.Queue()
        spawn(pump, p)
        return p

    def agent(self, *args):
        return self.run([sys.executable, AGENT] + [str(a) for a in args], stdin=subprocess.PIPE)

    def probe_tool(self, *args):
        """rr-probe ARGS in the sandbox, to the end; its output."""
        p = self.run([os.environ["RR_STRESS_RR_PROBE"]] + [str(a) for a in args])
        p.wait(timeout=300)
        lines = []
        while True:
            line = read_line(p, 10)
            if line is None:
                return "\n".join(lines)
            lines.append(line)

    def stop(self):
        self.procs.stop(self.p)


def pump(p):
    """Moves p's output lines into p.lines, then None at EOF (so waiting on a line has a deadline)."""
    for line in p.stdout:
        p.lines.put(line.strip())
    p.lines.put(None)


class Sampler:
    """Samples the helper's (RSS KiB, fds) every `every` seconds on a thread; keeps (time, rss, fds)."""

    def __init__(self, sandbox, every=0.2):
        self.sb, self.every, self.samples = sandbox, every, []
        self.stopping = threading.Event()
        self.t = spawn(self.loop)

    def loop(self):
        while not self.stopping.is_set():
            s = self.sb.sample()
            if s is not None:
                self.samples.append((time.monotonic(), s[0], s[1]))
            self.stopping.wait(self.every)

    def stop(self):
        self.stopping.set()
        self.t.join()

    def peak(self, since=0.0):
        inside = [s for s in self.samples if s[0] >= since] or [(0, 0, 0)]
        return max(s[1] for s in inside), max(s[2] for s in inside)


def read_line(p, timeout, want=""):
    """The next line of p's output (from `Sandbox.run`) that starts with `want`; None at EOF or the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = p.lines.get(timeout=max(0.001, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if line is None:
            p.lines.put(None)  # EOF stays visible
            return None
        if line.startswith(want):
            return line


def mib(kb):
    return "%.1f" % (kb / 1024.0) if kb is not None else "-"


def verdict(ok):
    return "met" if ok else "MISSED"
