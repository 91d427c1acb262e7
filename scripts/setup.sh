#!/usr/bin/env bash
# Create .venv and install rrn into it. torch is installed first and pinned
# (torch==2.13.0, the CPU build on this disk), so that no dependency can make pip
# fetch a multi-GB CUDA build. Re-running is cheap: a stamp file skips the work
# unless pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.rrn-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt constraints.txt ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
"$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[dev]"
touch "$stamp"
echo "rrn installed in $VENV"
