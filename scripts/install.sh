#!/usr/bin/env bash
# Puts a freshly built binary in place: copied beside the destination, then
# renamed over it. A rename replaces the name, not the file, so it works
# while the old binary runs (a `cp` over it fails: "Text file busy"), and
# nothing ever sees a half-written binary.
#
#   scripts/install.sh SOURCE DEST
set -euo pipefail
src=${1:?usage: install.sh SOURCE DEST}
dest=${2:?usage: install.sh SOURCE DEST}
tmp=$(dirname "$dest")/.$(basename "$dest").new.$$
trap 'rm -f "$tmp"' EXIT
cp "$src" "$tmp"
chmod 755 "$tmp"
mv -f "$tmp" "$dest"
trap - EXIT
