#!/usr/bin/env bash
# The main job: generate a small synthetic VOC-layout data set and run the demo
# sweep on an embedded local Ray, tracked in a local MLflow store.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
exec .venv/bin/rrn demo "$@"
