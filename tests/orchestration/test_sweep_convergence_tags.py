"""At the end of a sweep, each trial's convergence is judged against its siblings, and
that one verdict is what the trial's MLflow tags, the console's table and `rrn report`
all show (a trial used to keep the verdict it gave itself alone while the report's
summary counted another)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from mlflow import MlflowClient

from orchestration.names import BUDGET_ITERS, TAG_CONVERGENCE, TAG_STILL_IMPROVING
from orchestration.report.table import summarize_run
from orchestration.space import load_space
from orchestration.tracking.store import resolve_tracking_uri
from orchestration.tracking.sweep_run import SweepTracker
from orchestration.tracking.trial_run import TrialTracker
from rrn_core.evaluate import EvalResult

ITERS = 8
#: seed -> mIoU at steps 1..8. Seed 0 is flat then gains 0.03 at the end: against its own
#: tiny scatter that is "still improving". Seed 1 swings by 0.2: against that sibling
#: noise, seed 0's gain is within the evaluation noise, so the group's verdict is "converged".
CURVES = {0: [0.50] * 7 + [0.53], 1: [0.40, 0.60] * 4}


def miou_result(miou: float) -> EvalResult:
    """A 2-class result whose mIoU is `miou` (both IoUs a / (a + 2b) with a + 2b = 1000)."""
    a = round(1000 * miou)
    b = (1000 - a) // 2
    return EvalResult(confusion=np.array([[a, b], [b, a]]), class_names=["bg", "fg"], samples=[])


def test_sweep_end_retags_each_trial_with_the_siblings_verdict(tmp_path: Path) -> None:
    uri = resolve_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(
        {"name": "base", "data": {"root": "/nonexistent", "num_classes": 2, "crop_size": 48},
         "runtime": {"progress": False}}))
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({
        "name": "conv", "base_config": "base.yaml", "fixed": {"optim.iters": ITERS},
        "grid": {"data.label_ratio": [0.5], "method.name": ["supervised"], "runtime.seed": [0, 1]},
        "metric": "val/mIoU", "mode": "max"}))
    space = load_space(tmp_path / "space.yaml")
    sweep = SweepTracker(uri, "conv-exp", "conv")
    parent_id = sweep.start(space, git_commit=None, dataset_hash=None, split_hashes={}, resume=False)
    client = MlflowClient(tracking_uri=uri)
    own: dict[str, str] = {}
    for point in space.grid_points():
        seed = point["runtime.seed"]
        trial = TrialTracker(uri, "conv-exp", parent_id, f"t{seed}", f"seed {seed}", space.trial_config(point, {}))
        trial.on_start({BUDGET_ITERS: ITERS})
        for step, miou in enumerate(CURVES[seed], start=1):
            trial.on_evaluation(step, miou_result(miou), None)
        trial.close()
        own[f"t{seed}"] = client.get_run(trial.run_id).data.tags[TAG_STILL_IMPROVING]
    assert own == {"t0": "true", "t1": "false"}, "alone, seed 0 calls itself still improving"

    sweep.log_summary()
    sweep.finish()

    assert sweep.judged == {"t0": False, "t1": False}
    df = summarize_run(client, client.get_run(parent_id))
    for _, row in df.iterrows():
        tags = client.get_run(row["run_id"]).data.tags
        assert tags[TAG_STILL_IMPROVING] == "false" and not row["still_improving"]
        assert tags[TAG_CONVERGENCE] == row["convergence"]
        assert "sibling noise" in tags[TAG_CONVERGENCE]
