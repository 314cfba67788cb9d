#!/usr/bin/env python3
"""A long mixed load, as an operator's cluster makes it, with the server's
footprint printed over time and after the load stops (`make soak`).

20 probes at 10 ms (half failing), default logging (read and thrown away),
4 clients mixing kept-alive and fresh GETs of probe URLs, /metrics,
/status and /status?format=json. Every interval: RSS, threads, open
descriptors, zombie children; then the same for 30 s with no load. Exit
status 1 if any request failed or the server died.

  scripts/soak.py BINARY [SECONDS] [--interval S] [--idle S]
"""
import argparse
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
from run import status_kb as status_field  # noqa: E402  (one reader of /proc/PID/status)

PATHS = ["/p0", "/p1", "/p10", "/p11", "/metrics", "/status", "/status?format=json"]


def zombies(pid):
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z" and int(fields[1]) == pid:
            count += 1
    return count


def sample(pid):
    return {
        "rss_kb": status_field(pid, "VmRSS"),
        "hwm_kb": status_field(pid, "VmHWM"),
        "threads": status_field(pid, "Threads"),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "zombies": zombies(pid),
    }


def read_answer(sock, buffer):
    """Reads one answer off a kept-alive socket; returns its status and what
    was read past it."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buffer += chunk
    head, rest = buffer.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        rest += chunk
    return status, rest[length:]


class Load:
    def __init__(self, port):
        self.port = port
        self.stop = threading.Event()
        self.requests = 0
        self.errors = []
        self.lock = threading.Lock()

    def client(self, n):
        kept = None
        buffer = b""
        i = n
        while not self.stop.is_set():
            path = PATHS[i % len(PATHS)]
            i += 1
            fresh = i % 3 == 0
            try:
                if fresh:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                        s.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
                        status, _ = read_answer(s, b"")
                else:
                    if kept is None:
                        kept = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                        buffer = b""
                    kept.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
                    status, buffer = read_answer(kept, buffer)
                if status not in (200, 503):
                    raise ValueError(f"status {status} for {path}")
                with self.lock:
                    self.requests += 1
            except (OSError, ValueError, ConnectionError) as e:
                with self.lock:
                    self.errors.append(f"{path}: {e}")
                if kept is not None:
                    kept.close()
                    kept = None
        if kept is not None:
            kept.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("seconds", nargs="?", type=float, default=600)
    parser.add_argument("--interval", type=float, default=None)
    parser.add_argument("--idle", type=float, default=30)
    parser.add_argument("--wrap", default="", help="a command to run the server under (a profiler)")
    parser.add_argument("--server-args", default="", help="more flags for the server")
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    interval = args.interval or max(1.0, min(30.0, args.seconds / 20))

    argv = args.wrap.split() + [args.binary, "--port=0", "--period=10ms"]
    for i in range(20):
        argv += [f"--url=/p{i}", "--cmd=true" if i < 10 else "--cmd=exit 3"]
    argv += args.server_args.split()
    server = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    port = None
    lines = 0

    def drain():
        nonlocal lines
        for _ in server.stderr:
            lines += 1

    while port is None:
        line = server.stderr.readline().decode()
        if not line:
            sys.exit("the server exited: " + str(server.wait()))
        if " listening on " in line and "exechealthz" in line:
            port = int(line.rsplit(":", 1)[1])
    threading.Thread(target=drain, daemon=True).start()

    print(f"soak: {args.binary}, 20 probes at 10 ms (10 failing), 4 clients, "
          f"{args.seconds:.0f} s of load then {args.idle:.0f} s idle")
    print(f"{'t_s':>6} {'phase':>5} {'rss_kb':>7} {'hwm_kb':>7} {'threads':>7} {'fds':>4} "
          f"{'zombies':>7} {'req/s':>7} {'errors':>6}")
    time.sleep(0.5)

    def report(t, phase, rate):
        s = sample(server.pid)
        print(f"{t:6.0f} {phase:>5} {s['rss_kb']:7d} {s['hwm_kb']:7d} {s['threads']:7d} "
              f"{s['fds']:4d} {s['zombies']:7d} {rate:7.0f} {len(load.errors):6d}", flush=True)
        return s

    load = Load(port)
    report(0, "start", 0)
    clients = [threading.Thread(target=load.client, args=(n,)) for n in range(args.clients)]
    for c in clients:
        c.start()
    start = time.time()
    last_count, last_time = 0, start
    worst = 0
    while time.time() - start < args.seconds:
        time.sleep(min(interval, args.seconds - (time.time() - start)))
        if server.poll() is not None:
            load.stop.set()
            sys.exit(f"the server died: {server.returncode}")
        now = time.time()
        rate = (load.requests - last_count) / (now - last_time)
        last_count, last_time = load.requests, now
        worst = max(worst, report(now - start, "load", rate)["rss_kb"])
    load.stop.set()
    for c in clients:
        c.join()
    stopped = time.time()
    after = None
    while time.time() - stopped < args.idle:
        time.sleep(min(interval, args.idle - (time.time() - stopped)))
        after = report(time.time() - start, "idle", 0)
    server.terminate()
    server.wait(timeout=10)
    print(f"soak: {load.requests} requests, {len(load.errors)} errors, {lines} log lines; "
          f"RSS at most {worst} kB under load"
          + (f", {after['rss_kb']} kB {args.idle:.0f} s after it" if after else ""))
    for e in load.errors[:10]:
        print("  error:", e)
    sys.exit(1 if load.errors else 0)


if __name__ == "__main__":
    main()
