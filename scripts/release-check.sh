#!/usr/bin/env bash
# Proves the release path on this machine (`make release-check`, run by CI):
# musl-static binaries for all four ARCH from the pinned zig toolchain, each
# checked static and run (qemu for foreign ones); the FROM scratch images,
# their OCI image index, each image's binary run from its rootfs; the amd64
# image run as it is with podman (read-only, 65534, no capabilities); a pod
# from deploy/ run with podman kube play, its exec probe through
# `exechealthz check` (scripts/pod-check.sh); sizes against budgets; the
# deploy/ examples. The TLS flavour (exechealthz-tls) the same way on all
# four, each running `check https://` against a TLS server on the host, and
# its amd64 image's `check https://` too. Installs what it needs (Debian packages, and the Python
# ones its checks use), and keeps its images in a container store of its
# own (--root and --runroot under a temporary folder, removed at the end),
# so that a podman already in use here, whatever its storage driver, is
# left as it was.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "== release-check: $*"; }
fail() { echo "release-check: $*" >&2; exit 1; }

say "installing tools"
pkgs=()
for p in file qemu-user-static buildah podman runc python3-venv busybox-static; do
  dpkg -s "$p" >/dev/null 2>&1 || pkgs+=("$p")
done
if [ ${#pkgs[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
python3 -c 'import kubernetes_validate' 2>/dev/null || pip install -q kubernetes-validate
python3 -c 'import grpc, grpc_health.v1.health' 2>/dev/null ||
  pip install -q grpcio grpcio-health-checking
python3 -c 'import cryptography' 2>/dev/null || pip install -q cryptography
echo "release-check: tools ready (file, qemu-user-static, buildah, podman, runc, busybox-static;" \
  "Python: kubernetes-validate, grpcio, grpcio-health-checking, cryptography)"

# A container store of our own: the user's (/var/lib/containers/storage)
# may have been made with another driver ("database storage graph driver
# does not match"); ours is vfs, which works anywhere, and goes at the end.
store=$(mktemp -d "${TMPDIR:-/tmp}/exechealthz-release-check.XXXXXX")
export EXECHEALTHZ_STORE="--root $store/root --runroot $store/run --storage-driver vfs"
BUILDAH="buildah $EXECHEALTHZ_STORE"
PODMAN="podman $EXECHEALTHZ_STORE --runtime runc --cgroup-manager cgroupfs"
containers=()
cleanup() {
  [ -z "${tls_pid:-}" ] || kill "$tls_pid" 2>/dev/null || true
  for c in "${containers[@]}"; do $PODMAN rm -f "$c" >/dev/null 2>&1 || true; done
  $PODMAN pod rm -af >/dev/null 2>&1 || true
  $PODMAN rm -af >/dev/null 2>&1 || true
  $BUILDAH rm --all >/dev/null 2>&1 || true
  rm -rf "$store"
}
trap cleanup EXIT

declare -A machine=(
  [amd64]="x86-64"
  [arm]="ARM, EABI5"
  [arm64]="ARM aarch64"
  [ppc64le]="64-bit PowerPC"
)
declare -A qemu=([amd64]="" [arm]=qemu-arm-static [arm64]=qemu-aarch64-static [ppc64le]=qemu-ppc64le-static)
declare -A budget=([amd64]=450 [arm]=600 [arm64]=600 [ppc64le]=600)
# The TLS flavour's (#30): 1 MiB on amd64, 1.1 MiB on the others. Not yet
# met (see the README's size choices): a miss is reported, not fatal.
declare -A tls_budget=([amd64]=1024 [arm]=1126 [arm64]=1126 [ppc64le]=1126)
summary=()

# A TLS server on the host for the TLS flavour's checks (Python's ssl, a
# P-256 certificate from tests/tools/tls_server.py).
certs="$store/certs"
mkdir -p "$certs"
python3 tests/tools/tls_server.py certs "$certs" >/dev/null || fail "cannot make certificates (pip install cryptography)"
python3 tests/tools/tls_server.py serve --cert "$certs/server.pem" --key "$certs/server.key" \
  >"$store/tls-server" 2>/dev/null &
tls_pid=$!
tls_port=
for _ in $(seq 1 100); do
  tls_port=$(sed -n 's/^port //p' "$store/tls-server")
  [ -n "$tls_port" ] && break
  sleep 0.1
done
[ -n "$tls_port" ] || fail "the TLS server did not start"

for arch in amd64 arm arm64 ppc64le; do
 for flavour in "" -tls; do
  say "build ARCH=$arch${flavour:+ TLS=1}"
  make --no-print-directory build ARCH="$arch" TLS="${flavour:+1}"
  bin=bin/$arch/exechealthz$flavour
  info=$(file -b "$bin")
  case $info in *"${machine[$arch]}"*) ;; *) fail "$bin is not ${machine[$arch]}: $info" ;; esac
  case $info in *"statically linked"*) ;; *) fail "$bin is not static: $info" ;; esac
  case $info in *interpreter*) fail "$bin has an interpreter: $info" ;; esac
  # musl, not a glibc twin: glibc's static binaries carry its version note.
  if grep -aq "GNU C Library" "$bin"; then fail "$bin is linked with glibc"; fi
  size=$(stat -c %s "$bin")
  say "run ARCH=$arch${flavour:+ TLS=1} ${qemu[$arch]:-natively}"
  # shellcheck disable=SC2086
  python3 scripts/smoke.py --thread http-0 /healthz 200 -- ${qemu[$arch]} "$bin" --period=100ms
  # The static build's own qsort (src/musl.rs) orders a name's addresses
  # as musl's getaddrinfo asks it to (RFC 6724: ::1 before 127.0.0.x).
  # Written last in the hosts file, ::1 must be tried first, so the last
  # address refused is 127.0.0.2. (Needs ::1 on this machine's lo.)
  if python3 -c 'import socket; socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).connect(("::1", 1))' 2>/dev/null; then
    printf '127.0.0.1 multi.test\n127.0.0.2 multi.test\n::1 multi.test\n' >"$store/hosts"
    # shellcheck disable=SC2086
    if out=$(unshare -rm sh -c 'mount --bind "$1" /etc/hosts && shift && exec "$@"' sh "$store/hosts" \
      ${qemu[$arch]} "$bin" check tcp://multi.test:1 2>&1); then
      fail "$bin check tcp://multi.test:1 passed: $out"
    fi
    case $out in
      *"connect 127.0.0.2:1:"*) say "$bin: a name's addresses in RFC 6724 order ($out)" ;;
      *) fail "$bin: a name's addresses not in RFC 6724 order: $out" ;;
    esac
  else
    say "no ::1 here: the address-order check is skipped"
  fi
  if [ -z "$flavour" ]; then
    [ "$size" -le $((budget[$arch] * 1024)) ] || fail "$bin is $size bytes, over ${budget[$arch]} KiB"
    summary+=("$arch: $size bytes ($((size / 1024)) KiB, budget ${budget[$arch]} KiB), musl static, ran ${qemu[$arch]:-natively}")
    # shellcheck disable=SC2086
    if out=$(${qemu[$arch]} "$bin" check "https://127.0.0.1:$tls_port/" 2>&1); then fail "https:// passed without TLS: $out"; fi
    case $out in *"exechealthz-tls"*) ;; *) fail "the build without TLS does not name the TLS build: $out" ;; esac
    continue
  fi
  # shellcheck disable=SC2086
  version=$(${qemu[$arch]} "$bin" --version)
  case $version in *"(features: tls)"*) ;; *) fail "$bin --version: $version" ;; esac
  # shellcheck disable=SC2086
  out=$(${qemu[$arch]} "$bin" check "https://127.0.0.1:$tls_port/" \
    "https://localhost:$tls_port/#ca=$certs/ca.pem") || fail "$bin check https://: $out"
  # shellcheck disable=SC2086
  if out=$(${qemu[$arch]} "$bin" check "https://127.0.0.1:$tls_port/#ca=$certs/other-ca.pem"); then
    fail "$bin passed a certificate from an unknown CA: $out"
  fi
  case $out in *"certificate: unknown issuer"*) ;; *) fail "$bin, unknown CA: $out" ;; esac
  over=""
  [ "$size" -le $((tls_budget[$arch] * 1024)) ] || over=" (OVER the budget)"
  summary+=("$arch TLS: $size bytes ($((size / 1024)) KiB, budget ${tls_budget[$arch]} KiB$over), musl static, ran ${qemu[$arch]:-natively}, check https:// unverified and with ca= passed, unknown CA failed")
 done
