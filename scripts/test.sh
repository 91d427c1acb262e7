#!/usr/bin/env bash
# The project's test command: install what is needed, then run the whole suite.
# Ray and MLflow are kept out of $HOME and told not to phone home.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The deploy security scan (checkov) lives in its own venv: it pins an older botocore.
if [ ! -x .venv-scan/bin/checkov ]; then
  python3 -m venv .venv-scan
  .venv-scan/bin/pip install --quiet "checkov==$(sed -n 's/^CHECKOV_VERSION=//p' deploy/scan.sh)"
fi
export RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
export RRN_TEST_TMP=${RRN_TEST_TMP:-$(mktemp -d /tmp/rrn-test.XXXXXX)}
export RAY_TMPDIR="$RRN_TEST_TMP/ray"
mkdir -p "$RAY_TMPDIR"
exec .venv/bin/python -m pytest "$@"
