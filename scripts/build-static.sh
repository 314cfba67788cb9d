#!/usr/bin/env bash
# Builds a static exechealthz for one release architecture into
# bin/ARCH/exechealthz (`make build ARCH=...` calls this).
#
#   amd64   -> x86_64-unknown-linux-musl
#   arm     -> armv7-unknown-linux-musleabihf
#   arm64   -> aarch64-unknown-linux-musl
#   ppc64le -> powerpc64le-unknown-linux-musl
#
# With `cross` (CROSS=cross, or found with a working container engine) the
# real musl target is built in cross's image. Otherwise cargo builds it with
# what this machine has: with a nightly that has rust-src, std is rebuilt
# without its backtrace printer (-Zbuild-std; STD=stable to skip); where no musl std can be had for the target (rustup
# cannot download it), it falls back to a static build of the gnu twin with
# Debian's cross gcc as linker, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=${1:?usage: build-static.sh ARCH (amd64, arm, arm64, ppc64le)}
case $arch in
  amd64)   musl=x86_64-unknown-linux-musl;      gnu=x86_64-unknown-linux-gnu;       gcc=gcc ;;
  arm)     musl=armv7-unknown-linux-musleabihf; gnu=armv7-unknown-linux-gnueabihf;  gcc=arm-linux-gnueabihf-gcc ;;
  arm64)   musl=aarch64-unknown-linux-musl;     gnu=aarch64-unknown-linux-gnu;      gcc=aarch64-linux-gnu-gcc ;;
  ppc64le) musl=powerpc64le-unknown-linux-musl; gnu=powerpc64le-unknown-linux-gnu;  gcc=powerpc64le-linux-gnu-gcc ;;
  *) echo "build-static.sh: unknown ARCH '$arch' (amd64, arm, arm64, ppc64le)" >&2; exit 2 ;;
esac
# EXAMPLE=bare builds examples/bare.rs the same way (for `make bench`).
if [ -n "${EXAMPLE:-}" ]; then
  what=(--example "$EXAMPLE"); sub=examples/; name=$EXAMPLE
else
  what=(); sub=; name=exechealthz
fi
out=bin/$arch/$name
mkdir -p "bin/$arch"

# CARGO_TARGET_<TRIPLE>_<NAME>=value, for one target only.
target_env() {
  local triple=$1 name=$2 value=$3
  local upper
  upper=$(echo "$triple" | tr 'a-z-' 'A-Z_')
  export "CARGO_TARGET_${upper}_${name}=${value}"
}

engine_works() {
  { command -v docker >/dev/null && docker info >/dev/null 2>&1; } ||
    { command -v podman >/dev/null && podman info >/dev/null 2>&1; }
}

has_std() {
  [ -d "$(rustc --print sysroot)/lib/rustlib/$1/lib" ]
}

# A nightly with rust-src and the target's musl objects (for crt and libc).
nightly_build_std() {
  local sysroot
  sysroot=$(rustc +nightly --print sysroot 2>/dev/null) || return 1
  [ -d "$sysroot/lib/rustlib/src/rust/library" ] || return 1
  [ -d "$sysroot/lib/rustlib/$1/lib" ] || rustup target add "$1" --toolchain nightly >/dev/null 2>&1
  [ -d "$sysroot/lib/rustlib/$1/lib" ]
}

if [ -z "${CROSS:-}" ] && command -v cross >/dev/null && engine_works; then
  CROSS=cross
fi

if [ -n "${CROSS:-}" ]; then
  echo "build-static: $CROSS build --target $musl"
  CROSS_CONFIG=${CROSS_CONFIG:-cross.toml} "$CROSS" build --release --locked --target "$musl" "${what[@]}"
  built=target/$musl/release/$sub$name
else
  has_std "$musl" || rustup target add "$musl" >/dev/null 2>&1 || true
  if [ "${STD:-auto}" != stable ] && nightly_build_std "$musl"; then
    # std rebuilt from source without its default features: no backtrace
    # printer (gimli, addr2line, miniz_oxide: about 300 KiB). Panics still
    # print their message. STD=stable skips this.
    echo "build-static: cargo +nightly build -Zbuild-std --target $musl (rust-lld, --icf=all)"
    target_env "$musl" LINKER rust-lld
    target_env "$musl" RUSTFLAGS "-C link-arg=--icf=all"
    cargo +nightly build --release --locked --target "$musl" "${what[@]}" \
      -Zbuild-std=std,panic_abort -Zbuild-std-features=
    built=target/$musl/release/$sub$name
  elif has_std "$musl"; then
    echo "build-static: cargo build --target $musl (rust-lld, --icf=all)"
    # Static, non-PIE flags come from .cargo/config.toml. rust-lld links
    # with the musl objects rustup ships, and folds identical functions
    # (--icf=all: 11 KiB on amd64, which keeps it inside 700 KiB).
    target_env "$musl" LINKER rust-lld
    target_env "$musl" RUSTFLAGS "-C link-arg=--icf=all"
    cargo build --release --locked --target "$musl" "${what[@]}"
    built=target/$musl/release/$sub$name
  else
    echo "build-static: NOTE: no musl std for $musl on this machine;"
    echo "build-static: NOTE: building a static binary of its gnu twin $gnu instead (glibc, +crt-static)"
    has_std "$gnu" || rustup target add "$gnu"
    command -v "$gcc" >/dev/null || {
      echo "build-static: $gcc is missing (Debian: apt-get install gcc-${gcc%-gcc})" >&2
      exit 1
    }
    target_env "$gnu" RUSTFLAGS "-C target-feature=+crt-static -C relocation-model=static"
    target_env "$gnu" LINKER "$gcc"
    cargo build --release --locked --target "$gnu" "${what[@]}"
    built=target/$gnu/release/$sub$name
  fi
fi

cp "$built" "$out"
echo "build-static: $out ($(stat -c %s "$out") bytes): $(file -b "$out" 2>/dev/null || echo 'file(1) not installed')"
