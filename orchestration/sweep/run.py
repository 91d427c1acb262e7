"""`rrn sweep`: a search space in, a finished (or resumable) sweep out.

A sweep goes through three stages, one module each:

1. orchestration/sweep/prepare.py: every check that can fail (space, data, splits,
   warm-up, metric, devices, tracking, storage, an earlier attempt), nothing written;
2. orchestration/sweep/execute.py: splits written once, the MLflow parent run opened, Ray
   Tune run over the grid x Optuna search, one orchestration/sweep/trial.py `run_trial` per
   trial, every run closed;
3. orchestration/sweep/results.py: what each trial did, read back from Tune.
"""

from __future__ import annotations

from pathlib import Path

from orchestration.sweep.execute import execute
from orchestration.sweep.prepare import Say, SweepOptions, prepare_sweep
from orchestration.sweep.results import SweepOutcome


def run_sweep(space_path: str | Path, options: SweepOptions | None = None,
              say: Say = print) -> SweepOutcome:
    """Prepare (all checks, nothing written), then execute."""
    options = options or SweepOptions()
    return execute(prepare_sweep(space_path, options, say), options, say)
