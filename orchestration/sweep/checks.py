"""The up-front checks only a tracked run or a sweep has, on top of rrn_core/run_checks.py.

rrn_core checks a run config on this machine (data, device, output folder,
pretrained weights, checkpoint). A sweep or a tracked `rrn train` also needs:
an MLflow store it can open and write, a Ray storage location it can write, an
objective metric its trials actually report, and a cluster that can place its
trials. Each is checked here without writing anything, so a refused sweep
leaves no MLflow run, results folder or split file behind. The resource check
needs the cluster itself (its nodes' totals), so it runs right after Ray
connects and before the first write; `PlacementWatchdog` then bounds how long a
trial may wait for resources that exist but stay busy.
"""

from __future__ import annotations

import difflib
import math
import os
import shutil
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import numpy as np
import ray
from mlflow import MlflowClient

from orchestration.sweep import placement
from orchestration.storage import filesystems
from orchestration.names import CLASS_IOU_PREFIX, RESULT_COLLAPSED, TRAIN_PREFIX, VAL_PREFIX
from orchestration.storage.filesystems import redact_text
from orchestration.tracking.store import MIN_STORE_FREE_BYTES
from rrn_core.data.bundle import resolve_class_names
from rrn_core.data.image_files import DataError
from rrn_core.evaluate import EvalResult
from rrn_core.run_checks import writable_dir_problem, writable_file_problem

if TYPE_CHECKING:  # pragma: no cover - typing only
    from rrn_core.config import RunConfig

#: MLflow store schemes (a `+driver` suffix, e.g. postgresql+psycopg2, is allowed).
TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "file", "http", "https", "databricks")

#: Default seconds a sweep waits with trials pending and none running before it
#: gives up (`rrn sweep --placement-timeout`; also Ray Train's worker-group start timeout).
DEFAULT_PLACEMENT_TIMEOUT_S = 300.0


# --------------------------------------------------------------------------- tracking


def _tracking_scheme(uri: str) -> str:
    """The store kind: "" for a plain path, else the URI scheme without a +driver."""
    scheme = urlparse(uri).scheme.lower().split("+", 1)[0]
    return "" if len(scheme) == 1 and ":\\" in uri else scheme  # C:\\... is a path


def tracking_scheme_problem(uri: str, field: str) -> str | None:
    """An unknown store scheme, said before MLflow is asked: MLflow answers one with a
    traceback (a server it starts dies with one too: `rrn ui --tracking-uri bogus://x`)."""
    scheme = _tracking_scheme(uri)
    if scheme == "" or scheme in TRACKING_SCHEMES:
        return None
    return (f"{field}: {redact_text(uri)}: unknown MLflow store scheme {urlparse(uri).scheme!r} "
            "(use sqlite:///file.db, http(s)://server, file:///folder or postgresql://...)")


def tracking_problems(uri: str, field: str) -> list[str]:
    """Why MLflow could not open or write the store `uri` (empty: it can)."""
    shown = redact_text(uri)
    parsed = urlparse(uri)
    scheme = _tracking_scheme(uri)
    if scheme == "":  # a plain path: a file store
        return [p for p in [writable_dir_problem(uri, field)] if p]
    unknown = tracking_scheme_problem(uri, field)
    if unknown:
        return [unknown]
    if scheme == "sqlite":
        raw = uri.split(":///", 1)[1] if ":///" in uri else ""
        if not raw or raw == ":memory:":
            return [f"{field}: {shown}: a sqlite store needs a file path (sqlite:///path/to/mlflow.db)"]
        db = Path(raw).expanduser()
        return [p for p in (writable_file_problem(db, field),
                            writable_dir_problem(db.parent / "mlartifacts", f"{field} (artifacts)"),
                            store_room_problem(db, field)) if p]
    if scheme == "file":
        return [p for p in [writable_dir_problem(parsed.path, field)] if p]
    if scheme in ("http", "https"):
        problem = _server_problem(uri)
        return [f"{field}: {problem}"] if problem else []
    return []


def store_room_problem(db: Path, field: str) -> str | None:
    """A local store on a (nearly) full disk: said before the run, not as a database
    error halfway through it (MIN_STORE_FREE_BYTES)."""
    folder = next((p for p in [db.parent.absolute(), *db.parent.absolute().parents] if p.is_dir()), None)
    if folder is None:
        return None
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    if free >= MIN_STORE_FREE_BYTES:
        return None
    return (f"{field}: {folder} has {free / 2**20:.1f} MiB free; the MLflow store {db.name} needs at "
            f"least {MIN_STORE_FREE_BYTES >> 20} MiB there (free some space or point the store "
            "elsewhere: --tracking-uri, RRN_TRACKING_URI, RRN_HOME)")


def _server_problem(uri: str) -> str | None:
    """A tracking server must answer before anything starts (each trial would fail alone)."""
    names = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"})
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as err:  # noqa: BLE001 - any failure means runs could not be logged
        refused = _refused_login(err)
        if refused:
            return f"tracking server {redact_text(uri)} refused the request ({refused}): {_login_hint()}"
        return (f"tracking server {redact_text(uri)} does not answer "
                f"({type(err).__name__}: {redact_text(str(err))[:300]})")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return None


def _refused_login(err: Exception) -> str | None:
    """"HTTP 401" / "HTTP 403" when the server refused who we are (MLflow's basic-auth
    app: no or wrong MLFLOW_TRACKING_USERNAME/PASSWORD), else None."""
    code = getattr(err, "get_http_status_code", lambda: None)()
    found = re.search(r"error code (401|403)\b", str(err))
    status = code if code in (401, 403) else int(found.group(1)) if found else None
    return f"HTTP {status}" if status else None


