#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo-fuzz, libFuzzer) for SECONDS each,
# starting from the corpus kept in fuzz/corpus/TARGET (copied: the run's
# finds stay in fuzz/target/corpus, out of the repo). Prints each target's
# executions and coverage; a crash stops it with exit status 1, and its
# input is left in fuzz/artifacts/TARGET for fuzz/regressions/TARGET.
#
#   scripts/fuzz.sh SECONDS [TARGET...]
#
# Installs what it needs on first use: the Rust toolchain the release build
# pins (libFuzzer's flags are nightly ones, allowed on it by
# RUSTC_BOOTSTRAP=1, as for the release build's -Zbuild-std) and
# cargo-fuzz $CARGO_FUZZ.
set -euo pipefail
cd "$(dirname "$0")/.."

RUST=1.95.0
CARGO_FUZZ=0.13.2
seconds=${1:?usage: fuzz.sh SECONDS [TARGET...]}
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(request_head connection flags check_url http_response dns_reply grpc_response hpack_blocks)
fi

fail() { echo "fuzz: $*" >&2; exit 1; }
rustup toolchain list | grep -q "^$RUST-" ||
  rustup toolchain install "$RUST" --profile minimal >/dev/null ||
  fail "cannot install Rust $RUST (rustup toolchain install $RUST)"
if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ" ]; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ"
  cargo install -q cargo-fuzz --version "$CARGO_FUZZ" --locked ||
    fail "cannot install cargo-fuzz $CARGO_FUZZ (cargo install cargo-fuzz)"
fi
export RUSTUP_TOOLCHAIN=$RUST RUSTC_BOOTSTRAP=1

summary=()
for target in "${targets[@]}"; do
  corpus=fuzz/target/corpus/$target
  mkdir -p "$corpus"
  cp -n fuzz/corpus/"$target"/* "$corpus"/ 2>/dev/null || true
  log=fuzz/target/$target.log
  echo "== fuzz $target for ${seconds}s"
  if ! cargo fuzz run --fuzz-dir fuzz "$target" "$corpus" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    fail "$target crashed: its input is in fuzz/artifacts/$target; copy it to fuzz/regressions/$target once fixed"
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | awk '{print $2}')
  features=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | awk '{print $2}')
  corpus_size=$(ls "$corpus" | wc -l)
  line="$target: ${runs:-?} executions in ${seconds}s, coverage ${cov:-?} edges, ${features:-?} features, corpus $corpus_size"
  echo "$line"
  summary+=("$line")
done
echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
