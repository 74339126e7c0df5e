"""scripts/stress_agent.py: the sandbox's side of scripts/stress and scripts/soak, run inside the sandbox's
network namespace (nsenter, as root) by stress_lib.Sandbox.agent; std-only Python. Not run alone.

Jobs (the host side listens on 127.0.0.1, reached at the gateway 10.0.2.2; see stress_lib's ports):
  send               the bystander: connect to the sink, print `port N`, send the pattern until stdin closes,
                     half-close, wait for the sink's close; print `sent N clean|reset|error E`
  recv               connect to the source, print `connected`, read and verify to the end:
                     `recv N eof|reset|error E intact|corrupt`
  probe              new connections, TCP (connect + 1-byte exchange), UDP (echo) and DNS (one A query), each
                     every 0.5 s until stdin closes; a JSON line per attempt: served, refused (RST, ICMP
                     unreachable, SERVFAIL) or silent (nothing within 2 s)
  hold N             open N connections to the holder (stopping after 5 silent ones in a row):
                     `held K refused R silent S`, keep them to stdin's end
  dns-garbage N      N malformed DNS messages to the DNS address: `sent N`
  mix RATE           soak traffic until stdin closes: bulk to the sink at RATE MB/s, RR, CRR, UDP echo and DNS;
                     a JSON line of counts every 5 s and at the end (then `sent N ...` for the bulk stream)
"""

import json
import os
import random
import resource
import socket
import struct
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stress_lib as lib  # noqa: E402

TIMEOUT = lib.PROBE_TIMEOUT
MAX_SILENT_RUN = 5  # `hold` stops after this many silent connects in a row
stop = threading.Event()


def watch_stdin():
    def run():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=run, daemon=True).start()


def say(*words, lock=threading.Lock()):
    """One whole line on stdout: the probe and mix threads print side by side."""
    with lock:
        sys.stdout.write(" ".join(str(w) for w in words) + "\n")
        sys.stdout.flush()


def conn(port, timeout=TIMEOUT):
    s = socket.create_connection((lib.GATEWAY, port), timeout=timeout)
    s.settimeout(60)
    return s


def outcome(e):
    if isinstance(e, (ConnectionRefusedError, ConnectionResetError, BrokenPipeError)):
        return "refused"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "silent"
    return "error " + str(e)


def send(rate_mbs=None, tag="sent"):
    """The bystander stream (rate-limited when rate_mbs is given); returns after printing its end."""
    s = conn(lib.SINK)
    say("port", s.getsockname()[1])
    sent, end = 0, "clean"
    start = time.monotonic()
    try:
        while not stop.is_set():
            if rate_mbs and sent > (time.monotonic() - start) * rate_mbs * 1e6:
                time.sleep(0.01)
                continue
            o = sent % lib.PERIOD
            sent += s.send(lib.DOUBLED[o : o + lib.CHUNK])
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
    except OSError as e:
        end = "reset" if isinstance(e, (ConnectionResetError, BrokenPipeError)) else "error " + str(e)
    say(tag, sent, end)


def recv():
    s = conn(lib.SOURCE)
    say("connected")
    got, end, intact = 0, "eof", True
    buf = bytearray(lib.CHUNK)
    try:
        while True:
            n = s.recv_into(buf)
            if n == 0:
                break
            o = got % lib.PERIOD
            intact = intact and memoryview(buf)[:n] == lib.DOUBLED[o : o + n]
            got += n
    except OSError as e:
        end = "reset" if isinstance(e, ConnectionResetError) else "error " + str(e)
    say("recv", got, end, "intact" if intact else "corrupt")


def dns_query(name, qid):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", 1, 1)


def attempt(kind, n):
    """One new connection of `kind`: served, refused or silent."""
    try:
        if kind == "tcp":
            with conn(lib.PROBE) as s:
                s.settimeout(TIMEOUT)
                s.sendall(b"p")
                return "served" if s.recv(1) == b"k" else "refused"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(TIMEOUT)
            if kind == "udp":
                u.connect((lib.GATEWAY, lib.UDP_ECHO))
                u.send(b"probe %d" % n)
                return "served" if u.recv(64) == b"probe %d" % n else "refused"
            u.connect((lib.DNS, 53))
            u.send(dns_query("probe%d.stress.example" % n, n & 0xFFFF))
            reply = u.recv(512)
            return "served" if len(reply) >= 4 and reply[3] & 0x0F == 0 else "refused"
    except OSError as e:
        return outcome(e)


