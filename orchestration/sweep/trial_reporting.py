"""What a trial's training loop reports, and where: Ray (metrics + checkpoint), MLflow.

`ReportHooks` is the loop's `TrainHooks` inside a Tune trial or a Ray Train worker;
the trial function (orchestration/sweep/trial.py) builds it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch.distributed as dist

from orchestration.names import (BUDGET_ITERS, FULLY_TRAINED, RESULT_COLLAPSED, RESULT_STILL_IMPROVING, STEP_KEY, TAG_CHECKPOINT, TOTAL_STEPS_KEY,
                                 VAL_PREFIX, WORLD_SIZE_KEY)
from rrn_core.convergence import assess
from rrn_core.loop import TrainHooks


class ReportHooks(TrainHooks):
    """Forward the loop's evaluations to Ray (metrics + checkpoint) and to MLflow.

    One Ray report per evaluation, on every rank (Ray Train needs the same number of
    reports from each), checkpoint attached on rank 0 only. Tune's
    `training_iteration` therefore counts evaluations, which is what ASHA's
    grace_period/max_t are expressed in.
    """

    def __init__(self, report: Callable[..., None], checkpoint_from_dir: Callable[[str], Any],
                 *, is_main: bool, total_steps: int, tracker: Any | None = None,
                 latest_checkpoint: Callable[[], Any] | None = None,
                 storage_scheme: str = "") -> None:
        self._report = report
        self._checkpoint_from_dir = checkpoint_from_dir
        self._is_main = is_main
        self._total = total_steps
        self._tracker = tracker
        self._latest = latest_checkpoint
        self._scheme = storage_scheme
        self._train: dict[str, float] = {}
        self.final_reported = False   # the run's last evaluation reached Ray
        self._evals: dict[int, float] = {}

    def on_start(self, facts: dict[str, Any]) -> None:
        """The loop resolved the budget (an epoch budget is known only now)."""
        self._total = int(facts[BUDGET_ITERS])
        if self._tracker is not None:
            self._tracker.on_start(facts)

    def on_log(self, step: int, scalars: dict[str, float]) -> None:
        self._train = dict(scalars)
        if self._tracker is not None:
            self._tracker.on_log(step, scalars)

    def on_evaluation(self, step: int, result: Any, checkpoint_dir: str | None) -> None:
        if self._tracker is not None:
            self._tracker.on_evaluation(step, result, None)
        metrics: dict[str, float] = {}
        for key, value in result.as_metrics(prefix=VAL_PREFIX).items():
            value = float(value)
            if value == value:  # per-class IoU is nan for absent classes: nothing to report
                metrics[key] = value
        metrics.update(self._train)
        # rrn_core's own verdict, so the console can flag a collapse without re-deriving it
        metrics[RESULT_COLLAPSED] = float(result.collapsed)
        metrics[STEP_KEY] = float(step)
        metrics[TOTAL_STEPS_KEY] = float(self._total)
        metrics[FULLY_TRAINED] = float(step >= self._total)
        self._evals[step] = result.miou
        if step >= self._total:
            evals = getattr(self._tracker, "_evals", None) or self._evals  # the tracker's include a resume's past
            verdict = assess(sorted(evals.items()), self._total).still_improving
            metrics[RESULT_STILL_IMPROVING] = math.nan if verdict is None else float(verdict)
        metrics[WORLD_SIZE_KEY] = float(_world_size())
        checkpoint = None
        if self._is_main and checkpoint_dir is not None:
            checkpoint = self._checkpoint_from_dir(checkpoint_dir)
        # Set before reporting: Tune may stop the trial inside this very call (ASHA at
        # max_t), and the result has reached Tune by then.
        self.final_reported = step >= self._total
        self._report(metrics, checkpoint=checkpoint)
        if checkpoint is not None and self._tracker is not None and self._latest is not None:
            self._tag_checkpoint()

    def _tag_checkpoint(self) -> None:
        """Point the child run at the checkpoint Ray persisted (the loop's own folder is
        a temporary one on the worker)."""
        persisted = self._latest() if self._latest is not None else None
        if persisted is not None:
            self._tracker.client.set_tag(self._tracker.run_id, TAG_CHECKPOINT,
                                         f"{self._scheme}{persisted.path}")


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

