#!/usr/bin/env python3
"""Starts a command that runs exechealthz (with --port=0 added unless it
names a port), waits for
its listening line, GETs a path and checks the status; then SIGTERMs it and
checks it exits 0. Used by release-check.sh on each binary and the image.
With --thread NAME, the process (COMMAND's own, not a wrapper's) must have
a thread of that name: the static build names its threads itself
(src/musl.rs).

usage: smoke.py [--thread NAME] PATH STATUS -- COMMAND...
"""
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request


def main():
    args = sys.argv[1:sys.argv.index("--")]
    thread = None
    if args[:1] == ["--thread"]:
        thread, args = args[1], args[2:]
    path, status = args[0], int(args[1])
    command = sys.argv[sys.argv.index("--") + 1:]
    if not any(arg.startswith(("--port", "-port")) for arg in command):
        command.append("--port=0")
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    port = None
    deadline = time.time() + 30  # qemu is slow to start
    while port is None and time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"listening on .*:(\d+)$", line.strip())
        if m:
            port = int(m.group(1))
    if port is None:
        proc.kill()
        sys.exit(f"smoke: {command} did not start")
    got, body = None, b""
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                got, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            got, body = e.code, e.read()
        if got == status:
            break
        time.sleep(0.1)
    names = []
    if thread is not None:
        tasks = f"/proc/{proc.pid}/task"
        for task in sorted(os.listdir(tasks)):
            try:
                with open(f"{tasks}/{task}/comm") as f:
                    names.append(f.read().strip())
            except FileNotFoundError:
                pass  # a thread that ended meanwhile
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=10)
    print(f"smoke: {' '.join(command[:2])}... GET {path} -> {got}; exit {code}")
    if got != status or code != 0:
        sys.exit(f"smoke: wanted {status} and exit 0; body: {body[:200]!r}")
    if thread is not None:
        print(f"smoke: threads {', '.join(names)}")
        if thread not in names:
            sys.exit(f"smoke: no thread named {thread!r}")


if __name__ == "__main__":
    main()
