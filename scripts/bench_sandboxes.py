"""scripts/bench_sandboxes.py: many sandboxes at once, `scripts/bench --sandboxes N[,N...]` (issue 15, item 4).
Imported by scripts/bench, which calls main() inside its sealed network namespace; not run alone.

For each N (default 1, 10, 100), round by round, each tool starts N sandboxes at once as the unprivileged user:
all N are spawned behind a closed Gate, which the bench then opens for all of them in one call. Each runs
WRAPPER: one `rr-bench client once` exchange (connect, 1 byte each way, close) through the gateway
10.0.2.2 to the bench's rr-bench server on the host's 127.0.0.1, then it idles until the bench says exit. Per
tool and N it reports:
- start to first connection, p50 and p95 over every sandbox of every round (a batch of fewer than MIN_SAMPLES
  sandboxes is repeated, without its idle window, until it gave that many start-ups per round): from the
  bench's time.time() as it opens the gate to the wrapper's $EPOCHREALTIME (bash) once the exchange is
  done, in the sandbox. One clock (CLOCK_REALTIME), each end read where its event happens, so the bench's
  own latency in spawning the tools and in reading the wrappers' reports does not count (but for
  slirp4netns, whose orchestration by the bench, Bench.slirp_start, starts at the gate).
- CPU per sandbox: user+system CPU (getrusage RUSAGE_CHILDREN, to the microsecond) of every process of the
  batch over its whole life, start, exchange, idle window and exit, once all are reaped, per sandbox. The
  helpers use next to nothing while idle, so this is what a start and an exit cost; on a machine with few
  cores, N starting at once queue for it. The work of kernel threads (namespaces are freed in workqueues)
  is not in it.
- failures: sandboxes that did not come up, whose exchange failed or took longer than T_BATCH, whose helper
  died while idle, or whose tool did not exit 0 once told to.
- total helper RSS and PSS (Rss, Pss and Pss_File of /proc/PID/smaps_rollup, the larger of the readings at
  the start and the end of the idle window, summed over the N runs): PSS charges a page shared by k processes
  1/k to each, so file-backed text that the N helpers share shows as a Pss_File close to one helper's.
- helper CPU while idle: utime+stime (/proc/PID/stat, all threads) of every helper over an idle window of
  --idle seconds (default 60) that opens once every sandbox of the batch has reported, and the wakeups in it
  (voluntary plus involuntary context switches of every thread, /proc/PID/task/TID/status). Idle is not
  silent: a sandbox's kernel keeps soliciting a router that does not answer (IPv6 router solicitations with
  exponential backoff, RFC 7559: about 4 in the first minute) and sends MLD reports at first, and each such
  frame wakes the helper. So the frames the sandbox sent in the window (tap0's transmit count in
  /proc/PID/net/dev of a process inside) are counted too, and the wakeups beyond them, per run, are what the
  helper woke for on its own: timers and polling.
The helper is every process of a run outside the sandbox's network namespace, as scripts/stress_lib.py's
Sandbox counts it (helper_pids, shared with it): rootless-run and its rr-netstack; pasta; slirp4netns (the
`unshare -Urn` that holds slirp4netns's sandbox is inside it).
The tools start as scripts/bench starts them: Bench.ours_argv, Bench.pasta_argv, and Bench.slirp_start, the
last on a thread per sandbox, since it waits for each slirp4netns's ready byte before it lets the command run
(an orchestrator must do that for slirp4netns, and its cost counts). The floor, "loopback", has no helper: the
same wrapper first makes the namespaces `unshare -Urn` makes (held to the end, as a sandbox holds its own),
then runs the client against 127.0.0.1 on the host's loopback: what N namespace set-ups and N exchanges cost
the kernel with no network helper. On a machine with few cores that is what bounds N at once.
Between batches the bench waits SETTLE_S plus SETTLE_PER_SANDBOX_S per sandbox of the last batch, while the
kernel tears the namespaces down in its workqueues.
Targets, printed met/MISSED under the table (thresholds here only, never in cargo test): the constants
below, applied by targets().
Unlike bench_forward.py and the other tool modules, this one starts processes and has a measurement loop of
its own: N sandboxes at once do not fit scripts/bench's Run, which handles one sandbox at a time.
"""

import datetime
import fcntl
import json
import os
import resource
import select
import shutil
import signal
import statistics
import sys
import threading
import time

