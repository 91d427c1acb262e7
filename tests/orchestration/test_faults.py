"""Faults, for real: processes are SIGKILLed, then the sweep must recover.

1. A trial's worker process dies mid-training (worker_faults.py, installed as the
   test job's Ray worker setup hook, SIGKILLs it once, after a checkpoint was reported): the trial restarts from that checkpoint and
   finishes; its reported steps continue (2, 4, 6, 8), they do not start over.
2. The `rrn sweep` driver is SIGKILLed after some trials finished: `rrn sweep
   --resume` finishes the others without re-running the finished ones, in the
   same MLflow parent run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from test_sweep import LR, make_synth, mlflow_runs, write_space
from worker_faults import ENV_KILL_AT_STEP, ENV_KILL_MARKER, kill_once_at_step

from orchestration.sweep.searcher import GridSearcher
from orchestration.sweep.run import run_sweep
from orchestration.sweep.prepare import SweepOptions

pytestmark = pytest.mark.slow

KILL_STEP = 5
RRN = [sys.executable, "-c", "from rrn.cli import main; main()"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synth(tmp_path_factory.mktemp("data") / "synth")


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fault") / "killed-once"


@pytest.fixture(scope="module")
def ray_cluster(marker: Path) -> Iterator[str]:
    """A local Ray whose workers (of this test process's job only) run the fault
    injection of worker_faults.py; yields its address for separate driver processes."""
    import ray

    patch = pytest.MonkeyPatch()
    for name in ("RRN_TRACKING_URI", "RRN_STORAGE_PATH", "RRN_STORAGE_ENDPOINT_URL", "RAY_ADDRESS"):
        patch.delenv(name, raising=False)
    # The workers import the hook's module by name: this folder on their path (they
    # inherit the environment of the Ray processes `ray.init` starts).
    here = str(Path(__file__).resolve().parent)
    patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    hook = f"{kill_once_at_step.__module__}.{kill_once_at_step.__name__}"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             runtime_env={"worker_process_setup_hook": hook,
                          "env_vars": {ENV_KILL_AT_STEP: str(KILL_STEP), ENV_KILL_MARKER: str(marker)}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    patch.undo()


def _eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _tune_states(experiment: Path) -> dict[str, str]:
    """trial id -> status from Tune's newest experiment-state snapshot."""
    # Newest session by the timestamp in the name (a resume re-uploads old files too).
    files = sorted(experiment.glob("experiment_state-*.json"))
    if not files:
        return {}
    try:
        data = json.loads(files[-1].read_text())
    except (OSError, ValueError):  # being replaced right now
        return {}
    trials = [json.loads(entry[0]) for entry in data["trial_data"]]
    return {t["trial_id"]: t["status"] for t in trials}


def test_killed_worker_resumes_from_its_checkpoint(tmp_path: Path, synth: Path, marker: Path,
                                                   ray_cluster: str) -> None:
    path = write_space(tmp_path, "workerkill", synth, grid={"method.name": ["supervised"]},
                       fixed={"optim.iters": 8, "runtime.log_every": 1})
    outcome = run_sweep(path, SweepOptions(), say=lambda m: None)

    assert marker.is_file(), "the fault was never injected"
    (trial,) = outcome.trials
    assert outcome.status == "FINISHED", trial.error
    assert trial.retries == 1, "Tune should have restarted the trial exactly once"
    assert trial.fully_trained
    # Killed at step 5, after the checkpoints of steps 2 and 4: a restart from scratch
    # would report step 2 again; resuming continues (normally at 6).
    assert trial.steps.count(2) == 1, f"the trial restarted instead of resuming: {trial.steps}"
    assert trial.steps[-1] == 8 and trial.steps == sorted(trial.steps), trial.steps
    _, (child,) = mlflow_runs(tmp_path, "workerkill")
    assert child.info.status == "FINISHED"
    assert child.data.tags.get("rrn.resumed") == "1", "the restarted trial must reuse its child run"
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/mIoU")]
    assert steps == [2, 4, 6, 8]


def test_killed_driver_then_resume_finishes_only_the_rest(tmp_path: Path, synth: Path,
                                                         ray_cluster: str) -> None:
    path = write_space(tmp_path, "driverkill", synth, grid={"data.label_ratio": [0.25, 0.5]},
                       search={"optim.lr": LR}, num_samples=2, max_concurrent_trials=1,
                       fixed={"optim.iters": 10})
    experiment = tmp_path / "results" / "driverkill"
    env = {**os.environ, "RRN_HOME": str(tmp_path / "home")}
    command = [*RRN, "sweep", str(path), "--address", ray_cluster]
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            before = _eventually(
                lambda: {t for t, s in _tune_states(experiment).items() if s == "TERMINATED"},
                timeout=150, what="a finished trial in Tune's experiment state")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    total_before = len(_tune_states(experiment))
    assert len(before) < 4, "the driver must be killed mid-sweep; every trial had finished already"
    parent, _ = mlflow_runs(tmp_path, "driverkill")
    assert parent.info.status == "RUNNING", "a SIGKILLed driver cannot have closed its run"

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=env,
                             timeout=240)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    states = _tune_states(experiment)
    assert len(states) == 4 and set(states.values()) == {"TERMINATED"}, states
    assert before <= set(states), "finished trials must be kept, not replaced"
    assert total_before <= 4
    parent_after, children = mlflow_runs(tmp_path, "driverkill")
    assert parent_after.info.run_id == parent.info.run_id, "resume must reuse the parent run"
    assert parent_after.info.status == "FINISHED"
    assert parent_after.data.tags.get("rrn.resumed") == "1"
    assert len(children) == 4, [c.data.tags.get("rrn.trial_id") for c in children]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for child in children:
        assert child.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/mIoU")]
        assert steps == [2, 4, 6, 8, 10]
        if child.data.tags["rrn.trial_id"] in before:
            assert "rrn.resumed" not in child.data.tags, "a finished trial was run again"
    # The Optuna studies survived the kill: two complete trials per grid point, no extras.
    searcher = GridSearcher([{}], {}, 1, "val/mIoU", "max")
    searcher.restore(str(sorted(experiment.glob("searcher-state-*.pkl"))[-1]))
    for study in searcher.studies():
        assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
