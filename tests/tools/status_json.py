#!/usr/bin/env python3
"""Reads /status?format=json from stdin with Python's json module and prints
the overall status, then one line per probe: url, state, passes, exit code,
runs, and the field names, so the Rust test checks the shape."""
import json
import sys

doc = json.load(sys.stdin)
print(doc["status"])
for p in doc["probes"]:
    print("\t".join([p["url"], p["state"], str(p["passes"]).lower(), str(p.get("last_exit_code")),
                     str(p["runs"]), ",".join(sorted(p))]))