OURS, FLOOR = "rootless-run", "loopback"
TOOLS = ["slirp4netns", "pasta", OURS, FLOOR]  # scripts/bench's order
PEERS = ["slirp4netns", "pasta"]
DEFAULT_COUNTS = "1,10,100"
IDLE_S = 60.0  # default idle window (s)
T_BATCH = 60.0  # every sandbox of a batch has reported within this (s) of the batch's start, or it failed
T_EXIT = 30.0  # every tool of a batch has exited within this (s) of being told to
SETTLE_S, SETTLE_PER_SANDBOX_S = 1.0, 0.03  # pause after a batch, while the kernel frees its namespaces
# After spawning a batch behind its gate, every tool's flock must be waiting on it within this (s).
T_GATE = 30.0
MIN_SAMPLES = 40  # start-up samples per tool, N and round: a smaller batch is repeated, without idle window;
# 40 a round, so that over two rounds p95 is the 4th-largest of 80 start-ups, not the 2nd-largest of 20
POLL_MS = 200  # how often the bench looks for tools that died before reporting

# Targets (issue 15, item 4). Start to first connection: p50 and p95 at most P_OVER_FLOOR x the floor's, and
# below slirp4netns's and pasta's. Memory: the total RSS of N helpers at most N x a lone helper's (N = 1), and
# their file-backed PSS at most PSS_FILE_OVER_LONE x a lone helper's (the text is shared, not N copies). Idle:
# "no CPU" is below what utime+stime resolve (10 ms ticks, summed over N helpers): at most IDLE_CPU_MS_PER_MIN
# per helper per minute; and at most IDLE_OWN_WAKEUPS_PER_MIN wakeups per helper per minute beyond the frames
# its sandbox sent (no busy-poll, no periodic timer; a real deadline a minute away would still fit).
P_OVER_FLOOR = 1.5
PSS_FILE_OVER_LONE = 1.5
IDLE_CPU_MS_PER_MIN = 1.0
IDLE_OWN_WAKEUPS_PER_MIN = 1.0

# Runs in the sandbox (or, for the floor, on the host): the client once, "done RC TIME" on DIR/up, then idle
# until a line comes on DIR/down. bash for $EPOCHREALTIME, read without a fork.
WRAPPER = r"""#!/bin/bash
# bench-sandboxes-wrap DIR [--floor] CMD...
d=$1; shift
exec 3>"$d/up" 4<"$d/down"
if [ "$1" = --floor ]; then
  shift
  exec 5< <(exec unshare -Urn sh -c 'echo up; exec sleep 1000000')
  if ! read -r _ <&5; then echo "done 125 $EPOCHREALTIME" >&3; exit 125; fi
fi
"$@" >"$d/out" 2>"$d/err" </dev/null 3>&- 4<&- 5<&-
echo "done $? $EPOCHREALTIME" >&3
read -r _ <&4
"""
WRAPPER_NAME = "bench-sandboxes-wrap"


def configure(args, all_tools, die):
    """Checks --sandboxes and --idle; sets args.counts and narrows args.tools to the tools this runs (all four
    unless --tools named others, which is refused)."""
    try:
        args.counts = [int(n) for n in args.sandboxes.split(",") if n]
    except ValueError:
        die("--sandboxes %s: not a comma list of numbers" % args.sandboxes)
    if not args.counts or any(n < 1 for n in args.counts):
        die("--sandboxes %s: each N must be at least 1" % args.sandboxes)
    if args.idle < 1:
        die("--idle %g: the idle window must be at least 1 s" % args.idle)
    if args.tools != all_tools:  # --tools given: only ours
        other = [t for t in args.tools if t not in TOOLS]
        if other:
            die("--sandboxes runs %s, not %s" % (",".join(TOOLS), ",".join(other)))
    args.tools = [t for t in TOOLS if t in args.tools]


# ----------------------------------------------------------------------------------------------------------
# /proc


def netns_of(pid):
    try:
        return os.readlink("/proc/%d/ns/net" % pid)
    except OSError:
        return None


def helper_pids(root, sandbox_netns, descendants):
    """The helper of a run started as root: root and every process below it (descendants(root) gives
    [(pid, parent)]) that is not in the sandbox's network namespace."""
    return [root] + [pid for pid, _ in descendants(root) if netns_of(pid) != sandbox_netns]


def rollup_kb(pid):
    """{Rss, Pss, Pss_File: KiB} from /proc/PID/smaps_rollup; None if the process is gone."""
    want = {"Rss", "Pss", "Pss_File"}
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in want:
                    out[key] = int(rest.split()[0])
    except (OSError, ValueError):
        return None
    return out if len(out) == len(want) else None


