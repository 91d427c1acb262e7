#!/usr/bin/env bash
# A multi-node cluster on this machine, to try `rrn submit` against the production
# shape by hand: a Ray head with no CPUs for trials, two worker nodes (each with a
# private /tmp when run as root), MLflow on PostgreSQL with artifacts in S3, and an
# S3 endpoint (moto). Nothing answers without credentials: Ray token auth is on and
# MLflow is its basic-auth app. Prints the addresses, the `rrn submit` line and the
# `export NAME=value` lines (S3 keys, RAY_AUTH_TOKEN, MLFLOW_TRACKING_USERNAME/PASSWORD;
# fresh random values, printed because the cluster is a throwaway); Ctrl-C, SIGTERM or a
# closed terminal (SIGHUP) tears everything down. Needs what scripts/setup.sh installs (postgresql, psycopg2).
# Usage: scripts/local-cluster.sh [ROOT]   (default: a fresh folder under /var/tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
# exec: the signals reach Python itself, whose handlers (orchestration/cluster/local.py,
# `serve`) stop every node and server, also during start-up; no shell is left to trap them.
exec "$PY" -m orchestration.cluster.local up "$@"
