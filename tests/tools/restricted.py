#!/usr/bin/env python3
"""Checks every container of every deploy/*.json against Pod Security
"restricted" (the fields it requires of a container; in the kube-dns
example, only ours), and exechealthz containers for a read-only root and a
liveness probe of their own; prints one line per container checked,
`native` for each native sidecar (an init container restartPolicy Always)
and `exec probe through check` for a sidecar probed by `exechealthz check`.
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
    # kube-dns keeps upstream's images as they are (its YAML says why);
    # in every other example, every container is restricted.
    upstream_kept = os.path.basename(path).startswith("kube-dns")
    for kind in ["initContainers", "containers"]:
        for c in spec.get(kind, []):
            ours = "exechealthz" in c["image"]
            if not ours and upstream_kept:
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
            if ours and sc.get("readOnlyRootFilesystem") is not True:
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
            if ours and "livenessProbe" not in c:
                problems.append("no livenessProbe of its own")
            if problems:
                sys.exit(f"{where}: " + "; ".join(problems))
            print(f"{where}: restricted")
            command = c.get("livenessProbe", {}).get("exec", {}).get("command", [])
            if ours and command[:2] == ["/exechealthz", "check"]:
                print(f"{where}: exec probe through check")
            if kind == "initContainers" and c.get("restartPolicy") == "Always":
                print(f"{where}: native")