def cpu_ticks(pid, children=False):
    """utime+stime of a process, every thread, in clock ticks, plus cutime+cstime (its reaped children's) if
    children; None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
        fields = s[s.rindex(")") + 2 :].split()
        return sum(int(x) for x in fields[11 : 15 if children else 13])
    except (OSError, ValueError, IndexError):
        return None


def process_tree(parent_of):
    """descendants(root) -> [(pid, parent)] below root, from one scan of /proc (scripts/bench's descendants
    scans /proc for every root, too slow for hundreds of them); parent_of is scripts/bench's."""
    children = {}
    for d in os.listdir("/proc"):
        parent = parent_of(int(d)) if d.isdigit() else None
        if parent is not None:
            children.setdefault(parent, []).append(int(d))

    def descendants(root):
        out, todo = [], [root]
        while todo:
            cur = todo.pop()
            for pid in children.get(cur, []):
                out.append((pid, cur))
                todo.append(pid)
        return out

    return descendants


def wakeups(pid):
    """Context switches, voluntary and not, summed over a process's live threads; None if it is gone."""
    total = 0
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            continue  # the thread exited meanwhile
    return total


def frames_sent(pid):
    """Frames sent by the network namespace pid is in, on every interface but lo (a sandbox has tap0 alone);
    None if the process is gone."""
    total = 0
    try:
        with open("/proc/%d/net/dev" % pid) as f:
            lines = f.readlines()[2:]
    except OSError:
        return None
    for line in lines:
        name, _, counters = line.partition(":")
        if name.strip() != "lo":
            total += int(counters.split()[9])  # transmit packets: receive has 8 columns before it, then bytes
    return total


# ----------------------------------------------------------------------------------------------------------
# One sandbox of a batch


class Gate:
    """Holds a batch's sandboxes at the door and lets them all in at once. The bench holds an exclusive flock(2)
    on a file of the batch; each tool is spawned behind `flock -s -F FILE` (util-linux), which execs the tool
    in place once it gets a shared lock, so the pid the bench started stays the tool's. slirp4netns's threads
    wait on `opened` instead: Bench.slirp_start must spawn slirp4netns once the sandbox's namespace exists,
    so its orchestration (two spawns from the bench per sandbox) is in its time, as it would be in any."""

    def __init__(self, batch_dir, uid):
        self.path = os.path.join(batch_dir, "gate")
        self.fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o644)
        os.fchown(self.fd, uid, -1)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.opened = threading.Event()

    def argv(self):
        return ["flock", "-s", "-F", self.path]

    def wait_for(self, waiters, timeout):
        """Waits until `waiters` flock(1)s are blocked on the gate (their requests show in /proc/locks as
        "-> FLOCK" lines naming the file's inode), or dies after timeout s."""
        ino = ":%d " % os.fstat(self.fd).st_ino
        deadline = time.monotonic() + timeout
        while True:
            with open("/proc/locks") as f:
                blocked = sum(1 for line in f if "-> FLOCK" in line and ino in line)
            if blocked >= waiters:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("%d of %d sandboxes reached the gate within %.0f s" % (blocked, waiters, timeout))
            time.sleep(0.002)

    def open(self):
        """Lets every sandbox in; returns the moment (time.time()), each sandbox's start."""
        t = time.time()
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.opened.set()
        os.close(self.fd)
        return t


