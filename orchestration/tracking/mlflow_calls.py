"""The MLflow calls a sweep run and a trial run share: params logged once, tags, reopening a run.

MLflow refuses to log a param twice with another value and keeps a run's status as
the last writer left it; these helpers make a resumed sweep or trial log the same
way as a fresh one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Param, Run, RunTag
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH, MAX_TAG_VAL_LENGTH

from orchestration.display_names import sanitize_metric_key
from orchestration.names import EXPERIMENT_AXES, CLASS_IOU_PREFIX, TAG_RESUMED

log = logging.getLogger(__name__)


def class_metric_keys(class_names: Iterable[str], prefix: str = CLASS_IOU_PREFIX) -> list[str]:
    """Per-class metric keys, unique even when two names sanitise to the same string."""
    keys: list[str] = []
    seen: set[str] = set()
    for index, name in enumerate(class_names):
        key = prefix + sanitize_metric_key(str(name))
        if key in seen:
            key = f"{key}_{index}"
        seen.add(key)
        keys.append(key)
    return keys
def param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:MAX_PARAM_VAL_LENGTH]
def tag_value(value: Any) -> str:
    return str(value)[:MAX_TAG_VAL_LENGTH]
def log_params_once(client: MlflowClient, run: Run, params: Mapping[str, Any]) -> list[str]:
    """Log params in batches, skipping keys the run already has.

    MLflow params are immutable: re-logging a key with another value fails the whole
    batch, which would crash a resumed trial. Returns keys whose stored value differs.
    """
    existing = run.data.params
    new: list[Param] = []
    changed: list[str] = []
    for key, value in params.items():
        text = param_value(value)
        if key in existing:
            if existing[key] != text:
                changed.append(key)
            continue
        new.append(Param(key, text))
    for start in range(0, len(new), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run.info.run_id, params=new[start:start + MAX_PARAMS_TAGS_PER_BATCH])
    if changed:
        log.warning("run %s keeps its logged values for changed params: %s",
                    run.info.run_id, ", ".join(changed))
    return changed
def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    items = [RunTag(k, tag_value(v)) for k, v in tags.items() if v is not None]
    for start in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, tags=items[start:start + MAX_PARAMS_TAGS_PER_BATCH])
def parse_steps(text: str) -> list[int]:
    """`"100,200"` -> [100, 200] (the `rrn.collapsed_at` tag read back)."""
    return [int(p) for p in text.split(",") if p.strip().isdigit()]
def now_ms() -> int:
    return int(time.time() * 1000)
def reopen_run(client: MlflowClient, run: Run) -> None:
    """Mark a resumed run RUNNING again (a crash left it RUNNING or FAILED)."""
    if run.info.status != "RUNNING":
        client.update_run(run.info.run_id, status="RUNNING")
    resumed = int(run.data.tags.get(TAG_RESUMED, "0") or 0) + 1
    client.set_tag(run.info.run_id, TAG_RESUMED, str(resumed))
def sanitize_key_path(key: str) -> str:
    """A metric key with each `/`-separated segment sanitised (keeps `val/mIoU` as is)."""
    return "/".join(sanitize_metric_key(part) for part in key.split("/"))
def grid_searched(grid: Mapping[str, Any], search_keys: Iterable[str]) -> Iterator[str]:
    """Param keys worth a column in the runs view: searched keys, then grid keys that are
    not already shown as tags (method, ratio, seed)."""
    own = set(EXPERIMENT_AXES)
    yield from search_keys
    yield from (k for k in grid if k not in own and k not in search_keys)
def spec_text(spec: Any) -> str:
    """A search distribution as a person writes it: `loguniform [0.003, 0.03]`."""
    if hasattr(spec, "describe"):
        return spec.describe()
    return json.dumps(spec, sort_keys=True)
