#!/usr/bin/env bash
# Download, on a networked machine, the wheels scripts/gpu-check.sh installs on a
# lent GPU machine (no network there): the names in scripts/gpu-wheels.txt at the
# versions pinned in constraints.txt, for CPython 3.12 on manylinux x86_64, into
# .whl/ (ignored by git; it travels with the working tree, under 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=${1:-.whl}
names=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' scripts/gpu-wheels.txt | awk '{print $1}')
norm() { echo "$1" | tr 'A-Z_.' 'a-z--'; }
reqs=()
for name in $names; do
  pin=$(grep -i -E "^$(norm "$name" | sed 's/-/[-_.]/g')==" constraints.txt | head -1 || true)
  [ -n "$pin" ] || { echo "error: scripts/gpu-wheels.txt: $name has no pin in constraints.txt" >&2; exit 2; }
  reqs+=("$pin")
done
mkdir -p "$DEST"
rm -f "$DEST"/*.whl
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$DEST" "${reqs[@]}"
ls -l "$DEST"/*.whl
bytes=$(cat "$DEST"/*.whl | wc -c)
echo "$(ls "$DEST"/*.whl | wc -l) wheels, $((bytes / 1024)) KiB in $DEST"
[ "$bytes" -lt $((64 * 1024 * 1024)) ] || { echo "error: $DEST is over 64 MiB" >&2; exit 1; }