class Sandbox:
    """One sandbox: its directory with the two FIFOs (as scripts/bench's Run), its processes, its result."""

    def __init__(self, bench, tool, batch_dir, index):
        self.bench, self.tool = bench, tool
        self.dir = os.path.join(batch_dir, "%03d" % index)
        os.mkdir(self.dir)
        os.chown(self.dir, bench.procs.uid, bench.procs.gid)
        for f in ("up", "down"):
            os.mkfifo(os.path.join(self.dir, f), 0o600)
            os.chown(os.path.join(self.dir, f), bench.procs.uid, bench.procs.gid)
        # Our ends first, so neither side's open() blocks.
        self.up = os.open(os.path.join(self.dir, "up"), os.O_RDONLY | os.O_NONBLOCK)
        self.down = os.open(os.path.join(self.dir, "down"), os.O_RDWR)
        self.log = os.path.join(self.dir, "tool.log")
        self.buf = b""
        self.procs = []  # the started processes, the one that ends with the command first
        self.root = None  # the process the helper descends from (None for the floor)
        self.thread = None
        self.spawned = None  # time.time() when the gate opened
        self.ms = None  # start to first connection
        self.error = None
        self.helpers = []
        self.inside = None  # a process in the sandbox's network namespace
        self.mem = {}  # {Rss, Pss, Pss_File: KiB}, summed over the helper processes

    def fail(self, why):
        if self.error is None:
            self.error = why

    def start(self, gate, wrapper, client, mtu):
        """Starts the tool behind the gate: it runs once the gate opens."""
        b, cmd = self.bench, [wrapper, self.dir] + client
        if self.tool == "slirp4netns":
            self.thread = threading.Thread(target=self.start_slirp, args=(gate, cmd, mtu), daemon=True)
            self.thread.start()
            return
        if self.tool == FLOOR:
            self.procs = [b.procs.spawn(gate.argv() + [wrapper, self.dir, "--floor"] + client, self.log)]
            return
        argv = b.pasta_argv(mtu) if self.tool == "pasta" else b.ours_argv(mtu)
        self.procs = [b.procs.spawn(gate.argv() + argv + ["--"] + cmd, self.log)]
        self.root = self.procs[0].pid  # flock -F execs the tool in place

    def start_slirp(self, gate, cmd, mtu):
        """On its own thread, once the gate opens: Bench.slirp_start blocks until slirp4netns is ready and the
        command released."""
        gate.opened.wait()
        try:
            procs = self.bench.slirp_start(cmd, mtu, self.log)
        except (RuntimeError, OSError) as e:
            self.fail("slirp4netns did not start: %s" % e)
            return
        self.procs, self.root = procs, procs[1].pid

    def read_report(self):
        """Reads what the wrapper wrote; True once its report is in (or it can no longer come)."""
        try:
            chunk = os.read(self.up, 4096)
        except BlockingIOError:
            return False
        self.buf += chunk
        if b"\n" not in self.buf:
            if not chunk:
                self.fail("the wrapper ended without a report")
                return True
            return False
        words = self.buf.split(b"\n", 1)[0].decode(errors="replace").split()
        if len(words) != 3 or words[0] != "done":
            self.fail("unexpected report %r" % self.buf)
            return True
        if words[1] != "0":
            self.fail("the client exited %s: %s" % (words[1], tail(os.path.join(self.dir, "err"))))
        if self.spawned is not None:
            self.ms = (float(words[2]) - self.spawned) * 1000
        return True

    def died(self):
        """Why this sandbox can no longer report, or None while it still may."""
        if self.error is not None:
            return self.error
        for p in list(self.procs):
            if self.bench.procs.exited(p) is not None:
                return "%s exited with %s before its report" % (self.bench.procs.name(p), self.bench.procs.exited(p))
        return None

    def find_helpers(self, descendants):
        """The helper's processes, from the root the tool started: every one outside the sandbox's netns."""
        if self.root is None:
            return
        ours = netns_of(os.getpid())
        if self.tool == "slirp4netns":
            self.inside = self.procs[0].pid  # the unshare that holds the command
        else:
            self.inside = next((pid for pid, _ in descendants(self.root) if netns_of(pid) not in (None, ours)), None)
        sandbox = None if self.inside is None else netns_of(self.inside)
        if sandbox is None or sandbox == ours:
            self.fail("no sandbox network namespace below pid %d" % self.root)
            return
        self.helpers = helper_pids(self.root, sandbox, descendants)

    def sample(self):
        """(CPU ticks, wakeups) summed over the helpers and the frames the sandbox sent; the memory is kept as
        the larger reading so far. None (and the run failed) if a helper or the sandbox is gone."""
        frames = frames_sent(self.inside)
        if frames is None:
            self.fail("the sandbox (pid %d) ended while idle" % self.inside)
            return None
        ticks = switches = 0
        mem = {"Rss": 0, "Pss": 0, "Pss_File": 0}
        for pid in self.helpers:
            t, w, m = cpu_ticks(pid), wakeups(pid), rollup_kb(pid)
            if t is None or w is None or m is None:
                self.fail("helper process %d died while idle" % pid)
                return None
            ticks, switches = ticks + t, switches + w
            mem = {k: mem[k] + m[k] for k in mem}
        if mem["Rss"] > self.mem.get("Rss", 0):
            self.mem = mem
        return ticks, switches, frames

    def finish(self, deadline):
        """Tells the wrapper to exit, waits for the tool; a status other than 0 fails the run."""
        if self.thread is not None:
            self.thread.join(timeout=max(0.0, deadline - time.monotonic()))  # slirp_start returns after the release
        if not self.procs:
            return
        try:
            os.write(self.down, b"exit\n")
        except OSError:
            pass
        rc = self.bench.procs.wait(self.procs[0], max(0.0, deadline - time.monotonic()))
        if rc is None:
            self.fail("%s did not exit within %g s of the end" % (self.tool, T_EXIT))
        elif rc != 0:
            self.fail("%s exited %s at the end: %s" % (self.tool, rc, tail(self.log)))

    def close(self):
        if self.thread is not None:
            self.thread.join(timeout=T_EXIT)
        for p in self.procs:
            self.bench.procs.stop(p, timeout=1)
        for fd in (self.up, self.down):
            os.close(fd)


