#!/usr/bin/env python3
"""Checks the exechealthz containers of every deploy/*.json against Pod
Security "restricted" (the fields it requires of a container) and for a
liveness probe of their own; prints one line per container checked, and
`native` for each native sidecar (an init container restartPolicy Always).
Exits 1 with the reason on the first failure. Standard library only."""
import glob
import json
import os
import sys

here = os.path.join(os.path.dirname(__file__), "..", "..", "deploy")
files = sorted(glob.glob(os.path.join(here, "*.json")))
if not files:
    sys.exit("no deploy/*.json")
for path in files:
    doc = json.load(open(path))
    spec = doc["spec"]
    spec = spec.get("template", {}).get("spec", spec)
    pod = spec.get("securityContext", {})
    for kind in ["initContainers", "containers"]:
        for c in spec.get(kind, []):
            if "exechealthz" not in c["image"]:
                continue
            where = f"{os.path.basename(path)} {c['name']}"
            sc = c.get("securityContext", {})
            def field(name):
                return sc.get(name, pod.get(name))
            problems = []
            if field("runAsNonRoot") is not True:
                problems.append("runAsNonRoot is not true")
            if field("runAsUser") == 0:
                problems.append("runAsUser is 0")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append("readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append("allowPrivilegeEscalation is not false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append("capabilities do not drop ALL")
            if sc.get("capabilities", {}).get("add"):
                problems.append("capabilities are added")
            if sc.get("privileged"):
                problems.append("privileged")
            seccomp = (field("seccompProfile") or {}).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                problems.append(f"seccompProfile is {seccomp}")
            if "livenessProbe" not in c:
                problems.append("no livenessProbe of its own")
            if problems:
                sys.exit(f"{where}: " + "; ".join(problems))
            print(f"{where}: restricted")
            if kind == "initContainers" and c.get("restartPolicy") == "Always":
                print(f"{where}: native")
