#!/usr/bin/env bash
# Runs deploy/check-pod.yaml on a real container engine (`podman kube
# play`), with the images built here, and shows by running them:
# - both containers start under the pod's restricted securityContext;
# - the sidecar's probe URL answers 200 from the host, through the pod's
#   published port;
# - `podman healthcheck run` on the container with the exec probe
#   (`exechealthz check`) exits 0, and non-zero once what it checks fails;
# - `podman pod stop` stops the sidecar with exit status 0 within its grace.
# Called by release-check.sh once the amd64 image is built, in its own
# container store (EXECHEALTHZ_STORE: podman's --root, --runroot and
# --storage-driver); run alone, it uses podman's store as configured.
#
#   scripts/pod-check.sh IMAGE
#
# What the pod is given to run here (podman 4.3 on a machine without
# systemd, rlimits it may not raise, nor a registry to pull from):
# - both containers run IMAGE: the app is exechealthz too, serving on 8080
#   what nginx-unprivileged would (its index page answers GET / with 200);
# - the sidecar's exec probe asks the sidecar's probe URL (which fails when
#   the app does), not its index page, so that stopping the app turns it
#   red; and its containerPort gets a hostPort;
# - a containers.conf (CONTAINERS_CONF) gives the containers rlimits,
#   which `kube play` has no flag for ("error setting rlimit" otherwise);
# - podman 4.3 turns an exec probe into a CMD-SHELL health check, run as
#   `/bin/sh -c "COMMAND || exit 1"`, which a scratch image cannot run (no
#   /bin/sh): the sidecar gets a static busybox as /bin/sh, read-only,
#   through a hostPath volume (podman's wrapping needs it; the kubelet's
#   exec does not). An exec-form health check needs no shell: that is
#   shown too, with `podman run --health-cmd '["/exechealthz", ...]'`, what
#   a HEALTHCHECK CMD [...] in an image built FROM ours does.
set -euo pipefail
cd "$(dirname "$0")/.."

image=${1:?usage: pod-check.sh IMAGE}
fail() { echo "pod-check: $*" >&2; exit 1; }
[ -x /bin/busybox ] || fail "needs a static busybox at /bin/busybox (Debian: busybox-static)"
PODMAN="podman ${EXECHEALTHZ_STORE:-} --runtime runc --cgroup-manager cgroupfs"
work=$(mktemp -d)
pod=exechealthz-pod-check
name=exechealthz-exec-form
listener=
cleanup() {
  $PODMAN pod rm -f "$pod" >/dev/null 2>&1 || true
  $PODMAN rm -f "$name" >/dev/null 2>&1 || true
  [ -z "$listener" ] || kill "$listener" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cleanup
mkdir -p "$work"

cat >"$work/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
CONF
export CONTAINERS_CONF=$work/containers.conf

hostport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 - "$image" "$hostport" "$pod" >"$work/pod.yaml" <<'PY'
import sys, yaml
image, hostport, pod = sys.argv[1], int(sys.argv[2]), sys.argv[3]
doc = yaml.safe_load(open("deploy/check-pod.yaml"))
doc["metadata"]["name"] = pod
web, healthz = doc["spec"]["containers"]
assert (web["name"], healthz["name"]) == ("web", "healthz")
web["image"] = image
web["args"] = ["-port=8080", "-cmd=file:///exechealthz", "-url=/ready", "-quiet"]
web.pop("livenessProbe")  # the kubelet's httpGet: podman would run curl in it
healthz["image"] = image
healthz["ports"][0]["hostPort"] = hostport
healthz["livenessProbe"]["exec"]["command"] = [
    "/exechealthz", "check", "http://127.0.0.1:8081/healthz"]
doc["spec"]["volumes"] = [
    {"name": "sh", "hostPath": {"path": "/bin/busybox", "type": "File"}}]
healthz["volumeMounts"] = [{"name": "sh", "mountPath": "/bin/sh", "readOnly": True}]
yaml.safe_dump(doc, sys.stdout)
PY

echo "pod-check: podman kube play (deploy/check-pod.yaml, images $image)"
# Its complaints about systemd (absent here: periodic health checks are
# not scheduled) are expected; `podman healthcheck run` below runs them.
$PODMAN kube play "$work/pod.yaml" >/dev/null 2>"$work/play.log" ||
  { cat "$work/play.log" >&2; fail "podman kube play failed"; }
for c in web healthz; do
  state=$($PODMAN inspect --format '{{.State.Status}} user={{.Config.User}} caps={{.EffectiveCaps}}' "$pod-$c")
  echo "pod-check: $c: $state"
  case $state in running*) ;; *) $PODMAN logs "$pod-$c" >&2 || true; fail "$c is not running" ;; esac
  case $state in *"user=0"* | *"user=root"* | *"user= "*) fail "$c runs as root" ;; esac
  case $state in *"caps=[]"*) ;; *) fail "$c keeps capabilities: $state" ;; esac
