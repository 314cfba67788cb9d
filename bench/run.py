#!/usr/bin/env python3
"""Benchmarks for exechealthz: prints figures, asserts nothing.

Run with `make bench`. Builds nothing itself: pass the binary to measure.
Each figure is printed as `name: value unit`, after a line naming the machine.
"""
import argparse
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time



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


def bench_cpu_per_run(binary, seconds):
    with tempfile.TemporaryDirectory() as tmp:
        runs_file = os.path.join(tmp, "runs")
        proc, _ = start(binary, ["--quiet", "--period=10ms", f"--cmd=echo >> {runs_file}"])
        try:
            time.sleep(1)
            runs0, cpu0 = count_lines(runs_file), cpu_seconds(proc.pid)
            time.sleep(seconds)
            runs1, cpu1 = count_lines(runs_file), cpu_seconds(proc.pid)
        finally:
            proc.kill()
            proc.wait()
    runs = runs1 - runs0
    figure("probe runs measured (period 10ms)", runs)
    figure("server CPU per probe run", f"{(cpu1 - cpu0) / runs * 1000:.3f}", "ms")


def bench_sigterm(binary, repeats=20):
    """Time from SIGTERM to exit, with a probe command running."""
    times = []
    for _ in range(repeats):
        proc, _ = start(binary, ["--quiet", "--cmd=sleep 100"])
        time.sleep(0.2)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        times.append(time.monotonic() - t0)
    times.sort()
    figure("SIGTERM to exit, median", f"{times[len(times) // 2] * 1000:.1f}", "ms")
    figure("SIGTERM to exit, max", f"{times[-1] * 1000:.1f}", "ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("binary")
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"binary: {args.binary}")
    bench_binary_size(args.binary)
    bench_idle_rss(args.binary)
    bench_cpu_per_run(args.binary, args.seconds)
    bench_sigterm(args.binary)


if __name__ == "__main__":
    main()
