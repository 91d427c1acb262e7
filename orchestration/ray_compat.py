"""Every use of Ray's and Optuna's private internals, in one place, each with its why.

The sweep relies on a few things Ray 2.60 / Optuna 5 keep private, because their
public API has no equivalent (checked against Ray 2.60's docs):

* `ResultGrid` exposes results but not each trial's status or retry count (a result
  of an unfinished or early-stopped trial looks like a finished one): the `Trial`
  objects behind `ResultGrid._experiment_analysis` carry both.
* Tune's experiment folder holds `experiment_state-*.json` (each trial's status and
  last result) and the searcher's `searcher-state-*.pkl`; reading them without Ray
  tells whether an earlier attempt finished any trial, and restores our searcher's
  studies for the report. Their names and layout are Tune's.
* `OptunaSearch` keeps its study in `_ot_study` (no accessor).
* `ASHAScheduler` keeps its trials in `_trial_info` and counts stops in
  `_num_stopped`: our per-grid-point ASHA must not forward a trial an inner ASHA
  never saw (it raises KeyError) and reports how many it stopped.
* Ray Tune copies AWS_* variables from the driver into every trial actor's
  runtime_env (`class_cache.ENV_VARS_TO_PROPAGATE`), and Ray logs runtime envs in
  clear: the set is narrowed while a sweep runs.
* Train V2's wait for a worker group is bounded by an env var named only in
  `ray.train.v2._internal.constants`.
* `RAY_AIR_NEW_OUTPUT=0` selects the console engine that honours `verbose=0`.

tests/orchestration/test_ray_compat.py checks each of these against the installed
versions, so an upgrade that removes one fails there, loudly, by name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.fs
from ray.train.v2._internal.constants import WORKER_GROUP_START_TIMEOUT_S_ENV_VAR
from ray.tune.execution import class_cache

if TYPE_CHECKING:  # pragma: no cover - typing only
    import optuna
    import pandas as pd
    import pyarrow.fs
    from ray.tune import ResultGrid
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

EXPERIMENT_STATE_PREFIX = "experiment_state"
SEARCHER_STATE_PREFIX = "searcher-state-"


def worker_group_start_timeout_env() -> str:
    """The env var bounding Ray Train V2's wait for a trial's worker group (seconds)."""
    return WORKER_GROUP_START_TIMEOUT_S_ENV_VAR


def use_legacy_console_output() -> None:
    """Tune's legacy output engine, the one that honours `verbose=0` (our progress
    lines replace Tune's tables)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def result_trials(results: ResultGrid) -> tuple[list[Trial], dict[str, pd.DataFrame]]:
    """The Trial objects behind a ResultGrid (status, retries, config, last result) and
    each trial's reported results as a frame, by trial id."""
    analysis = results._experiment_analysis
    return list(analysis.trials), dict(analysis.trial_dataframes)


def trial_states(fs: pyarrow.fs.FileSystem, folder: str) -> list[tuple[dict[str, Any], dict[str, Any]]] | None:
    """(trial state, run metadata) per trial from the newest experiment state in
    `folder`; None when there is none or it cannot be read."""
    try:
        infos = fs.get_file_info(pyarrow.fs.FileSelector(folder))
        states = sorted(i.path for i in infos if Path(i.path).name.startswith(EXPERIMENT_STATE_PREFIX)
                        and i.path.endswith(".json"))
        if not states:
            return None
        with fs.open_input_stream(states[-1]) as src:
            state = json.loads(src.read().decode())
        return [(json.loads(entry[0]), json.loads(entry[1])) for entry in state.get("trial_data", [])]
    except (OSError, ValueError, TypeError, IndexError, KeyError):
        return None


def newest_searcher_state(fs: pyarrow.fs.FileSystem, folder: str) -> bytes | None:
    """The searcher's pickled state as Tune last saved it in `folder` (None: absent).

    Newest by the session timestamp in the name: a resumed Tune re-uploads the whole
    experiment folder, so every session's file gets the same fresh mtime."""
    try:
        infos = fs.get_file_info(pyarrow.fs.FileSelector(folder))
    except (FileNotFoundError, OSError):
        return None
    states = sorted((i.path for i in infos if Path(i.path).name.startswith(SEARCHER_STATE_PREFIX)),
                    key=lambda p: Path(p).name)
    if not states:
        return None
    with fs.open_input_stream(states[-1]) as src:
        return src.read()


def optuna_study(search: OptunaSearch) -> optuna.Study:
    return search._ot_study


def asha_tracks(scheduler: ASHAScheduler, trial_id: str) -> bool:
    """Whether this ASHA has seen the trial (else completing or removing it raises)."""
    return trial_id in scheduler._trial_info


def asha_stopped(scheduler: ASHAScheduler) -> int:
    return int(scheduler._num_stopped)


@contextmanager
def secrets_kept_out_of_trial_envs(is_secret: Any) -> Iterator[None]:
    """Keep secret AWS_* variables out of the runtime_env Tune gives each trial actor.

    Tune reads the set when it first builds a trial actor, so it is narrowed for the
    duration of `Tuner.fit` and restored afterwards. Trials do not need the copy: the
    embedded local Ray's workers inherit the driver's environment, and a cluster's
    nodes carry their own credentials (deploy/).
    """
    names = {n for n in class_cache.ENV_VARS_TO_PROPAGATE if is_secret(n) or n.startswith("AWS_")}
    class_cache.ENV_VARS_TO_PROPAGATE.difference_update(names)
    try:
        yield
    finally:
        class_cache.ENV_VARS_TO_PROPAGATE.update(names)