def tail(path, n=4):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(line.strip() for line in f.readlines()[-n:])
    except OSError:
        return ""


# ----------------------------------------------------------------------------------------------------------
# One batch: N sandboxes of one tool


def batch(bench, b, tool, n, rnd, rep, idle_s, mtu):
    """Starts n sandboxes of tool at once, waits for their reports, measures the helpers' memory and the idle
    window (unless idle_s is None: a repetition for more start-up samples), stops them. Returns {tool, n,
    round, rep, cpu_ms (the mean per sandbox), ms: [per sandbox, None if it failed], failures, errors,
    mem, idle}."""
    d = os.path.join(bench.tmp, "sandboxes-%s-%d-r%d-%d" % (tool, n, rnd + 1, rep + 1))
    os.mkdir(d, 0o755)
    client = [bench.rr_bench, "client", "once", "%s:%d" % (bench.target(tool), b.RR_PORT), "0"]
    wrapper = os.path.join(bench.tmp, "bin", WRAPPER_NAME)
    runs = []
    used = children_cpu_s()
    try:
        runs = [Sandbox(bench, tool, d, i) for i in range(n)]
        gate = Gate(d, bench.procs.uid)
        for r in runs:
            r.start(gate, wrapper, client, mtu)
        gate.wait_for(0 if tool == "slirp4netns" else n, T_GATE)  # slirp4netns's threads wait on an Event
        t0 = time.monotonic()
        opened = gate.open()
        for r in runs:
            r.spawned = opened
        collect(runs, t0 + T_BATCH)
        tree = process_tree(b.parent_of)
        idle = idle_window(runs, idle_s, tree) if tool != FLOOR and idle_s is not None else None
        end = time.monotonic() + T_EXIT
        for r in runs:
            r.finish(end)
    finally:
        for r in runs:
            r.close()
        reap_orphans(bench)
    cpu_ms = (children_cpu_s() - used) * 1000 / n
    errors = [r.error for r in runs if r.error]
    mem = None
    if idle is not None:
        mem = {k: sum(r.mem.get(k, 0) for r in runs) for k in ("Rss", "Pss", "Pss_File")}
        mem["helpers"] = sum(1 for r in runs if r.helpers)
    if not errors:
        shutil.rmtree(d, ignore_errors=True)
    return {"tool": tool, "n": n, "round": rnd + 1, "rep": rep + 1, "cpu_ms": cpu_ms,
            "ms": [r.ms if r.error is None else None for r in runs], "failures": len(errors), "errors": errors[:5],
            "mem": mem, "idle": idle, "logs": d if errors else None}  # fmt: skip


def children_cpu_s():
    """User and system CPU of every process the bench has waited for, to the microsecond."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def reap_orphans(bench):
    """Reaps the bench's zombie children that no Popen owns: processes orphaned below a sandbox come to the
    bench (a child subreaper), and their CPU counts only once they are reaped."""
    owned = {p.pid for p in bench.procs.live}
    try:
        with open("/proc/self/task/%d/children" % os.getpid()) as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        return
    for pid in kids:
        if pid in owned:
            continue
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def collect(runs, deadline):
    """Waits for every sandbox's report until deadline; a sandbox that dies or is late fails."""
    poller = select.poll()
    by_fd = {}
    for r in runs:
        poller.register(r.up, select.POLLIN)
        by_fd[r.up] = r
    pending = set(runs)
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            for r in pending:
                r.fail("no report within %g s" % T_BATCH)
            return
        for fd, _ in poller.poll(min(POLL_MS, left * 1000)):
            r = by_fd[fd]
            if r in pending and r.read_report():
                pending.discard(r)
                poller.unregister(fd)
        for r in list(pending):
            if r.died() is not None:
                r.fail(r.died())
                pending.discard(r)
                poller.unregister(r.up)


def idle_window(runs, idle_s, descendants):
    """CPU ticks and wakeups of every healthy sandbox's helper over idle_s seconds, and the frames the
    sandboxes sent; {s, ticks, cpu_ms, wakeups, frames, own_wakeups (the wakeups beyond the frames, per run),
    helpers (the runs measured), processes}."""
    live = []
    for r in runs:
        if r.error is None:
            r.find_helpers(descendants)
        if r.error is None and r.helpers:
            live.append(r)
    before = {r: r.sample() for r in live}
    t0 = time.monotonic()
    time.sleep(idle_s)
    took = time.monotonic() - t0
    ticks = switches = frames = own = measured = 0
    for r in live:
        after = r.sample()
        if before[r] is None or after is None:
            continue
        d = [a - b for a, b in zip(after, before[r])]
        ticks, switches, frames = ticks + d[0], switches + d[1], frames + d[2]
        own += max(0, d[1] - d[2])
        measured += 1
    procs = sum(len(r.helpers) for r in live)
    return {"s": round(took, 2), "ticks": ticks, "cpu_ms": ticks * 1000 / os.sysconf("SC_CLK_TCK"),
            "wakeups": switches, "frames": frames, "own_wakeups": own, "helpers": measured,
            "processes": procs}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# The whole run


