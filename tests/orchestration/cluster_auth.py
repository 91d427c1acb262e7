"""Helpers of tests/orchestration/test_cluster.py: what the one-machine cluster's entry
points answer with no credentials, wrong ones and the right ones."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from orchestration.cluster.local import LocalCluster

#: Ray's dashboard: the Jobs API and the data the dashboard's pages read.
RAY_PATHS = ["/api/jobs/", "/api/v0/nodes?limit=5", "/nodes?view=summary"]
#: MLflow's REST API, as the client and as the UI call it.
MLFLOW_PATHS = ["/api/2.0/mlflow/experiments/search?max_results=1",
                "/ajax-api/2.0/mlflow/experiments/search?max_results=1"]


def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status a GET gets (errors included)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def entry_point_statuses(cluster: LocalCluster) -> dict[str, list[int]]:
    """URL -> [status without credentials, with wrong ones, with the cluster's]."""
    token = cluster.secrets.ray_token
    user = cluster.secrets.ray_env()["MLFLOW_TRACKING_USERNAME"]
    seen = {}
    for path in RAY_PATHS:
        url = cluster.dashboard + path
        seen[url] = [status_of(url), status_of(url, {"Authorization": "Bearer wrong"}),
                     status_of(url, {"Authorization": f"Bearer {token}"})]
    for path in MLFLOW_PATHS:
        url = cluster.mlflow.url + path
        seen[url] = [status_of(url), status_of(url, _basic(user, "wrong")),
                     status_of(url, _basic(user, cluster.secrets.mlflow_password))]
    return seen


def gcs_join_without_token(cluster: LocalCluster, home: Path) -> subprocess.CompletedProcess:
    """A driver that joins the head's GCS (Ray's own protocol, 6379's role) with token
    auth on but no token (none in the environment, an empty $HOME)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")}
    env.update({"RAY_AUTH_MODE": "token", "HOME": str(home)})
    code = (f"import ray; ray.init(address='127.0.0.1:{cluster.head.gcs_port}', log_to_driver=False); "
            "print('JOINED', ray.get(ray.remote(lambda: 1).remote()))")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
