#!/usr/bin/env bash
# Create .venv and install rrn into it. torch and torchvision are installed first and
# pinned (torch==2.14.1 + torchvision==0.29.1: the CUDA 13.0 build, which also runs on
# the CPU, so a CUDA machine gets a GPU-capable torch from this same install), so that
# no dependency (timm) can make pip pick another torch. Re-running is cheap: a stamp file skips the work
# unless pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
# The UI test drives a real headless browser (Debian's chromium-headless-shell). Install
# it when missing and apt-get can (root, or password-less sudo); never fatal: without
# it that one test skips and says why. RRN_NO_BROWSER=1 skips this step.
if [ -z "${RRN_NO_BROWSER:-}" ] && ! command -v chromium-headless-shell >/dev/null 2>&1 \
    && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  if [ "$SUDO" != none ]; then
    echo "installing chromium-headless-shell (for the UI test) ..."
    { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium-headless-shell >/dev/null 2>&1 \
      || { $SUDO apt-get update -qq >/dev/null 2>&1 \
           && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium-headless-shell >/dev/null 2>&1; }; } \
      || echo "note: could not install chromium-headless-shell; the browser test will skip"
  fi
fi
# The multi-node cluster test runs its own PostgreSQL (Debian's server binaries, in a
# temp data dir) behind the MLflow server. Install it when missing and apt-get can;
# never fatal: without it that test module skips and says why. RRN_NO_POSTGRES=1 skips this.
if [ -z "${RRN_NO_POSTGRES:-}" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
    && ! command -v initdb >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  if [ "$SUDO" != none ]; then
    echo "installing postgresql (for the multi-node cluster test) ..."
    { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >/dev/null 2>&1 \
      || { $SUDO apt-get update -qq >/dev/null 2>&1 \
           && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >/dev/null 2>&1; }; } \
      || echo "note: could not install postgresql; the cluster test will skip"
  fi
fi
stamp="$VENV/.rrn-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt constraints.txt ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
"$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[dev]"
touch "$stamp"
echo "rrn installed in $VENV"
