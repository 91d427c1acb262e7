#!/usr/bin/env bash
# Security scan of deploy/ (offline once checkov is installed):
#  1. checkov over every rendered overlay, the example manifests and the Dockerfile,
#     with the exceptions listed (and justified) in deploy/checkov.yaml;
#  2. deploy/policy.py, which also covers the KubeRay pods checkov does not look into.
# checkov lives in its own virtualenv (default .venv-scan): it pins an older botocore
# than the project, so installing it into .venv would break s3fs/boto3 there.
# Usage: deploy/scan.sh            (creates .venv-scan on first use, ~30 s)
#        SCAN_VENV=/path deploy/scan.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SCAN_VENV=${SCAN_VENV:-.venv-scan}
CHECKOV_VERSION=3.3.30
PY=${PYTHON:-.venv/bin/python}
if [ ! -x "$SCAN_VENV/bin/checkov" ]; then
  echo "installing checkov==$CHECKOV_VERSION into $SCAN_VENV" >&2
  python3 -m venv "$SCAN_VENV"
  "$SCAN_VENV/bin/pip" install --quiet "checkov==$CHECKOV_VERSION"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for overlay in deploy/k8s/overlays/*/; do
  "$PY" deploy/render.py "$overlay" > "$out/overlay-$(basename "$overlay").yaml"
done
cp deploy/k8s/examples/data-synth.yaml deploy/k8s/examples/rayjob-synth.yaml "$out/"
echo "== checkov: rendered manifests" >&2
"$SCAN_VENV/bin/checkov" --config-file deploy/checkov.yaml --framework kubernetes -d "$out"
echo "== checkov: deploy/Dockerfile" >&2
"$SCAN_VENV/bin/checkov" --config-file deploy/checkov.yaml --framework dockerfile -f deploy/Dockerfile
echo "== deploy/policy.py (KubeRay pods included)" >&2
"$PY" deploy/policy.py deploy/k8s/overlays/*/ deploy/k8s/examples/data-synth.yaml deploy/k8s/examples/rayjob-synth.yaml