done

say "images and their OCI image index (buildah, in our own store)"
make --no-print-directory manifest BUILDAH="$BUILDAH" | tee /tmp/manifest.log
index=bin/oci/index.json
python3 - "$index" <<'PY'
import json, sys
index = json.load(open(sys.argv[1]))
# The pushed list is one entry of the layout's index; it lists the images.
lists = [m for m in index["manifests"] if m["mediaType"] == "application/vnd.oci.image.index.v1+json"]
assert lists, f"no OCI image index in {sys.argv[1]}: {index}"
digest = lists[0]["digest"].split(":")[1]
inner = json.load(open(f"bin/oci/blobs/sha256/{digest}"))
platforms = sorted(
    "/".join(filter(None, [m["platform"]["os"], m["platform"]["architecture"], m["platform"].get("variant")]))
    for m in inner["manifests"]
)
print("manifest platforms:", ", ".join(platforms))
want = ["linux/amd64", "linux/arm/v7", "linux/arm64", "linux/ppc64le"]
assert platforms == want, platforms
PY
summary+=("manifest: OCI image index with linux/amd64, linux/arm/v7, linux/arm64, linux/ppc64le")

tag=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
for arch in amd64 arm arm64 ppc64le; do
  image=gcr.io/google_containers/exechealthz-$arch:$tag
  # (buildah warns that a foreign image is foreign: it is meant to be.)
  ctr=$($BUILDAH from "$image" 2>/dev/null)
  root=$($BUILDAH mount "$ctr")
  contents=$(cd "$root" && find . -mindepth 1 | sort | tr '\n' ' ')
  [ "$contents" = "./exechealthz " ] || fail "$image holds more than the binary: $contents"
  say "image $arch: run its binary from the rootfs ${qemu[$arch]:-natively}"
  # shellcheck disable=SC2086
  python3 scripts/smoke.py /healthz 200 -- ${qemu[$arch]} "$root/exechealthz" --cmd=file:///
  if [ "$arch" = amd64 ]; then
    say "built-in checks from the image's rootfs (nothing but the binary) as 65534:65534"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    python3 scripts/smoke.py /status 200 -- chroot --userspec=65534:65534 "$root" /exechealthz \
      --port="$port" --period=100ms \
      --cmd="tcp://127.0.0.1:$port" --url=/tcp \
      --cmd="http://127.0.0.1:$port/" --url=/http \
      --cmd=file:///exechealthz --url=/file \
      --shell=none --cmd="/exechealthz --version" --url=/exec
    root_bytes=$(du -sb "$root" | cut -f1)
  fi
  $BUILDAH umount "$ctr" >/dev/null
  $BUILDAH rm "$ctr" >/dev/null