def _login_hint() -> str:
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    given = ("MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD are not set" if not user
             or not os.environ.get("MLFLOW_TRACKING_PASSWORD")
             else f"user {user!r} (MLFLOW_TRACKING_USERNAME) with MLFLOW_TRACKING_PASSWORD was not accepted")
    return (f"it requires a login and {given}; set both in the environment of the sweep and of every "
            "node that runs its trials (a Kubernetes Secret, or exported before `ray start`), never in "
            "the space file or a job's runtime env")


# --------------------------------------------------------------------------- storage


def storage_problems(path: str, field: str) -> list[str]:
    """A local Ray storage folder must be creatable and writable (remote stores are
    read by the sweep's existing-results check, which names them on failure)."""
    if filesystems.is_remote(path):
        return []
    return [p for p in [writable_dir_problem(path, field)] if p]


# --------------------------------------------------------------------------- metric


def metric_problem(metric: str, cfg: RunConfig, field: str = "metric") -> str | None:
    """The objective must be a value every evaluation reports: the val metrics of
    rrn_core's EvalResult (per-class IoU left out: absent where a class does not
    occur), the collapse flag, or a train/ scalar of the last log window."""
    try:
        names = resolve_class_names(cfg.data)
    except DataError:
        names = [f"class_{i}" for i in range(cfg.data.num_classes)]
    every = EvalResult(np.eye(len(names), dtype=np.int64), names).as_metrics(prefix=VAL_PREFIX)
    always = [k for k in every if not k.startswith(CLASS_IOU_PREFIX)] + [RESULT_COLLAPSED]
    if metric in always or metric.startswith(TRAIN_PREFIX):
        return None
    if metric in every:
        return (f"{field}: {metric!r} is missing from evaluations in which that class does not occur; "
                f"optimise one of {', '.join(always[:-1])}")
    hint = difflib.get_close_matches(metric, always, n=1)
    did = f"; did you mean {hint[0]!r}?" if hint else ""
    return (f"{field}: no trial reports {metric!r}{did} (reported: {', '.join(always)}, "
            "the val/IoU/<class> values and train/<scalar>)")


# --------------------------------------------------------------------------- resources


def alive_nodes() -> list[dict[str, float]]:
    """Each alive node's resource totals (Ray must be connected)."""
    return [dict(n.get("Resources") or {}) for n in ray.nodes() if n.get("Alive")]


def describe_cluster(nodes: Sequence[Mapping[str, float]]) -> str:
    """`1 node: 2 CPU, 0 GPU, 3.1 GiB memory` (plus any custom resources)."""
    totals: dict[str, float] = {}
    for node in nodes:
        for key, value in node.items():
            if not key.startswith("node:") and key not in ("object_store_memory",):
                totals[key] = totals.get(key, 0.0) + float(value)
    parts = [f"{totals.pop('CPU', 0.0):g} CPU", f"{totals.pop('GPU', 0.0):g} GPU"]
    memory = totals.pop("memory", 0.0)
    parts.append(f"{memory / 2**30:.1f} GiB memory")
    parts += [f"{v:g} {k}" for k, v in sorted(totals.items()) if not k.startswith("accelerator_type")]
    return f"{len(nodes)} node(s): " + ", ".join(parts)


def _fits(node: Mapping[str, float], bundle: Mapping[str, float]) -> int:
    """How many copies of `bundle` one node can hold."""
    counts = [math.floor(float(node.get(k, 0.0)) / v + 1e-9) for k, v in bundle.items() if v > 0]
    return min(counts) if counts else 1


def resource_problems(nodes: Sequence[Mapping[str, float]], bundle: Mapping[str, float],
                      num_workers: int, execution: str) -> list[str]:
    """Whether one trial can ever be placed on this cluster: `direct` runs its one
    worker inside the trial (one node must hold the bundle), `trainer` spreads
    `num_workers` bundles over the nodes."""
    per_node = [_fits(node, bundle) for node in nodes]
    need = 1 if execution == "direct" else num_workers
    room = max(per_node, default=0) if execution == "direct" else sum(per_node)
    if room >= need:
        return []
    shown = ", ".join(f"{k}: {v:g}" for k, v in bundle.items())
    missing = sorted(k for k, v in bundle.items() if v > 0 and not any(n.get(k) for n in nodes))
    why = (f"the cluster has no {', '.join(missing)} at all" if missing
           else f"it holds at most {room}")
    fix = ("set scaling.use_gpu: false" if "GPU" in missing else
           "lower scaling.num_workers or scaling.resources_per_worker, or use a bigger cluster")
    return [f"scaling: a trial needs {need} worker(s) x {{{shown}}} but {why} "
            f"({describe_cluster(nodes)}); {fix}"]


class PlacementWatchdog:
    """A Tune callback + stopper: stops the sweep when trials have waited for
    resources for `timeout_s` with none running (the cluster's totals fit a trial,
    but something else holds them), instead of letting Tune wait forever.

    The newest watchdog is the process's live one: the hooks (placement.py)
    act on it, also after `Tuner.restore` brought back the hooks a first run saved."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.fired = False
        self._since: float | None = None
        self.callback = placement.WatchdogCallback()
        self.stopper = placement.WatchdogStopper()
        placement.set_live(self)

    def observe(self, statuses: Sequence[str], now: float | None = None) -> None:
        """Record one controller step's trial statuses."""
        now = time.monotonic() if now is None else now
        if "RUNNING" in statuses or "PENDING" not in statuses:
            self._since = None
            return
        if self._since is None:
            self._since = now
        elif now - self._since >= self.timeout_s:
            self.fired = True
