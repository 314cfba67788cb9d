#!/usr/bin/env python3
"""Checks deploy/: each JSON file says what its YAML twin says, and the
args of every exechealthz container are accepted by the binary (it starts
and listens), so the examples stay drop-in.

usage: check-deploy.py BINARY
"""
import glob
import json
import os
import subprocess
import sys

import yaml


def containers(doc):
    spec = doc["spec"]
    if "template" in spec:
        spec = spec["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def main():
    binary = sys.argv[1]
    here = os.path.join(os.path.dirname(__file__), "..", "deploy")
    failed = False
    for path in sorted(glob.glob(os.path.join(here, "*.yaml"))):
        doc = yaml.safe_load(open(path))
        twin = path[: -len(".yaml")] + ".json"
        if json.load(open(twin)) != doc:
            print(f"check-deploy: {twin} differs from {path}")
            failed = True
        for c in containers(doc):
            if "exechealthz" not in c["image"]:
                continue
            # --period=1h: start, listen, and run each command once at most
            # (--latency as long, so that no warning comes first).
            args = c.get("args", []) + ["--port=0", "--period=1h", "--latency=1h"]
            proc = subprocess.Popen([binary, *args], stderr=subprocess.PIPE, text=True)
            line = ""
            for _ in range(20):
                line = proc.stderr.readline()
                if not line or "listening on" in line:
                    break
            proc.terminate()
            proc.wait()
            ok = "listening on" in line
            print(f"check-deploy: {os.path.basename(path)} {c['name']}: {'ok' if ok else line.strip()}")
            failed |= not ok
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