done
[ "$root_bytes" -le $((1024 * 1024)) ] || fail "amd64 image rootfs is $root_bytes bytes, over 1 MiB"
summary+=("amd64 image: $root_bytes bytes in its rootfs (the binary alone)")

say "labels"
image=gcr.io/google_containers/exechealthz-amd64:$tag
$BUILDAH inspect "$image" | python3 -c '
import json, sys
labels = json.load(sys.stdin)["OCIv1"]["config"]["Labels"]
for key in ["revision", "version", "created", "licenses"]:
    value = labels.get("org.opencontainers.image." + key, "")
    assert value and value != "unknown", (key, labels)
short = {k.rsplit(".", 1)[1]: v for k, v in labels.items()}
print("labels:", ", ".join(f"{k}={v}" for k, v in sorted(short.items())))
'

say "the amd64 image as it is: podman, no arguments, read-only, 65534, no capabilities"
# This machine may not raise rlimits: podman needs them given explicitly;
# its cgroups (v1/hybrid) need runc with cgroupfs, not crun (see
# shared/docs/toolchain.md). Our own store, as buildah's.
hostport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
name=exechealthz-release-check
containers+=("$name")
$PODMAN run -d --name "$name" --read-only --user 65534:65534 --cap-drop ALL \
  --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 \
  -p "127.0.0.1:$hostport:8080" "$image" >/dev/null
