"""Reading a sweep back: what each trial did, from Tune's results and saved state.

Used after a run (the outcome `rrn sweep` prints and logs) and before one (whether an
earlier attempt of the same name finished any trial, the searcher a resume must
match). Ray's private structures are reached through orchestration/ray_compat.py.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.fs

from orchestration import ray_compat
from orchestration.names import FULLY_TRAINED, GRID_KEY, PARAMS_KEY, POINT_KEY, STEP_KEY
from orchestration.sweep.searcher import GridSearcher
from orchestration.sweep.state_signing import UntrustedState
from orchestration.storage.filesystems import ray_storage

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ray.tune import ResultGrid

    from orchestration.sweep.searcher import GridSearcher


@dataclass(frozen=True)
class ExperimentPlace:
    """Where a sweep's Tune experiment lives, and what its objective is."""

    storage_path: str
    endpoint_url: str | None
    name: str
    metric: str
    mode: str

    @property
    def experiment_path(self) -> str:
        return f"{self.storage_path.rstrip('/')}/{self.name}"

    def filesystem(self) -> tuple[Any, str]:
        """(pyarrow filesystem, the experiment folder on it)."""
        path, fs = ray_storage(self.storage_path, self.endpoint_url)
        return fs or pyarrow.fs.LocalFileSystem(), f"{path}/{self.name}"


@dataclass
class TrialOutcome:
    trial_id: str
    point: int
    grid: dict[str, Any]
    params: dict[str, Any]
    status: str                          # TERMINATED | ERROR | ...
    fully_trained: bool
    metric: float | None
    steps: list[int]                     # the loop's step at each reported evaluation
    last: dict[str, Any] = field(default_factory=dict)   # the last reported result
    retries: int = 0                     # restarts after failures (Tune's count, direct mode)
    error: str | None = None


@dataclass
class SweepOutcome:
    name: str
    experiment_path: str
    parent_run_id: str | None
    trials: list[TrialOutcome]
    studies: list[list[tuple[str, float | None, dict[str, Any]]]]  # per point: (state, value, params)
    split_hashes: dict[str, str]
    status: str                          # FINISHED | FAILED | KILLED
    evidence: list[str] = field(default_factory=list)  # the report's verdict lines (report/verdicts.py)
    #: trial id -> still improving at the end, judged against its siblings (the report's verdict)
    still_improving: dict[str, bool | None] = field(default_factory=dict)

    @property
    def failed(self) -> list[TrialOutcome]:
        return [t for t in self.trials if t.status == "ERROR"]


def read_outcome(results: ResultGrid, where: ExperimentPlace, parent: str | None,
                 split_hashes: dict[str, str]) -> SweepOutcome:
    """Every trial's status, objective, steps and retries, and each study's trials."""
    metric = where.metric
    # ResultGrid's public Results drop the trial status and retry count; the Trial
    # objects behind them keep both.
    trial_objects, frames = ray_compat.result_trials(results)
    errors = {Path(r.path).name: r.error for r in results if r.error is not None}
    trials: list[TrialOutcome] = []
    for trial in trial_objects:
        config = trial.config or {}
        metrics = dict(trial.last_result or {})
        frame = frames.get(trial.trial_id)
        steps = ([int(s) for s in frame[STEP_KEY].dropna()]
                 if frame is not None and STEP_KEY in frame else [])
        value = metrics.get(metric)
        error = errors.get(Path(trial.path).name) if trial.path else None
        trials.append(TrialOutcome(
            trial_id=trial.trial_id, point=int(config.get(POINT_KEY, 0)),
            grid=dict(config.get(GRID_KEY) or {}), params=dict(config.get(PARAMS_KEY) or {}),
            status=str(trial.status), fully_trained=bool(metrics.get(FULLY_TRAINED, 0.0)),
            metric=None if value is None else float(value), steps=steps, last=metrics,
            retries=int(getattr(trial, "num_failures", 0) or 0),
            error=None if error is None else str(error).strip().splitlines()[-1][:300]))
    searcher = load_searcher(where)
    studies = [] if searcher is None else [
        [(t.state.name, t.value, dict(t.params)) for t in study.trials] if study is not None else []
        for study in searcher.studies()]
    return SweepOutcome(where.name, where.experiment_path, parent, trials, studies,
                        split_hashes, "FINISHED")


def finished_trials(where: ExperimentPlace) -> int:
    """How many trials of the saved experiment finished (TERMINATED after reporting
    results), read from its experiment state without Ray; -1 when the state cannot
    be read (then the attempt is kept)."""
    fs, folder = where.filesystem()
    states = ray_compat.trial_states(fs, folder)
    if states is None:
        return -1
    # a trial Tune stopped before it was ever placed is TERMINATED too, but it never
    # reported a result
    return sum(trial.get("status") == "TERMINATED" and bool(meta.get("last_result"))
               for trial, meta in states)


def load_searcher(where: ExperimentPlace) -> GridSearcher | None:
    """The searcher as Tune last saved it in the experiment folder (None if absent)."""
    fs, folder = where.filesystem()
    state = ray_compat.newest_searcher_state(fs, folder)
    if state is None:
        return None
    searcher = GridSearcher([{}], {}, 1, where.metric, where.mode)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "searcher.pkl"
        local.write_bytes(state)
        try:
            searcher.restore(str(local))
        except UntrustedState as err:   # named after the store's file, not the local copy
            raise UntrustedState(str(err).replace(str(local), f"{folder}/searcher-state-*.pkl")) from None
    return searcher
