"""Helpers of tests/orchestration/test_cluster.py: the sweep's space, reading its
state back from MLflow and S3, and the timeline of injected faults.

Kept apart from the test module so that bench/cluster_load.py can run the same
sweep on the same cluster without pytest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestration.names import ROLE_SWEEP, TAG_PARENT, TAG_ROLE, TAG_SWEEP

SWEEP = "cluster-sweep"
EXPERIMENT = "rrn-cluster"
ITERS = 8
EVAL_EVERY = 2


def base_config(data_root: Path) -> dict[str, Any]:
    """Tiny trials (~1-2 s of training each): a 32 px synthetic set, a slim net."""
    return {
        "name": "tiny",
        "data": {"root": str(data_root), "num_classes": 4, "label_ratio": 0.25, "crop_size": 32,
                 "batch_size": 2, "unlabeled_batch_size": 2, "num_workers": 0},
        "model": {"backbone": "resnet18d", "base_width": 8,
                  "aspp_channels": 16, "low_level_channels": 8, "head_channels": 16},
        "method": {"name": "supervised"},
        "optim": {"iters": ITERS},
        "eval": {"every": EVAL_EVERY, "overlays": 0},
        "runtime": {"device": "cpu", "progress": False, "log_every": 1},
    }


def write_space(folder: Path, data_root: Path, *, tracking_uri: str, storage_path: str,
                endpoint_url: str, seeds: int = 12, name: str = SWEEP,
                max_concurrent: int = 2) -> Path:
    """A grid of `seeds` x 2 label ratios (deterministic: no sampled parameters)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.yaml").write_text(yaml.safe_dump(base_config(data_root)))
    space = {
        "name": name, "base_config": "base.yaml",
        "grid": {"runtime.seed": list(range(seeds)), "data.label_ratio": [0.25, 0.5]},
        "num_samples": 1, "metric": "val/mIoU", "mode": "max",
        "max_concurrent_trials": max_concurrent,
        "tracking": {"uri": tracking_uri, "experiment": EXPERIMENT},
        "storage": {"path": storage_path, "endpoint_url": endpoint_url},
        "failure": {"max_failures": 4},
    }
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def eventually(check: Callable[[], Any], timeout: float, what: str, poll: float = 1.0) -> Any:
    """Poll `check` until it returns something truthy; bounded in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:  # noqa: BLE001 - a service mid-restart
            value = None
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


# --------------------------------------------------------------------------- reading back


def sweep_runs(client: Any, name: str = SWEEP) -> tuple[Any, list[Any]]:
    """(parent run or None, child runs) of the sweep on the tracking server."""
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return None, []
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get(TAG_ROLE) == ROLE_SWEEP
               and r.data.tags.get(TAG_SWEEP) == name]
    if not parents:
        return None, []
    parent = parents[0]
    return parent, [r for r in runs if r.data.tags.get(TAG_PARENT) == parent.info.run_id]


def experiment_state(s3: Any, bucket: str, name: str = SWEEP) -> dict[str, dict[str, Any]]:
    """trial id -> {status, num_failures, last_result} from Tune's newest
    experiment-state file in S3 (what a resume restores from)."""
    prefix = f"results/{name}/"
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    keys = sorted(o["Key"] for o in listing.get("Contents", [])
                  if Path(o["Key"]).name.startswith("experiment_state") and o["Key"].endswith(".json"))
    if not keys:
        return {}
    state = json.loads(s3.get_object(Bucket=bucket, Key=keys[-1])["Body"].read())
    out = {}
    for entry in state["trial_data"]:
        trial, meta = json.loads(entry[0]), json.loads(entry[1])
        out[trial["trial_id"]] = {"status": trial["status"], "last_result": meta.get("last_result") or {}}
    return out


def all_objects(s3: Any, bucket: str) -> list[str]:
    keys, token = [], None
    while True:
        kwargs = {"Bucket": bucket, **({"ContinuationToken": token} if token else {})}
        page = s3.list_objects_v2(**kwargs)
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return keys
        token = page["NextContinuationToken"]


@dataclass
class Timeline:
    """What the fault driver did and saw, for the tests to check against."""

    submission_ids: list[str] = field(default_factory=list)
    killed_node: str | None = None             # Ray node id of the SIGKILLed worker
    killed_at: float = 0.0                      # epoch seconds of the SIGKILL
    on_killed_node: set[str] = field(default_factory=set)   # trial ids seen running there then
    s3_down: tuple[float, float] | None = None      # epoch seconds
    mlflow_down: tuple[float, float] | None = None
    running_during_s3: set[str] = field(default_factory=set)
    running_during_mlflow: set[str] = field(default_factory=set)
    finished_before_stop: set[str] = field(default_factory=set)
    unfinished_at_stop: set[str] = field(default_factory=set)
    events: list[tuple[float, str]] = field(default_factory=list)
    node_logs: dict[str, str] = field(default_factory=dict)   # worker-node log files, by path
    driver_log: str = ""
    driver_rss_mb: float = 0.0
    wall_s: float = 0.0

    def note(self, text: str) -> None:
        self.events.append((time.time(), text))
        print(f"[cluster test {time.strftime('%H:%M:%S')}] {text}", flush=True)


def driver_rss_mb(space_name: str) -> float:
    """Resident memory of the `rrn sweep` driver process(es) running this space (MB)."""
    total = 0.0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            if b"rrn" not in cmd or b"sweep" not in cmd:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total