got=""
for _ in $(seq 1 100); do
  got=$(python3 -c "
import urllib.request, sys
try:
    r = urllib.request.urlopen('http://127.0.0.1:$hostport/healthz', timeout=2)
    print(r.status, r.read().decode())
except Exception as e:
    print(getattr(e, 'code', 'none'))
" 2>/dev/null)
  [ "$got" = "200 ok" ] && break
  sleep 0.1
done
[ "$got" = "200 ok" ] || { $PODMAN logs "$name" >&2 || true; fail "the image answered '$got' on /healthz"; }
start=$(date +%s%N)
$PODMAN stop --time 1 "$name" >/dev/null
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
code=$($PODMAN inspect --format '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || fail "the image exited $code on SIGTERM (killed at the 1 s limit?)"
echo "podman: /healthz 200 with no arguments; SIGTERM to exit 0 in $elapsed_ms ms (podman stop included)"
summary+=("podman run (read-only, 65534, cap-drop ALL): /healthz 200, SIGTERM exit 0 in $elapsed_ms ms")

say "the image's grpc:// check, in the image as it is, against a gRPC server on the host"
# grpcio's health service (tests/tools/grpc_server.py; .ci/run installs
# grpcio): SERVING passes, NOT_SERVING fails with its reason.
coproc GRPC { python3 tests/tools/grpc_server.py 2>/dev/null; }
read -r -u "${GRPC[0]}" _ grpc_port || fail "the gRPC server did not start (pip install grpcio grpcio-health-checking)"
grpc_check() {
  $PODMAN run --rm --network host --read-only --user 65534:65534 --cap-drop ALL \
    --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 \
    "$image" check "grpc://127.0.0.1:$grpc_port/"
}
out=$(grpc_check) || fail "exechealthz check grpc:// in the image: $out"
echo "set - NOT_SERVING" >&"${GRPC[1]}"
read -r -u "${GRPC[0]}" _
if out=$(grpc_check); then fail "a NOT_SERVING gRPC server passed: $out"; fi
case $out in
  *'service unhealthy (responded with "NOT_SERVING")'*) ;;
  *) fail "NOT_SERVING gave: $out" ;;
esac
echo "quit" >&"${GRPC[1]}"
wait "$GRPC_PID" || true
summary+=("image: exechealthz check grpc:// passes against grpcio SERVING, fails on NOT_SERVING with its reason")

say "the TLS image's https:// check, in the image as it is, against the TLS server on the host"
make --no-print-directory container ARCH=amd64 TLS=1 CONTAINER_TOOL=buildah BUILDAH="$BUILDAH" >/dev/null
tls_image=gcr.io/google_containers/exechealthz-tls-amd64:$tag
tls_check() {
  $PODMAN run --rm --network host --read-only --user 65534:65534 --cap-drop ALL \
    --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 -v "$certs:/certs:ro" \
    "$tls_image" check "$@"
}
chmod -R a+rX "$certs"
out=$(tls_check "https://127.0.0.1:$tls_port/" "https://localhost:$tls_port/#ca=/certs/ca.pem") ||
  fail "exechealthz check https:// in the TLS image: $out"
if out=$(tls_check "https://localhost:$tls_port/#ca=/certs/other-ca.pem"); then
  fail "the TLS image passed an unknown CA: $out"
fi
case $out in *"certificate: unknown issuer"*) ;; *) fail "the TLS image, unknown CA: $out" ;; esac
summary+=("TLS image $tls_image: check https:// passes unverified and with ca=, fails an unknown CA")
kill "$tls_pid" 2>/dev/null || true

say "a pod from deploy/ on podman (kube play), and its exec probe through exechealthz check"
scripts/pod-check.sh "$image" | tee /tmp/pod-check.log
while IFS= read -r line; do summary+=("${line#pod-check: }"); done < <(grep '^pod-check: ' /tmp/pod-check.log | grep -v 'kube play (')

say "deploy/ examples"
kubernetes-validate --strict deploy/*.yaml deploy/*.json
python3 scripts/check-deploy.py bin/amd64/exechealthz

say "summary"
printf '  %s\n' "${summary[@]}"
say "all good"