def probe(interval=0.5):
    def loop(kind):
        n = 0
        while not stop.is_set():
            t0 = time.time()
            r = attempt(kind, n)
            say(json.dumps({"t": t0, "kind": kind, "result": r, "ms": round((time.time() - t0) * 1000)}))
            n += 1
            stop.wait(max(0.0, interval - (time.time() - t0)))

    threads = [threading.Thread(target=loop, args=(k,)) for k in ("tcp", "udp", "dns")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def hold(n):
    resource.setrlimit(resource.RLIMIT_NOFILE, (n + 256, max(n + 256, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
    socks, counts = [], {"held": 0, "refused": 0, "silent": 0}
    silent_run = 0
    for _ in range(n):
        try:
            socks.append(conn(lib.HOLD))
            counts["held"] += 1
            silent_run = 0
        except OSError as e:
            r = outcome(e)
            counts[r if r in counts else "refused"] += 1
            silent_run = silent_run + 1 if r == "silent" else 0
            if silent_run == MAX_SILENT_RUN:
                break  # each costs the whole timeout: the answer is known
    say("held %(held)d refused %(refused)d silent %(silent)d" % counts)
    stop.wait()
    for s in socks:
        s.close()


def dns_garbage(n):
    rng = random.Random(53)
    good = dns_query("garbage.stress.example", 0x6666)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for i in range(n):
            if i % 2:
                m = bytearray(good)
                for _ in range(1 + rng.randrange(4)):
                    m[rng.randrange(len(m))] = rng.randrange(256)
                m = bytes(m[: rng.randrange(1, len(m) + 1)])
            else:
                m = rng.randbytes(rng.randrange(1, 600))
            try:
                u.sendto(m, (lib.DNS, 53))
            except OSError:
                time.sleep(0.001)
    say("sent", n)


def mix(rate_mbs):
    """Soak traffic: bulk, RR, CRR, UDP and DNS side by side, at modest rates."""
    counts = {k: {"ok": 0, "refused": 0, "silent": 0, "error": 0} for k in ("rr", "crr", "udp", "dns")}

    def note(kind, r):
        counts[kind][r if r in ("refused", "silent") else ("ok" if r == "served" else "error")] += 1

    def rr():
        while not stop.is_set():
            try:
                with conn(lib.RR) as s:
                    s.settimeout(TIMEOUT)
                    while not stop.is_set():
                        s.sendall(b"x")
                        note("rr", "served" if s.recv(1) == b"x" else "error")
                        time.sleep(0.002)
            except OSError as e:
                note("rr", outcome(e))
                stop.wait(0.5)

    def every(kind, gap):
        n = 0
        while not stop.is_set():
            note(kind, attempt({"crr": "tcp"}.get(kind, kind), n))
            n += 1
            stop.wait(gap)

    threads = [threading.Thread(target=send, args=(rate_mbs, "bulk")), threading.Thread(target=rr)]
    threads += [threading.Thread(target=every, args=a) for a in (("crr", 0.02), ("udp", 0.1), ("dns", 0.05))]
    for t in threads:
        t.start()
    while not stop.wait(5):
        say(json.dumps({"t": time.time(), "counts": counts}))
    for t in threads:
        t.join()
    say(json.dumps({"t": time.time(), "counts": counts, "final": True}))


def main():
    a = sys.argv[1:]
    watch_stdin()
    jobs = {"send": lambda: send(), "recv": recv, "probe": probe, "hold": lambda: hold(int(a[1])),
            "dns-garbage": lambda: dns_garbage(int(a[1])), "mix": lambda: mix(float(a[1]))}  # fmt: skip
    if not a or a[0] not in jobs:
        print("usage: stress_agent.py " + "|".join(jobs) + " [N]", file=sys.stderr)
        sys.exit(2)
    jobs[a[0]]()


if __name__ == "__main__":
    main()