done

status() {
  python3 - "$1" <<'PY'
import sys, urllib.request
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=2)
    print(r.status)
except Exception as e:
    print(getattr(e, "code", "none"))
PY
}
wait_status() {
  local want=$1 got=""
  for _ in $(seq 1 150); do
    got=$(status "http://127.0.0.1:$hostport/healthz")
    [ "$got" = "$want" ] && return 0
    sleep 0.1
  done
  $PODMAN logs "$pod-healthz" >&2 || true
  fail "the probe URL answered $got through the published port, not $want"
}
wait_status 200
echo "pod-check: the sidecar's probe URL answers 200 from the host (port $hostport)"

$PODMAN healthcheck run "$pod-healthz" || fail "podman healthcheck run exited $? with the app up"
echo "pod-check: podman healthcheck run (exechealthz check): exit 0 with the app up"
$PODMAN stop --time 2 "$pod-web" >/dev/null
wait_status 503
if $PODMAN healthcheck run "$pod-healthz" >/dev/null 2>&1; then
  fail "podman healthcheck run exited 0 with the app stopped"
fi
echo "pod-check: podman healthcheck run: non-zero once the app is stopped"

start=$(date +%s%N)
$PODMAN pod stop --time 10 "$pod" >/dev/null 2>"$work/stop.log"
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
code=$($PODMAN inspect --format '{{.State.ExitCode}}' "$pod-healthz")
[ "$code" = 0 ] || fail "the sidecar exited $code on podman pod stop"
echo "pod-check: podman pod stop: the sidecar exited 0 in $elapsed_ms ms (grace 10 s)"

# The exec form, no shell: the image serving a tcp:// check of a port the
# host opens and closes, its health check `exechealthz check` of its own
# probe URL (host network, so that the port is the host's).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
serve=$(free_port)
target=$(free_port)
python3 -c "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', $target)); s.listen(); time.sleep(600)" &
listener=$!
$PODMAN run -d --name "$name" --network host --read-only --user 65534:65534 --cap-drop ALL \
  --health-cmd "[\"/exechealthz\", \"check\", \"http://127.0.0.1:$serve/healthz\"]" \
  "$image" --port="$serve" --cmd="tcp://127.0.0.1:$target" --period=100ms >/dev/null 2>"$work/run.log" ||
  { cat "$work/run.log" >&2; fail "podman run failed"; }
healthy() { $PODMAN healthcheck run "$name" >/dev/null 2>&1; }
for _ in $(seq 1 100); do healthy && break; sleep 0.1; done
healthy || fail "exec-form health check: not healthy with its target up"
kill "$listener"; wait "$listener" 2>/dev/null || true; listener=
for _ in $(seq 1 100); do healthy || break; sleep 0.1; done
if healthy; then fail "exec-form health check: still healthy with its target gone"; fi
echo "pod-check: exec-form health check (--health-cmd [\"/exechealthz\", \"check\", ...], no shell): exit 0, then non-zero once its target is gone"
