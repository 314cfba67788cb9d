#!/usr/bin/env bash
# Builds a static musl exechealthz for one release architecture into
# bin/ARCH/exechealthz (`make build ARCH=...` calls this).
#
#   amd64   -> x86_64-unknown-linux-musl
#   arm     -> armv7-unknown-linux-musleabihf
#   arm64   -> aarch64-unknown-linux-musl
#   ppc64le -> powerpc64le-unknown-linux-musl
#
# One pinned toolchain for all four, installed here on first use, so the
# same sources give the same binary whatever ran before on the machine:
# - Rust $RUST with its rust-src: std is rebuilt from source for the target
#   (-Zbuild-std, allowed on stable by RUSTC_BOOTSTRAP=1), without its
#   default features (no backtrace printer: about 300 KiB); rustup has no
#   prebuilt musl std for arm and ppc64le here, and needs none this way;
# - zig $ZIG as C compiler and linker (it carries musl for every target),
#   driven by cargo-zigbuild $ZIGBUILD; both from PyPI, in target/zigvenv (under
#   CARGO_TARGET_DIR when it is set, as the build's output is).
# Nothing falls back to glibc: what cannot be installed is named, exit 1.
#
# CROSS=1 builds in cross's container images instead (needs `cross`, a
# container engine and its image registry; see cross.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

RUST=1.95.0
ZIG=0.17.1
ZIGBUILD=0.24.1

arch=${1:?usage: build-static.sh ARCH (amd64, arm, arm64, ppc64le)}
case $arch in
  amd64)   musl=x86_64-unknown-linux-musl ;;
  arm)     musl=armv7-unknown-linux-musleabihf ;;
  arm64)   musl=aarch64-unknown-linux-musl ;;
  ppc64le) musl=powerpc64le-unknown-linux-musl ;;
  *) echo "build-static.sh: unknown ARCH '$arch' (amd64, arm, arm64, ppc64le)" >&2; exit 2 ;;
esac
# EXAMPLE=bare builds examples/bare.rs the same way (for `make bench`).
# TLS=1 builds the TLS flavour (the `tls` feature) as
# bin/ARCH/exechealthz-tls.
case ${TLS:-} in
  "" | 0 | no) tls= ;;
  *) tls=1 ;;
esac
if [ -n "${EXAMPLE:-}" ]; then
  what=(--example "$EXAMPLE"); sub=examples/; name=$EXAMPLE; built=$name
elif [ -n "$tls" ]; then
  what=(--features tls); sub=; name=exechealthz-tls; built=exechealthz
else
  what=(); sub=; name=exechealthz; built=$name
fi
out=bin/$arch/$name
# Cargo's output folder, wherever CARGO_TARGET_DIR puts it (relative to here).
target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "bin/$arch"

fail() { echo "build-static: $*" >&2; exit 1; }

case ${CROSS:-} in
  "" | 0 | none | no) cross= ;;
  *) cross=1 ;;
esac

if [ -n "$cross" ]; then
  command -v cross >/dev/null || fail "CROSS=1 needs cross (cargo install cross) and docker or podman"
  echo "build-static: cross build --target $musl (images from cross.toml)"
  CROSS_CONFIG=${CROSS_CONFIG:-cross.toml} cross build --release --locked --target "$musl" "${what[@]}"
else
  rustup toolchain list | grep -q "^$RUST-" ||
    rustup toolchain install "$RUST" --profile minimal >/dev/null ||
    fail "cannot install Rust $RUST (rustup toolchain install $RUST)"
  sysroot=$(rustc "+$RUST" --print sysroot)
  [ -d "$sysroot/lib/rustlib/src/rust/library" ] ||
    rustup component add rust-src --toolchain "$RUST" >/dev/null ||
    fail "cannot install rust-src for Rust $RUST (rustup component add rust-src --toolchain $RUST)"
  venv=$target_dir/zigvenv
  case $venv in /*) ;; *) venv=$PWD/$venv ;; esac
  have() { "$venv/bin/pip" show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
  if [ "$(have ziglang 2>/dev/null)" != "$ZIG" ] || [ "$(have cargo-zigbuild 2>/dev/null)" != "$ZIGBUILD" ]; then
    echo "build-static: installing ziglang $ZIG and cargo-zigbuild $ZIGBUILD into $venv"
    python3 -m venv "$venv" || fail "cannot create a Python venv (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install -q "ziglang==$ZIG" "cargo-zigbuild==$ZIGBUILD" ||
      fail "cannot install ziglang==$ZIG and cargo-zigbuild==$ZIGBUILD from PyPI"
  fi
  echo "build-static: cargo +$RUST zigbuild -Zbuild-std --target $musl (zig $ZIG)"
  # Static and position-dependent (non-PIE: 16 KiB of relocations less);
  # zig brings the crt objects, so rustc must not add its own. No unwind
  # tables: panics abort (Cargo.toml), so nothing unwinds, and std is
  # built without its backtrace printer; they were 38 KiB of .eh_frame on
  # amd64. A panic still prints its message. The link-args say the same to
  # zig for the C it compiles at link time (musl, compiler_rt): its
  # .eh_frame was another 12.9 KiB on amd64, and musl never unwinds.
  # Not -Os for that C: zig then builds memcpy as a byte loop, and CPU per
  # run of a probe with 1 MiB of output went from 2.1 to 6.0 ms.
  PATH="$venv/bin:$PATH" RUSTC_BOOTSTRAP=1 \
    RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static -C link-self-contained=no -C force-unwind-tables=no -C link-arg=-fno-unwind-tables -C link-arg=-fno-asynchronous-unwind-tables" \
    cargo "+$RUST" zigbuild --release --locked --target "$musl" "${what[@]}" \
    -Zbuild-std=std,panic_abort -Zbuild-std-features=
fi

scripts/install.sh "$target_dir/$musl/release/$sub$built" "$out"
info=$(file -b "$out" 2>/dev/null || echo 'file(1) not installed')
case $info in
  *"dynamically linked"* | *interpreter*) fail "$out is not static: $info" ;;
esac
echo "build-static: $out ($(stat -c %s "$out") bytes): $info"
