#!/usr/bin/env python3
"""Benchmarks for exechealthz: prints figures, asserts nothing.

Run with `make bench`. Builds nothing itself: pass the binary to measure.
Each figure is printed as `name: value unit`, after a line naming the machine.
"""
import argparse
import json
import os
import socket
import statistics
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request



def machine():
    cpu = "unknown cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.machine()}, {os.cpu_count()} cores, {cpu}, kernel {platform.release()}"


def start(binary, args):
    """Starts the server on a free port; returns (process, port)."""
    proc = subprocess.Popen(
        [binary, "--port=0", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 10
    while time.time() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"listening on .*:(\d+)$", line.strip())
        if m:
            return proc, int(m.group(1))
    proc.kill()
    sys.exit("server did not start")


def cpu_seconds(pid):
    """Time the process's own threads spent on a CPU (not its children), in
    seconds, from schedstat's nanoseconds: /proc/PID/stat counts in 10 ms
    ticks, too coarse for a figure of a fraction of a millisecond."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # a thread that just ended
    return total / 1e9


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def count_lines(path):
    try:
        with open(path) as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def figure(name, value, unit=""):
    print(f"{name}: {value} {unit}".rstrip(), flush=True)


def bench_binary_size(binary):
    figure("binary size", f"{os.path.getsize(binary) / 1024:.0f}", "KiB")


def bench_idle_rss(binary):
    proc, _ = start(binary, ["--quiet"])
    try:
        time.sleep(2)
        figure("idle RSS, one probe (default period)", status_kb(proc.pid, "VmRSS"), "kB")
    finally:
        proc.kill()
        proc.wait()


def cpu_per_run(proc, runs, seconds):
    """(runs, CPU seconds) of `proc`'s own threads over `seconds`; `runs()`
    counts the runs so far."""
    try:
        time.sleep(1)
        runs0, cpu0 = runs(), cpu_seconds(proc.pid)
        time.sleep(seconds)
        runs1, cpu1 = runs(), cpu_seconds(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    return runs1 - runs0, cpu1 - cpu0


def build_floor(name):
    """Compiles bench/NAME.c (the least a program doing our job can do) to
    target/bench-NAME; None without a C compiler."""
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "..", os.environ.get("CARGO_TARGET_DIR", "target"), f"bench-{name}")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    for cc in ["cc", "gcc", "clang"]:
        try:
            subprocess.run([cc, "-O2", "-pthread", "-o", out, os.path.join(here, f"{name}.c")], check=True)
            return out
        except (OSError, subprocess.CalledProcessError):
            continue
    return None


def bench_cpu_per_run(binary, seconds):
    """Server CPU per run at period 10ms, and in the same run the floor:
    bench/floor.c doing only spawn, read to end of file, waitpid, sleep."""
    floor = build_floor("floor")
    for _ in range(2):  # twice each, alternating: this figure drifts
        with tempfile.TemporaryDirectory() as tmp:
            runs_file = os.path.join(tmp, "runs")
            proc, _ = start(binary, ["--quiet", "--period=10ms", f"--cmd=echo >> {runs_file}"])
            runs, cpu = cpu_per_run(proc, lambda: count_lines(runs_file), seconds / 2)
            figure("server CPU per probe run (period 10ms)", f"{cpu / runs * 1000:.3f}", f"ms ({runs} runs)")
            if floor:
                proc = subprocess.Popen([floor, "10", f"echo >> {runs_file}.floor"])
                runs, cpu = cpu_per_run(proc, lambda: count_lines(runs_file + ".floor"), seconds / 2)
                figure("  floor (bench/floor.c, C posix_spawn + poll + waitpid)",
                       f"{cpu / runs * 1000:.3f}", f"ms ({runs} runs)")


def probe_runs(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status?format=json", timeout=5) as r:
        return json.load(r)["probes"][0]["runs"]


def builtin_cpu_per_run(binary, target, seconds):
    """(runs, CPU seconds) of a server whose one probe is `target`, at 10ms."""
    proc, port = start(binary, ["--quiet", "--period=10ms", f"--cmd={target}"])
    return cpu_per_run(proc, lambda: probe_runs(port), seconds)


def bench_builtin_check_cpu(binary, seconds):
    """Server CPU per built-in check run at period 10ms: http:// against a
    local HTTP server (another of ours), grpc:// against a local gRPC
    server (grpcio's health service, tests/tools/grpc_server.py) and h2c://
    against the h2 library's server (tests/tools/record_server.py), and
    their ratios to http://, which #21 budgets at 2x for grpc:// and #29 at
    1.5x for h2c://. Alternating, twice each."""
    here = os.path.dirname(os.path.abspath(__file__))
    tools = os.path.join(here, "..", "tests", "tools")
    target, http_port = start(binary, ["--quiet", "--cmd=true", "--period=1h"])
    grpc = subprocess.Popen(
        [sys.executable, os.path.join(tools, "grpc_server.py")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    h2c_log = tempfile.NamedTemporaryFile(prefix="exechealthz-h2c-", delete=False).name
    h2c = subprocess.Popen(
        [sys.executable, os.path.join(tools, "record_server.py"), "h2c", h2c_log],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = grpc.stdout.readline()
    h2c_line = h2c.stdout.readline()
    try:
        if not line.startswith("port ") or not h2c_line.startswith("port "):
            figure("grpc:// and h2c:// check CPU per run", "skipped: needs grpcio, grpcio-health-checking and h2")
            return
        grpc_port = int(line.split()[1])
        h2c_port = int(h2c_line.split()[1])
        figures = {"http": [], "grpc": [], "h2c": []}
        for _ in range(2):
            for name, url in [("http", f"http://127.0.0.1:{http_port}/healthz"),
                              ("grpc", f"grpc://127.0.0.1:{grpc_port}"),
                              ("h2c", f"h2c://127.0.0.1:{h2c_port}/ok")]:
                runs, cpu = builtin_cpu_per_run(binary, url, seconds / 4)
                figures[name].append(cpu / runs * 1000)
                figure(f"server CPU per {name}:// check run (period 10ms)",
                       f"{cpu / runs * 1000:.3f}", f"ms ({runs} runs)")
        http_ms, grpc_ms, h2c_ms = (min(figures[n]) for n in ("http", "grpc", "h2c"))
        figure("  grpc:// / http:// (budget 2x; the lower of each)", f"{grpc_ms / http_ms:.2f}", "x")
        figure("  h2c:// / http:// (budget 1.5x; the lower of each)", f"{h2c_ms / http_ms:.2f}", "x")
    finally:
        for proc in (target, grpc, h2c):
            proc.kill()
            proc.wait()
        os.unlink(h2c_log)


def bench_scrape_cost(binary, probes=100, scrapes=50):
    """Server CPU per /metrics scrape with 100 probes keeping 1 MiB each."""
    args = ["--quiet", "--period=1h", "--max-output=1MiB"]
    for i in range(probes):
        args += ["--cmd=head -c 1048576 /dev/zero", f"--url=/p{i}"]
    proc, port = start(binary, args)
    try:
        for i in range(probes):
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/p{i}", timeout=5):
                        break
                except urllib.error.HTTPError:
                    time.sleep(0.05)
        rss0 = status_kb(proc.pid, "VmRSS")
        cpu0 = cpu_seconds(proc.pid)
        for _ in range(scrapes):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                r.read()
        cpu1 = cpu_seconds(proc.pid)
        peak = status_kb(proc.pid, "VmHWM")
    finally:
        proc.kill()
        proc.wait()
    figure(f"server CPU per /metrics scrape, {probes} probes keeping 1 MiB each",
           f"{(cpu1 - cpu0) / scrapes * 1000:.3f}", "ms")
    figure(f"RSS before {scrapes} scrapes; peak after", f"{rss0} kB; {peak}", "kB")


def bench_many_probes(binary, probes=300, seconds=5):
    """300 probes of `true`: when all have run, zombies at most, runs spread."""
    for period in ["10ms", "100ms"]:
        args = ["--quiet", f"--period={period}", "--latency=5s"]
        for i in range(probes):
            args += ["--cmd=true", f"--url=/p{i}"]
        t0 = time.monotonic()
        proc, port = start(binary, args)
        all_run = None
        most_zombies = 0
        try:
            while time.monotonic() - t0 < seconds:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
                runs = [float(v) for v in re.findall(r"exechealthz_probe_runs_total\{[^}]*\} (\S+)", text)]
                if all_run is None and len(runs) == probes and min(runs) >= 1:
                    all_run = time.monotonic() - t0
                zombies = 0
                for pid in os.listdir("/proc"):
                    try:
                        with open(f"/proc/{pid}/stat") as f:
                            fields = f.read().rsplit(")", 1)[1].split()
                    except (OSError, IndexError):
                        continue
                    if fields[0] == "Z" and int(fields[1]) == proc.pid:
                        zombies += 1
                most_zombies = max(most_zombies, zombies)
                time.sleep(0.1)
        finally:
            proc.kill()
            proc.wait()
        shown = "never" if all_run is None else f"{all_run:.2f} s"
        figure(f"{probes} probes at {period}: every probe has run after", shown)
        figure(f"{probes} probes at {period}: most zombies at one sample", most_zombies)
        figure(f"{probes} probes at {period}: runs per probe, least and most",
               f"{min(runs):.0f} and {max(runs):.0f}")


def bench_check_cli(binary, runs=200):
    """`exechealthz check` as an exec probe would run it: wall time and CPU
    per invocation (the child's user + system time), for tcp:// and
    http:// against a local server, beside curl's for the same http://."""
    import resource
    import shutil
    proc, port = start(binary, ["--quiet", "--period=1s"])
    try:
        time.sleep(0.3)
        url = f"http://127.0.0.1:{port}/healthz"
        commands = [
            ("exechealthz check tcp://", [binary, "check", f"tcp://127.0.0.1:{port}"]),
            ("exechealthz check http://", [binary, "check", url]),
        ]
        if shutil.which("curl"):
            commands.append(("curl -fsS (same http://)", ["curl", "-fsS", "-o", "/dev/null", url]))
        for label, command in commands:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.monotonic()
            for _ in range(runs):
                subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
            wall = (time.monotonic() - t0) / runs
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / runs
            figure(f"{label}: wall per invocation", f"{wall * 1000:.2f}", "ms")
            figure(f"{label}: CPU per invocation", f"{cpu * 1000:.2f}", "ms")
    finally:
        proc.kill()
        proc.wait()


def bench_sigterm(binary, repeats=20):
    """Time from SIGTERM to exit: one probe with its command running, and
    300 probes at 10 ms (spawns under way at every moment)."""
    for label, probes, period, cmd in [
        ("a probe running", 1, "2s", "sleep 100"),
        ("300 probes at 10ms", 300, "10ms", "true"),
    ]:
        args = ["--quiet", f"--period={period}"]
        for i in range(probes):
            args += [f"--url=/p{i}", f"--cmd={cmd}"]
        times = []
        for _ in range(repeats):
            proc, _ = start(binary, args)
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            time.sleep(0.2 if probes == 1 else 1.0)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait()
            times.append(time.monotonic() - t0)
        times.sort()
        figure(f"SIGTERM to exit, {label}, median", f"{times[len(times) // 2] * 1000:.1f}", "ms")
        figure(f"SIGTERM to exit, {label}, max", f"{times[-1] * 1000:.1f}", "ms")


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listening on {port}")


def wrk(url, seconds, close=False):
    """(requests/s, p99 ms) from wrk with 2 threads and 50 connections."""
    cmd = ["wrk", "-t2", "-c50", f"-d{seconds}s", "--latency", url]
    if close:
        cmd[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"  (wrk saw {errors.group(1)} non-2xx answers)")
    return rps, p99


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrk_server(binary, seconds, close=False):
    """(req/s, p99 ms, peak RSS kB) of a fresh server with one probe."""
    proc, port = start(binary, ["--quiet", "--cmd=true", "--period=2s"])
    try:
        time.sleep(0.5)
        rps, p99 = wrk(f"http://127.0.0.1:{port}/healthz", seconds, close)
        return rps, p99, status_kb(proc.pid, "VmHWM")
    finally:
        proc.kill()
        proc.wait()


def wrk_other(argv, seconds, close=False):
    """(req/s, p99 ms) of a comparison server: `argv` is its program and
    the arguments that follow its port (`PROGRAM PORT ARGS...`)."""
    port = free_port()
    proc = subprocess.Popen([argv[0], str(port), *argv[1:]])
    try:
        wait_port(port)
        return wrk(f"http://127.0.0.1:{port}/", seconds, close)
    finally:
        proc.kill()
        proc.wait()


def bench_http(binary, bare, seconds, rounds=5):
    """Keep-alive: the server, bare tiny_http and the C floor, `rounds`
    times each, alternating (these figures drift with the machine; the
    median of each is printed). Then connection per request, once each."""
    floor = build_floor("http_floor")
    ours, bares, floors, shaped = [], [], [], []
    for _ in range(rounds):
        ours.append(wrk_server(binary, seconds))
        bares.append(wrk_other([bare], seconds))
        if floor:
            floors.append(wrk_other([floor, "0"], seconds))
            shaped.append(wrk_other([floor, "3"], seconds))
    peak = max(run[2] for run in ours)

    def median(runs, i):
        return statistics.median(run[i] for run in runs)

    def each(runs, i, fmt):
        return ", ".join(fmt.format(run[i]) for run in runs)

    rps_ka, p99_ka, bare_ka = median(ours, 0), median(ours, 1), median(bares, 0)
    figure(f"keep-alive, 50 connections: req/s, median of {rounds}", f"{rps_ka:.0f} ({each(ours, 0, '{:.0f}')})")
    figure(f"keep-alive, 50 connections: p99, median of {rounds}", f"{p99_ka:.2f}", f"ms ({each(ours, 1, '{:.2f}')})")
    figure("peak RSS under 50 keep-alive connections", peak, "kB")
    figure(f"bare tiny_http, keep-alive: req/s, median of {rounds}",
           f"{bare_ka:.0f} ({each(bares, 0, '{:.0f}')}; p99 {each(bares, 1, '{:.2f}')} ms)")
    figure("ratio to bare tiny_http, keep-alive (of the medians)", f"{rps_ka / bare_ka:.2f}")
    figure("  each round", each([(o[0] / b[0],) for o, b in zip(ours, bares)], 0, "{:.2f}"))
    if floor:
        floor_ka = median(floors, 0)
        figure(f"  floor (bench/http_floor.c, one C epoll loop, canned answer), keep-alive: req/s, median of {rounds}",
               f"{floor_ka:.0f} (p99 {each(floors, 1, '{:.2f}')} ms; {floor_ka / bare_ka:.2f}x bare; "
               f"ours {rps_ka / floor_ka:.2f}x the floor)")
        shaped_ka = median(shaped, 0)
        figure(f"  floor in the server's shape (a dispatcher, 3 workers), keep-alive: req/s, median of {rounds}",
               f"{shaped_ka:.0f} (p99 median {median(shaped, 1):.2f} ms: {each(shaped, 1, '{:.2f}')}; "
               f"ours {rps_ka / shaped_ka:.2f}x)")

    rps_close, p99_close, peak_close = wrk_server(binary, seconds, close=True)
    bare_close, _ = wrk_other([bare], seconds, close=True)
    figure("connection per request, 50 clients: req/s", f"{rps_close:.0f}")
    figure("connection per request: p99", f"{p99_close:.2f}", "ms")
    figure("peak RSS after connection-per-request load", peak_close, "kB")
    figure("bare tiny_http, connection per request: req/s", f"{bare_close:.0f}")
    figure("ratio to bare tiny_http, connection per request", f"{rps_close / bare_close:.2f}")


def get_ms(port, path="/healthz"):
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
        while s.recv(65536):
            pass
    return (time.monotonic() - t0) * 1000


def bench_idle_connections(binary, count=2000):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    proc, port = start(binary, ["--quiet", "--cmd=true"])
    held = []
    try:
        time.sleep(0.3)
        for _ in range(count):
            held.append(socket.create_connection(("127.0.0.1", port)))
        # A client that sends nothing is handed to the server after 1 s
        # (TCP_DEFER_ACCEPT): wait until all are in, so that they count.
        time.sleep(2.5)
        rss = status_kb(proc.pid, "VmRSS")
        times = sorted(get_ms(port) for _ in range(20))
    finally:
        for s in held:
            s.close()
        proc.kill()
        proc.wait()
    figure(f"RSS with {count} idle connections", rss, "kB")
    figure(f"new request with {count} idle connections, max of 20", f"{times[-1]:.2f}", "ms")


def fresh_gets(port, count=200, timeout=5.0):
    """`count` fresh GET /healthz one at a time: their times in ms (a
    timeout or a failure counts as `timeout`) and how many were not 200."""
    times, bad = [], 0
    for _ in range(count):
        t0 = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
                s.settimeout(timeout)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            if not data.startswith(b"HTTP/1.1 200 "):
                bad += 1
        except OSError:
            bad += 1
        times.append((time.monotonic() - t0) * 1000)
    return sorted(times), bad


def reconnect_storm(port, clients, stop, trickle):
    """`clients` connections that come back as soon as they are dropped,
    sending nothing (or, with `trickle`, one byte of a head a second)."""
    def client():
        while not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=1)
            except OSError:
                continue
            with s:
                s.settimeout(1)
                while not stop.is_set():
                    try:
                        if trickle:
                            s.sendall(b"G")
                        if not s.recv(1):
                            break
                    except socket.timeout:
                        continue
                    except OSError:
                        break
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    return threads


def bench_reconnect_storm(binary, clients=200, probes=100):
    """`prlimit --nofile=64`, `clients` reconnecting at once (idle, then a
    byte a second): fresh GET /healthz answered 200 within 1 s, of 100."""
    for trickle in (False, True):
        proc, port = start_with_nofile(binary)
        stop = threading.Event()
        try:
            time.sleep(0.3)
            threads = reconnect_storm(port, clients, stop, trickle)
            time.sleep(1)
            times, bad = fresh_gets(port, count=probes, timeout=1)
            within = sum(1 for t in times if t <= 1000) - bad
            stop.set()
            for t in threads:
                t.join()
        finally:
            proc.kill()
            proc.wait()
        label = "a byte a second" if trickle else "idle"
        figure(f"--nofile 64, {clients} clients reconnecting ({label}): fresh GET 200 within 1 s",
               f"{max(0, within)} of {probes}")
        figure(f"--nofile 64, {clients} clients reconnecting ({label}): fresh GET p50 / max",
               f"{percentile(times, 0.5):.1f} / {times[-1]:.0f}", "ms")


def percentile(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


def hogs(port, count, stop, read=True, requests=None):
    """`count` connections pipelining /status?format=json and /metrics:
    as fast as they read (`read`), or `requests` each and never read."""
    import selectors
    sel = selectors.DefaultSelector()
    paths = ["/status?format=json", "/metrics"]
    n = requests or 64
    batch = b"".join(f"GET {paths[i % 2]} HTTP/1.1\r\nHost: b\r\n\r\n".encode() for i in range(n))
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        if requests:
            s.sendall(batch)
        s.setblocking(False)
        socks.append(s)
        if read:
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    while read and not stop.is_set():
        for key, events in sel.select(0.1):
            try:
                if events & selectors.EVENT_READ:
                    key.fileobj.recv(262144)
                if events & selectors.EVENT_WRITE:
                    key.fileobj.send(batch)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                sel.unregister(key.fileobj)
    stop.wait()
    for s in socks:
        s.close()


def bench_fresh_get_under_hogs(binary):
    """A fresh GET /healthz (200, one at a time) while 3 and 30 connections
    pipeline reports as fast as they read, and while 3000 hold unread
    pipelined answers: the kubelet's view of a busy sidecar."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    probes = []
    for i in range(20):
        probes += [f"--url=/p{i}", "--cmd=true"]
    for label, count, read, requests in [
        ("3 pipelining", 3, True, None),
        ("30 pipelining", 30, True, None),
        ("3000 holding unread answers", 3000, False, 40),
    ]:
        proc, port = start(binary, ["--quiet", "--period=1s", *probes, "--url=/healthz", "--cmd=true"])
        stop = threading.Event()
        try:
            time.sleep(1.2)
            loader = threading.Thread(target=hogs, args=(port, count, stop, read, requests))
            loader.start()
            time.sleep(1.0)
            times, bad = fresh_gets(port)
            rss = status_kb(proc.pid, "VmRSS")
        finally:
            stop.set()
            loader.join()
            proc.kill()
            proc.wait()
        figure(f"fresh GET while {label}: p99", f"{percentile(times, 0.99):.1f}", "ms")
        figure(f"fresh GET while {label}: max", f"{times[-1]:.1f}", "ms")
        if bad:
            figure(f"fresh GET while {label}: not 200", bad)
        figure(f"RSS while {label}", rss, "kB")


def start_with_nofile(binary, nofile=64):
    """The server under `prlimit --nofile=N` with its probe at 10 ms, and
    its port, from its start-up line; its stderr drained from then on."""
    proc = subprocess.Popen(
        ["prlimit", f"--nofile={nofile}:{nofile}", binary, "--port=0", "--period=10ms"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    port = None
    deadline = time.time() + 10
    while port is None and time.time() < deadline:
        m = re.search(r"listening on .*:(\d+)$", proc.stderr.readline().strip())
        if m:
            port = int(m.group(1))
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    return proc, port


def bench_low_descriptor_limit(binary, clients=200):
    """`prlimit --nofile=64`, 200 clients at once: the probe keeps 200, and
    each client gets its answer or its close, soon."""
    proc, port = start_with_nofile(binary)
    stop = threading.Event()
    checks = []

    def checker():
        while not stop.is_set():
            times, bad = fresh_gets(port, count=1, timeout=2)
            checks.append(bad)
            time.sleep(0.02)

    waits = []
    try:
        time.sleep(0.5)
        t = threading.Thread(target=checker)
        t.start()
        socks = []
        for _ in range(clients):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n")
            socks.append((s, time.monotonic()))
        for s, sent in socks:
            s.settimeout(5)
            try:
                s.recv(4096)
            except OSError:
                pass
            waits.append((time.monotonic() - sent) * 1000)
        time.sleep(0.5)
        for s, _ in socks:
            s.close()
        stop.set()
        t.join()
    finally:
        proc.kill()
        proc.wait()
    figure(f"--nofile 64, {clients} clients: longest wait for an answer or a close", f"{max(waits):.0f}", "ms")
    figure(f"--nofile 64, {clients} clients: /healthz checks not 200", f"{sum(checks)} of {len(checks)}")


def bench_slow_readers(binary, readers=200):
    """200 clients asking for a 1 MiB --output answer and not reading it."""
    proc, port = start(binary, ["--quiet", "--period=50ms", "--output", "--max-output=1MiB",
                                "--cmd=head -c 1048576 /dev/zero"])
    socks = []
    try:
        time.sleep(0.5)
        for _ in range(readers):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n")
            socks.append(s)
        time.sleep(1.0)
        rss = status_kb(proc.pid, "VmRSS")
    finally:
        for s in socks:
            s.close()
        proc.kill()
        proc.wait()
    figure(f"RSS with {readers} slow readers of a 1 MiB answer", rss, "kB")


def bench_period_accuracy(binary, seconds):
    """Probe start-to-start intervals while wrk loads the HTTP side."""
    with tempfile.TemporaryDirectory() as tmp:
        starts = os.path.join(tmp, "starts")
        proc, port = start(binary, ["--quiet", "--period=100ms", f"--cmd=date +%s%N >> {starts}"])
        try:
            time.sleep(0.5)
            wrk(f"http://127.0.0.1:{port}/healthz", seconds)
        finally:
            proc.kill()
            proc.wait()
        with open(starts) as f:
            times = [int(line) for line in f if line.strip()]
    drifts = sorted(abs((b - a) / 1e6 - 100) for a, b in zip(times, times[1:]))
    p99 = drifts[min(len(drifts) - 1, int(len(drifts) * 0.99))]
    figure("probe period drift under HTTP load (period 100ms), p99", f"{p99:.1f}", "ms")
    figure("probe period drift under HTTP load, median", f"{statistics.median(drifts):.1f}", "ms")


def bench_tls(tls_binary, http_binary, seconds, runs=200):
    """The TLS flavour (#30): its size, idle RSS with one https:// probe,
    server CPU per https:// run beside http://'s, and `check https://` wall
    and CPU per call beside `curl -k`'s, against one local Python ssl
    server (tests/tools/tls_server.py, a P-256 certificate)."""
    import resource
    import shutil
    here = os.path.dirname(os.path.abspath(__file__))
    tool = os.path.join(here, "..", "tests", "tools", "tls_server.py")
    bench_binary_size(tls_binary)
    with tempfile.TemporaryDirectory() as tmp:
        made = subprocess.run([sys.executable, tool, "certs", tmp], capture_output=True, text=True)
        if made.returncode != 0:
            figure("TLS figures", "skipped: tests/tools/tls_server.py needs cryptography")
            return
        server = subprocess.Popen(
            [sys.executable, tool, "serve", "--cert", f"{tmp}/server.pem", "--key", f"{tmp}/server.key"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        plain, plain_port = start(http_binary, ["--quiet", "--cmd=true", "--period=1h"])
        try:
            port = int(server.stdout.readline().split()[1])
            url = f"https://127.0.0.1:{port}/"
            proc, _ = start(tls_binary, ["--quiet", f"--cmd={url}"])
            try:
                time.sleep(3)
                figure("TLS flavour idle RSS, one https:// probe (default period; budget 1 MB)",
                       status_kb(proc.pid, "VmRSS"), "kB")
                # Most of it is the binary's own pages (the kernel maps a
                # file's cached pages around each fault, 64 KiB at a time).
                with open(f"/proc/{proc.pid}/smaps_rollup") as f:
                    rollup = {line.split(":")[0]: line.split()[1] for line in f if ":" in line}
                figure("  of which anonymous; file-backed (the binary)",
                       f"{rollup.get('Anonymous')}; {rollup.get('Pss_File', '?')}", "kB")
            finally:
                proc.kill()
                proc.wait()
            figures = {"http": [], "https": []}
            for _ in range(2):
                for name, target in [("http", f"http://127.0.0.1:{plain_port}/healthz"), ("https", url)]:
                    n, cpu = builtin_cpu_per_run(tls_binary, target, seconds / 4)
                    figures[name].append(cpu / n * 1000)
                    figure(f"TLS flavour server CPU per {name}:// check run (period 10ms)",
                           f"{cpu / n * 1000:.3f}", f"ms ({n} runs)")
            figure("  https:// / http:// (the lower of each)",
                   f"{min(figures['https']) / min(figures['http']):.2f}", "x")
            commands = [("exechealthz-tls check https://", [tls_binary, "check", url])]
            if shutil.which("curl"):
                commands.append(("curl -fsSk (same https://)", ["curl", "-fsSk", "-o", "/dev/null", url]))
            walls = {}
            for label, command in commands:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.monotonic()
                for _ in range(runs):
                    subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
                walls[label] = (time.monotonic() - t0) / runs
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / runs
                figure(f"{label}: wall per invocation", f"{walls[label] * 1000:.2f}", "ms")
                figure(f"{label}: CPU per invocation", f"{cpu * 1000:.2f}", "ms")
            if len(walls) == 2:
                ours, curl = walls.values()
                figure("  check https:// / curl -k wall (budget 0.5x)", f"{ours / curl:.2f}", "x")
        finally:
            for p in (server, plain):
                p.kill()
                p.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("binary")
    parser.add_argument("--bare", help="the bare tiny_http example binary")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--tls", help="the TLS flavour's binary (exechealthz-tls)")
    parser.add_argument("--only-tls", action="store_true", help="only the TLS figures")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"binary: {args.binary}")
    if args.only_tls:
        bench_tls(args.tls, args.binary, args.seconds)
        return
    bench_binary_size(args.binary)
    bench_idle_rss(args.binary)
    bench_cpu_per_run(args.binary, args.seconds)
    bench_builtin_check_cpu(args.binary, args.seconds)
    bench_scrape_cost(args.binary)
    bench_many_probes(args.binary)
    if args.bare:
        bench_http(args.binary, args.bare, int(args.seconds))
    bench_idle_connections(args.binary)
    bench_fresh_get_under_hogs(args.binary)
    bench_low_descriptor_limit(args.binary)
    bench_reconnect_storm(args.binary)
    bench_slow_readers(args.binary)
    bench_period_accuracy(args.binary, int(args.seconds))
    bench_check_cli(args.binary)
    bench_sigterm(args.binary)
    if args.tls:
        bench_tls(args.tls, args.binary, args.seconds)


if __name__ == "__main__":
    main()