def main(args, argv, bench, b):
    """--sandboxes: every count, every tool, every round, then the table, the targets and the JSON. b is
    scripts/bench's module (its Procs, Interrupted, machine and versions), bench its Bench."""
    started = datetime.datetime.now(datetime.timezone.utc)
    mach = b.machine()
    if mach["loadavg"][0] > 0.5:
        b.log("bench: load average %.2f before the start: other work on this machine will show in the numbers"
              % mach["loadavg"][0])  # fmt: skip
    # Two FIFOs per sandbox, and three pipes per slirp4netns one while it starts. The tools inherit the limit,
    # so it is left as it is: a user's sandbox would not start with more.
    need = 5 * max(args.counts) + 64
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < need:
        b.die("--sandboxes %d needs about %d file descriptors; raise the limit (ulimit -n %d)"
              % (max(args.counts), need, need))  # fmt: skip
    path = os.path.join(bench.tmp, "bin", WRAPPER_NAME)
    with open(path, "w") as f:
        f.write(WRAPPER)
    os.chmod(path, 0o755)
    mtu = args.mtu_list[0]
    results, interrupted = [], None
    try:
        bench.start_rr_server()
        run_all(args, bench, b, mtu, results)
    except b.Interrupted as e:
        interrupted = e
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        bench.procs.kill_all()
    if interrupted:
        shutil.rmtree(bench.tmp, ignore_errors=True)
        b.die("interrupted (%s); everything it started is stopped" % interrupted)
    summary = summarise(args, results)
    tl = targets(args, summary)
    print(table(args, summary, tl))
    default = started.strftime("sandboxes-%Y%m%d-%H%M%S-") + "%d.json" % os.getpid()
    out = args.json or os.path.join(b.REPO, "target", "bench", default)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    doc = {
        "command": "scripts/bench " + " ".join(argv),
        "started": started.isoformat(timespec="seconds"),
        "machine": mach,
        "loadavg_end": os.getloadavg(),
        "versions": b.versions(args),
        "config": {"counts": args.counts, "rounds": args.rounds, "idle_s": args.idle, "tools": args.tools,
                   "mtu": mtu, "pasta_argv": bench.pasta_argv(mtu), "wrapper": WRAPPER},  # fmt: skip
        "summary": summary,
        "targets": tl,
        "batches": results,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
    print("\njson: %s" % os.path.relpath(out, os.getcwd()))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table_md(args, summary, tl))
        print("markdown: %s" % args.markdown)
    failed = sum(r["failures"] for r in results if not r["server_died"])
    if failed:
        print("%d sandbox(es) failed; logs: %s" % (failed, bench.tmp), file=sys.stderr)
        sys.exit(1)
    shutil.rmtree(bench.tmp, ignore_errors=True)


def run_all(args, bench, b, mtu, results):
    """Every round, N and tool, appending each batch's result to results; the tool order rotates by round, a
    small N is repeated (MIN_SAMPLES), and a batch under which the rr-bench server died is run once more."""
    for rnd in range(args.rounds):
        order = args.tools[rnd % len(args.tools) :] + args.tools[: rnd % len(args.tools)]
        for n in args.counts:
            for rep in range(-(-MIN_SAMPLES // n)):
                for tool in order:
                    again = ", repetition %d" % (rep + 1) if rep else ""
                    b.log("bench: %d sandbox(es) at once, %s, round %d/%d%s" % (n, tool, rnd + 1, args.rounds, again))
                    for _ in range(2):
                        res = batch(bench, b, tool, n, rnd, rep, args.idle if rep == 0 else None, mtu)
                        res["server_died"] = server_died(bench, b)
                        results.append(res)
                        log_batch(b, res)
                        time.sleep(SETTLE_S + SETTLE_PER_SANDBOX_S * n)
                        if not res["server_died"]:
                            break


def server_died(bench, b):
    """Whether the rr-bench server has died (so the last batch's failures may not be the tool's); if so it is
    logged and started again. Any process of the bench's user may kill it (kill -9 -1 from a sandbox without
    a pid namespace reaches it), and other work on a shared machine runs as that user too."""
    st = bench.procs.exited(bench.rr_server)
    if st is None:
        return False
    b.log("bench: the rr-bench server died (status %s); the batch above is void, starting it again" % st)
    bench.procs.stop(bench.rr_server)
    bench.start_rr_server()
    return True


def log_batch(b, res):
    ms = [x for x in res["ms"] if x is not None]
    line = "  %-12s N=%-4d p50 %s ms  p95 %s ms  failed %d" % (
        res["tool"], res["n"], fmt(quantile(ms, 0.5)), fmt(quantile(ms, 0.95)), res["failures"])  # fmt: skip
    if res["mem"]:
        line += "  RSS %.1f MiB  PSS %.1f MiB" % (res["mem"]["Rss"] / 1024, res["mem"]["Pss"] / 1024)
    i = res["idle"]
    if i:
        line += "  idle %d ticks, %d wakeups, %d frames in %g s" % (i["ticks"], i["wakeups"], i["frames"], i["s"])
    b.log(line)
    for e in res["errors"][:2]:
        b.log("    " + e)


# ----------------------------------------------------------------------------------------------------------
# Summary, table, targets


def quantile(values, q):
    """The q-quantile, interpolating between the closest ranks; None for no values."""
    v = sorted(values)
    if not v:
        return None
    k = (len(v) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def summarise(args, results):
    """{str(N): {tool: {p50, p95, ok, runs, failures, cpu_ms, rss_mib, pss_mib, pss_file_mib, idle_ticks, idle_cpu_ms,
    and per helper per minute cpu_ms_, wakeups_, frames_, own_wakeups_}}}: times pooled over rounds, memory
    and idle as the median over rounds."""
    out = {}
    for n in args.counts:
        rows = out[str(n)] = {}
        for tool in args.tools:
            mine = [r for r in results if r["n"] == n and r["tool"] == tool and not r["server_died"]]
            if not mine:
                continue
            ms = [x for r in mine for x in r["ms"] if x is not None]
            row = {"p50": quantile(ms, 0.5), "p95": quantile(ms, 0.95), "ok": len(ms),
                   "runs": n * len(mine), "failures": sum(r["failures"] for r in mine)}  # fmt: skip
            row["cpu_ms"] = statistics.median(r["cpu_ms"] for r in mine)
            mem = [r["mem"] for r in mine if r["mem"] and r["mem"]["helpers"]]
            if mem:
                row["rss_mib"] = statistics.median(m["Rss"] for m in mem) / 1024
                row["pss_mib"] = statistics.median(m["Pss"] for m in mem) / 1024
                row["pss_file_mib"] = statistics.median(m["Pss_File"] for m in mem) / 1024
            idle = [r["idle"] for r in mine if r["idle"] and r["idle"]["helpers"]]
            if idle:
                row["idle_ticks"] = statistics.median(i["ticks"] for i in idle)
                row["idle_cpu_ms"] = statistics.median(i["cpu_ms"] for i in idle)
                for key in ("cpu_ms", "wakeups", "frames", "own_wakeups"):
                    per_min = (i[key] / i["helpers"] / (i["s"] / 60) for i in idle)
                    row[key + "_per_helper_min"] = statistics.median(per_min)
            rows[tool] = row
    return out


def over(rows, tool, key, peer):
    a = rows.get(tool, {}).get(key)
    p = rows.get(peer, {}).get(key)
    return None if a is None or p is None or p == 0 else a / p


def targets(args, summary):
    """[{n, what, value, met}] for the tools this run measured; met None when a side is missing."""
    out = []

    def add(n, what, value, met, fmt_value):
        out.append({"n": n, "what": what, "value": value, "shown": fmt_value, "met": met})

    lone = summary.get("1", {})
    for n in args.counts:
        rows = summary[str(n)]
        if OURS not in rows:
            continue
        ours = rows[OURS]
        add(n, "no failure", ours["failures"], ours["failures"] == 0, "%d/%d failed" % (ours["failures"], ours["runs"]))
        for q in ("p50", "p95"):
            x = over(rows, OURS, q, FLOOR)
            add(n, "%s <= %gx the floor's" % (q, P_OVER_FLOOR), x, None if x is None else x <= P_OVER_FLOOR,
                "-" if x is None else "%.2fx" % x)  # fmt: skip
            for peer in PEERS:
                x = over(rows, OURS, q, peer)
                add(n, "%s ahead of %s" % (q, peer), x, None if x is None else x < 1, "-" if x is None else "%.2fx" % x)
        if n > 1:
            x = over({OURS: ours, "lone": lone.get(OURS, {})}, OURS, "rss_mib", "lone")
            add(n, "total RSS <= %d x a lone helper's" % n, x, None if x is None else x <= n,
                "-" if x is None else "%.2fx" % x)  # fmt: skip
            x = over({OURS: ours, "lone": lone.get(OURS, {})}, OURS, "pss_file_mib", "lone")
            add(n, "file-backed PSS <= %gx a lone helper's (text shared)" % PSS_FILE_OVER_LONE, x,
                None if x is None else x <= PSS_FILE_OVER_LONE, "-" if x is None else "%.2fx" % x)  # fmt: skip
        cpu, own = ours.get("cpu_ms_per_helper_min"), ours.get("own_wakeups_per_helper_min")
        met = None if cpu is None else cpu <= IDLE_CPU_MS_PER_MIN and own <= IDLE_OWN_WAKEUPS_PER_MIN
        shown = "-" if cpu is None else "%.2f ms, %.2f wakeups" % (cpu, own)
        what = "idle, per helper-minute: CPU <= %g ms, <= %g wakeups beyond frames" % (
            IDLE_CPU_MS_PER_MIN, IDLE_OWN_WAKEUPS_PER_MIN)  # fmt: skip
        add(n, what, cpu, met, shown)
    return out


def fmt(x):
    if x is None:
        return "-"
    if abs(x) >= 100:
        return "%.0f" % x
    if abs(x) >= 10:
        return "%.1f" % x
    return "%.2f" % x


COLUMNS = [
    ("N", 5), ("tool", 13), ("ok", 9), ("p50 ms", 8), ("p95 ms", 8), ("p50/floor", 10), ("p95/floor", 10),
    ("CPU/sandbox ms", 15),
    ("RSS MiB", 9), ("PSS MiB", 9), ("PSS file", 9), ("idle CPU ms", 12), ("wakeups/min", 12),
    ("frames/min", 11), ("own/min", 8),
]  # fmt: skip


def cells(n, tool, rows):
    r = rows[tool]

    def ratio(q):
        x = over(rows, tool, q, FLOOR)
        return "-" if x is None or tool == FLOOR else "%.2fx" % x

    def mib(k):
        return "-" if k not in r else "%.1f" % r[k]

    def per_min(k):
        return "-" if k + "_per_helper_min" not in r else "%.2f" % r[k + "_per_helper_min"]

    cpu = "-" if "idle_cpu_ms" not in r else "%g" % r["idle_cpu_ms"]
    return [str(n), tool, "%d/%d" % (r["ok"], r["runs"]), fmt(r["p50"]), fmt(r["p95"]), ratio("p50"), ratio("p95"),
            fmt(r["cpu_ms"]), mib("rss_mib"), mib("pss_mib"), mib("pss_file_mib"), cpu, per_min("wakeups"),
            per_min("frames"), per_min("own_wakeups")]  # fmt: skip


def heading(args):
    return ("Many sandboxes at once: %d round(s), idle window %g s. Start to first connection (ms, from the gate "
            "opening to the exchange done, per sandbox, pooled over rounds); CPU/sandbox: user+system CPU of all of a "
            "sandbox's processes over its life (start, exchange, idle, exit), mean; helper memory summed over the "
            "N runs (MiB); "
            "idle: utime+stime of all N helpers over the window (ms), and per helper per minute its wakeups, the "
            "frames its sandbox sent, and the wakeups beyond those (own); memory and idle are medians over rounds"
            % (args.rounds, args.idle))  # fmt: skip


def table(args, summary, tl):
    lines = ["", heading(args), "".join("%-*s" % (w, h) for h, w in COLUMNS).rstrip()]
    for n in args.counts:
        rows = summary[str(n)]
        for tool in args.tools:
            if tool in rows:
                lines.append("".join("%-*s" % (w, c) for (_, w), c in zip(COLUMNS, cells(n, tool, rows))).rstrip())
    lines += ["", "Targets (issue 15, item 4; rootless-run against the floor, loopback, and its peers):"]
    verdict = {True: "met", False: "MISSED", None: "not measured"}
    lines += ["  N=%-4d %-62s %-28s %s" % (t["n"], t["what"], t["shown"], verdict[t["met"]]) for t in tl]
    return "\n".join(lines)


def table_md(args, summary, tl):
    """The same table in Markdown, for docs/performance.md."""
    out = ["", heading(args) + ".", "", "| " + " | ".join(h for h, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for n in args.counts:
        rows = summary[str(n)]
        out += ["| " + " | ".join(cells(n, t, rows)) + " |" for t in args.tools if t in rows]
    verdict = {True: "met", False: "missed", None: "not measured"}
    out += ["", "| N | target (rootless-run) | value | |", "|---|---|---|---|"]
    out += ["| %d | %s | %s | %s |" % (t["n"], t["what"], t["shown"], verdict[t["met"]]) for t in tl]
    return "\n".join(out) + "\n"
