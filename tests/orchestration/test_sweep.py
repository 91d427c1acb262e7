"""`rrn sweep` end to end on a real local Ray, real Optuna studies and a real MLflow store.

One tiny sweep (2 label ratios x 2 methods, 1 searched parameter, 4 iterations per
trial) backs several tests; a 2-worker trial goes through TorchTrainer with real
DDP on gloo; bad inputs must exit 2 before anything is written. The searcher and
the per-point scheduler are also checked directly, where their decisions can be
forced deterministically.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from rrn import sweep_commands
from orchestration.names import (FULLY_TRAINED, GRID_KEY, PARAMS_KEY, POINT_KEY, TAG_PARENT, TAG_ROLE,
                                 TAG_SPLIT_HASH_PREFIX, TAG_SWEEP)
from orchestration.sweep.searcher import GridSearcher, PerPointScheduler
from orchestration.sweep.run import run_sweep
from orchestration.sweep.prepare import SweepError, SweepOptions

pytestmark = pytest.mark.slow

LR = {"type": "loguniform", "low": 1.0e-3, "high": 1.0e-2}
ENV_OVERRIDES = ("RRN_TRACKING_URI", "RRN_STORAGE_PATH", "RRN_STORAGE_ENDPOINT_URL",
                 "MLFLOW_TRACKING_URI", "RAY_ADDRESS")


# --------------------------------------------------------------------------- helpers


def make_synth(root: Path) -> Path:
    """A very small synthetic VOC-layout set: 16 train / 4 val images of 32 px, 4 classes."""
    from rrn_core.data import generate_synthetic

    return generate_synthetic(root, num_classes=4, num_train=16, num_val=4, size=32, seed=0)


def base_config(data_root: Path, **data: Any) -> dict[str, Any]:
    """A RunConfig tree small enough for a 4-iteration CPU trial in about a second."""
    return {
        "name": "tiny",
        "data": {"root": str(data_root), "num_classes": 4, "label_ratio": 0.25, "crop_size": 32,
                 "batch_size": 2, "unlabeled_batch_size": 2, **data},
        "model": {"backbone": "resnet18d", "base_width": 8,
                  "aspp_channels": 16, "low_level_channels": 8, "head_channels": 16},
        "optim": {"iters": 4},
        "eval": {"every": 2, "overlays": 1},
        "runtime": {"device": "cpu", "progress": False, "log_every": 2},
    }


def write_space(folder: Path, name: str, data_root: Path, *, grid: dict[str, list[Any]],
                search: dict[str, Any] | None = None, num_samples: int = 1,
                fixed: dict[str, Any] | None = None, base: dict[str, Any] | None = None,
                **extra: Any) -> Path:
    """base.yaml + space.yaml in `folder`, tracking and results inside `folder` too."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.yaml").write_text(yaml.safe_dump(base or base_config(data_root)))
    space = {
        "name": name, "base_config": "base.yaml", "fixed": fixed or {}, "grid": grid,
        "search": search or {}, "num_samples": num_samples, "metric": "val/mIoU", "mode": "max",
        "max_concurrent_trials": 2,
        "tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}", "experiment": "rrn-test"},
        "storage": {"path": str(folder / "results")},
        "failure": {"max_failures": 1},
        **extra,
    }
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def mlflow_runs(folder: Path, sweep: str) -> tuple[Any, list[Any]]:
    """(parent run, child runs) of `sweep` in the store under `folder`."""
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    exp = client.get_experiment_by_name("rrn-test")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get(TAG_ROLE) == "sweep"
               and r.data.tags.get(TAG_SWEEP) == sweep]
    assert len(parents) == 1, f"expected one parent run for {sweep}, got {len(parents)}"
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get(TAG_PARENT) == parent.info.run_id]
    return parent, children


def sweep_app() -> typer.Typer:
    app = typer.Typer()
    sweep_commands.register(app)
    return app


@pytest.fixture(scope="module")
def clean_env() -> Iterator[None]:
    """No ambient RRN_*/MLflow/Ray settings may redirect the sweeps under test."""
    patch = pytest.MonkeyPatch()
    for name in ENV_OVERRIDES:
        patch.delenv(name, raising=False)
    yield
    patch.undo()


@pytest.fixture(scope="module")
def ray_session(clean_env: None) -> Iterator[None]:
    """One local Ray for the module's sweeps (run_sweep joins it instead of starting one)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synth(tmp_path_factory.mktemp("data") / "synth")


# --------------------------------------------------------------------------- bad input: exit 2


def _assert_nothing_written(folder: Path) -> None:
    assert not (folder / "results").exists(), "storage was created for a sweep that never started"
    assert not (folder / "mlflow.db").exists(), "the tracking store was touched"


def test_bad_space_exits_2_before_anything_starts(tmp_path: Path, clean_env: None) -> None:
    import ray

    data = make_synth(tmp_path / "synth")
    path = write_space(tmp_path / "s", "bad", data, grid={"method.name": ["supervised"]},
                       search={"data.label_ratio": {"type": "uniform", "low": 0.1, "high": 0.5}})
    assert not ray.is_initialized(), "test order: this test must run before the module's Ray starts"
    result = CliRunner().invoke(sweep_app(), ["sweep", str(path)])
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and "search.data.label_ratio" in result.output
    assert not ray.is_initialized()
    _assert_nothing_written(tmp_path / "s")
    assert not (data / "splits").exists()


def test_missing_or_broken_data_exits_2(tmp_path: Path, clean_env: None) -> None:
    import ray

    missing = write_space(tmp_path / "m", "missing", tmp_path / "nowhere", grid={"method.name": ["cps"]})
    result = CliRunner().invoke(sweep_app(), ["sweep", str(missing)])
    assert result.exit_code == 2, result.output
    assert "data.root" in result.output and "nowhere" in result.output
    _assert_nothing_written(tmp_path / "m")

    data = make_synth(tmp_path / "synth")
    broken_mask = sorted((data / "SegmentationClass").glob("*.png"))[3]
    broken_mask.write_bytes(b"not a png")
    broken = write_space(tmp_path / "b", "broken", data, grid={"method.name": ["cps"]})
    result = CliRunner().invoke(sweep_app(), ["sweep", str(broken)])
    assert result.exit_code == 2, result.output
    assert broken_mask.name in result.output
    _assert_nothing_written(tmp_path / "b")
    assert not (data / "splits").exists()
    assert not ray.is_initialized()


def test_unlabeled_method_on_a_full_split_and_short_asha_grace_exit_2(tmp_path: Path,
                                                                      clean_env: None) -> None:
    data = make_synth(tmp_path / "synth")
    full = write_space(tmp_path / "f", "full", data,
                       grid={"data.label_ratio": [1.0], "method.name": ["cps"]})
    with pytest.raises(SweepError, match="needs unlabeled images"):
        run_sweep(full, SweepOptions(), say=lambda m: None)
    # 12 unlabeled images / 2 per step = 6 iterations per epoch; grace 2 x every 2 = 4 <= 6.
    short = write_space(tmp_path / "g", "grace", data, grid={"method.name": ["rrn"]},
                        fixed={"optim.iters": 20, "method.warmup_epochs": 1.0},
                        scheduler={"type": "asha", "grace_period": 2, "max_t": 10})
    with pytest.raises(SweepError, match="scheduler.grace_period"):
        run_sweep(short, SweepOptions(), say=lambda m: None)
    _assert_nothing_written(tmp_path / "f")
    _assert_nothing_written(tmp_path / "g")


def test_sweep_help_lists_the_flags() -> None:
    result = CliRunner().invoke(sweep_app(), ["sweep", "--help"])
    assert result.exit_code == 0
    for flag in ("--address", "--resume", "--max-concurrent", "--tracking-uri", "--storage"):
        assert flag in result.output


# --------------------------------------------------------------------------- searcher & scheduler


def _dists() -> dict[str, Any]:
    from optuna.distributions import FloatDistribution

    return {"optim.lr": FloatDistribution(1e-3, 1e-2, log=True)}


def _searcher(points: int = 2, samples: int = 2) -> GridSearcher:
    import optuna

    grid = [{"method.name": m} for m in ("supervised", "cps", "rrn")[:points]]
    return GridSearcher(grid, _dists(), samples, "val/mIoU", "max",
                        samplers=[optuna.samplers.TPESampler(seed=0) for _ in grid])


def test_searcher_round_robin_grid_constants_and_finish() -> None:
    s = _searcher()
    configs = [s.suggest(f"t{i}") for i in range(4)]
    assert [c[POINT_KEY] for c in configs] == [0, 1, 0, 1]
    assert [c[GRID_KEY]["method.name"] for c in configs] == ["supervised", "cps"] * 2
    for c in configs:
        assert set(c[PARAMS_KEY]) == {"optim.lr"} and 1e-3 <= c[PARAMS_KEY]["optim.lr"] <= 1e-2
    assert s.suggest("t4") == GridSearcher.FINISHED


def test_searcher_tells_optuna_only_fully_trained_values() -> None:
    s = _searcher(points=1, samples=3)
    for tid in ("full", "stopped", "crashed"):
        s.suggest(tid)
    s.on_trial_result("full", {"val/mIoU": 0.2, "training_iteration": 1, FULLY_TRAINED: 0.0})
    s.on_trial_result("stopped", {"val/mIoU": 0.9, "training_iteration": 1, FULLY_TRAINED: 0.0})
    s.on_trial_complete("full", {"val/mIoU": 0.4, "training_iteration": 2, FULLY_TRAINED: 1.0})
    # ASHA's stopping result reaches the searcher only through on_trial_complete.
    s.on_trial_complete("stopped", {"val/mIoU": 0.7, "training_iteration": 2, FULLY_TRAINED: 0.0})
    s.on_trial_complete("crashed", None, error=True)
    study = s.studies()[0]
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED", "FAIL"]
    assert study.trials[0].value == 0.4, "the final value, not an intermediate one"
    # The early-stopped trial's values are only intermediate values (Optuna shows a
    # pruned trial's last one as its value); 0.9 must never become the study's best.
    assert study.trials[1].intermediate_values == {1: 0.9, 2: 0.7}
    assert study.best_trial.number == 0 and study.best_value == 0.4


def test_searcher_pure_grid_and_save_restore(tmp_path: Path) -> None:
    grid = GridSearcher([{"runtime.seed": 0}, {"runtime.seed": 1}], {}, 1, "val/mIoU", "max")
    assert [grid.suggest(t)[PARAMS_KEY] for t in ("a", "b")] == [{}, {}]
    assert grid.suggest("c") == GridSearcher.FINISHED

    s = _searcher()
    s.suggest("t0")
    s.on_trial_complete("t0", {"val/mIoU": 0.3, FULLY_TRAINED: 1.0})
    s.save(str(tmp_path / "state.pkl"))
    restored = GridSearcher([{}], {}, 1, "val/mIoU", "max")
    restored.restore(str(tmp_path / "state.pkl"))
    assert restored.suggest("t1")[POINT_KEY] == 1  # continues the round-robin
    assert restored.studies()[0].best_value == 0.3


def test_asha_compares_trials_only_within_their_grid_point() -> None:
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    def trial(tid: str, point: int) -> SimpleNamespace:
        return SimpleNamespace(trial_id=tid, config={POINT_KEY: point})

    def feed(scheduler: Any, trials: list[SimpleNamespace], values: list[float]) -> list[str]:
        for t in trials:
            scheduler.on_trial_add(None, t)
        return [scheduler.on_trial_result(None, t, {"training_iteration": 1, "val/mIoU": v})
                for t, v in zip(trials, values)]

    kwargs = {"time_attr": "training_iteration", "grace_period": 1, "max_t": 4, "reduction_factor": 2}
    trials = [trial("rrn-a", 0), trial("rrn-b", 0), trial("sup-a", 1)]
    values = [0.9, 0.1, 0.05]
    per_point = PerPointScheduler(kwargs)
    per_point.set_search_properties("val/mIoU", "max")
    decisions = feed(per_point, trials, values)
    assert decisions == [TrialScheduler.CONTINUE, TrialScheduler.STOP, TrialScheduler.CONTINUE]
    # One ASHA over all points would stop the first trial of the weaker point.
    shared = ASHAScheduler(metric="val/mIoU", mode="max", **kwargs)
    assert feed(shared, [trial(t.trial_id, 0) for t in trials], values)[2] == TrialScheduler.STOP


def test_progress_line_counts_trials_by_state_and_survives_pickling() -> None:
    import io
    import pickle

    from rich.console import Console

    from orchestration.names import STEP_KEY, TOTAL_STEPS_KEY
    from orchestration.sweep.progress import SweepProgress

    progress = SweepProgress("demo", 3, "val/mIoU", "max", live=False)
    buffer = io.StringIO()
    progress._console = Console(file=buffer, width=200)
    trials = [SimpleNamespace(trial_id=f"t{i}", status="RUNNING", path="/r",
                              config={GRID_KEY: {"method.name": "rrn"}, PARAMS_KEY: {"optim.lr": 0.01}},
                              last_result={}) for i in range(3)]
    for t in trials:
        progress.on_trial_start(0, trials, t)
    progress.on_trial_result(0, trials, trials[0], {"val/mIoU": 0.3, STEP_KEY: 2, TOTAL_STEPS_KEY: 4})
    trials[0].last_result = {"val/mIoU": 0.4, FULLY_TRAINED: 1.0}
    progress.on_trial_complete(0, trials, trials[0])   # Tune updates status afterwards
    progress.on_trial_error(0, trials, trials[1])
    line = progress.status_line()
    assert "demo: 2/3 done (1 failed), 1 running" in line
    assert "best val/mIoU 0.4000 (t0)" in line
    text = buffer.getvalue()
    assert "[method.name" not in text and "rrn lr=0.01 (t0)" in text  # no markup eaten
    restored = pickle.loads(pickle.dumps(progress))     # Tune pickles callbacks
    assert restored.best == 0.4 and restored._console is None


# --------------------------------------------------------------------------- the real sweep


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory, synth: Path,
        ray_session: None) -> tuple[Path, Any]:
    folder = tmp_path_factory.mktemp("e2e")
    path = write_space(folder, "e2e", synth,
                       grid={"data.label_ratio": [0.25, 0.5], "method.name": ["supervised", "cps"],
                             "runtime.seed": [0]},
                       search={"optim.lr": LR})
    outcome = run_sweep(path, SweepOptions(), say=lambda m: None)
    return folder, outcome


def test_sweep_trials_complete_and_report_to_tune(e2e: tuple[Path, Any]) -> None:
    folder, outcome = e2e
    assert outcome.status == "FINISHED"
    assert len(outcome.trials) == 4
    assert sorted(t.point for t in outcome.trials) == [0, 1, 2, 3]
    for t in outcome.trials:
        assert t.status == "TERMINATED" and t.fully_trained, t
        assert t.steps == [2, 4], f"one Tune result per evaluation, got steps {t.steps}"
        assert t.metric is not None and 0.0 <= t.metric <= 1.0
        assert t.last["rrn/world_size"] == 1.0
        assert set(t.params) == {"optim.lr"}
        assert t.grid["data.label_ratio"] in (0.25, 0.5)
        trial_dirs = list((folder / "results" / "e2e").glob(f"trial-*-{t.trial_id}"))
        assert len(trial_dirs) == 1
        assert list(trial_dirs[0].glob("checkpoint_*/last.pt")), "checkpoints must be persisted"


def test_optuna_gets_each_trials_final_metric(e2e: tuple[Path, Any]) -> None:
    _, outcome = e2e
    assert len(outcome.studies) == 4, "one study per grid point"
    lrs = {round(t.params["optim.lr"], 12) for t in outcome.trials}
    assert len(lrs) == 4, "each grid point's study draws its own proposals"
    by_point = {t.point: t for t in outcome.trials}
    for point, study in enumerate(outcome.studies):
        assert len(study) == 1
        state, value, params = study[0]
        trial = by_point[point]
        assert state == "COMPLETE"
        assert value == pytest.approx(trial.metric)
        assert params == pytest.approx(trial.params)


def test_mlflow_parent_and_children(e2e: tuple[Path, Any]) -> None:
    folder, outcome = e2e
    parent, children = mlflow_runs(folder, "e2e")
    assert parent.info.run_id == outcome.parent_run_id
    assert parent.info.status == "FINISHED"
    assert len(children) == 4
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    by_id = {t.trial_id: t for t in outcome.trials}
    for child in children:
        trial = by_id[child.data.tags["rrn.trial_id"]]
        assert child.info.status == "FINISHED"
        params = child.data.params
        assert params["method.name"] == trial.grid["method.name"]
        method, ratio = trial.grid["method.name"], trial.grid["data.label_ratio"]
        assert child.info.run_name == \
            f"{method} r=1/{round(1 / ratio)} s=0 lr={trial.params['optim.lr']:.3g}"
        assert not any(k.startswith("runtime.output_dir") for k in params)
        assert ("method.w_cps" in params) == (method == "cps")
        assert child.data.tags["rrn.collapsed"] in ("true", "false")
        assert float(params["data.label_ratio"]) == trial.grid["data.label_ratio"]
        assert float(params["optim.lr"]) == pytest.approx(trial.params["optim.lr"])
        history = client.get_metric_history(child.info.run_id, "val/mIoU")
        assert [m.step for m in history] == [2, 4]
        assert history[-1].value == pytest.approx(trial.metric)
        assert "train/loss" in child.data.metrics
        assert child.data.tags["rrn.checkpoint"].startswith(str(folder / "results" / "e2e"))
    statuses = {r.info.status for r in client.search_runs([parent.info.experiment_id])}
    assert "RUNNING" not in statuses
    artifacts = [a.path for a in client.list_artifacts(parent.info.run_id, "summary")]
    assert "summary/summary.csv" in artifacts


def test_trials_at_one_ratio_share_one_split_file(e2e: tuple[Path, Any], synth: Path) -> None:
    from rrn_core.data.splits import split_hash

    folder, outcome = e2e
    parent, children = mlflow_runs(folder, "e2e")
    files: dict[float, set[tuple[str, str]]] = {}
    for child in children:
        p = child.data.params
        if p["method.name"] == "supervised":   # it logs no unlabeled split: it reads none
            assert "data.unlabeled_split" not in p
            continue
        # split files are logged relative to data.root (no machine-local absolute paths)
        root = Path(p["data.root"])
        assert not Path(p["data.labeled_split"]).is_absolute()
        files.setdefault(float(p["data.label_ratio"]), set()).add(
            (str(root / p["data.labeled_split"]), str(root / p["data.unlabeled_split"])))
    labeled_by_ratio = {float(c.data.params["data.label_ratio"]): c.data.params["data.labeled_split"]
                        for c in children if c.data.params["method.name"] == "supervised"}
    assert set(files) == {0.25, 0.5}
    for ratio, pairs in files.items():
        assert len(pairs) == 1, f"trials at ratio {ratio} used different splits: {pairs}"
        labeled, unlabeled = next(iter(pairs))
        assert Path(labeled).relative_to(synth).as_posix() == labeled_by_ratio[ratio]
        assert Path(labeled).is_file() and Path(labeled).is_relative_to(synth)
        digest = split_hash([labeled, unlabeled])
        assert parent.data.tags[f"{TAG_SPLIT_HASH_PREFIX}ratio_{ratio:g}_seed_0"] == digest
        assert outcome.split_hashes[f"ratio_{ratio:g}_seed_0"] == digest
    assert files[0.25] != files[0.5]
    labeled_025 = Path(next(iter(files[0.25]))[0]).read_text().split()
    assert len(labeled_025) == math.ceil(0.25 * 16)


def test_existing_sweep_needs_resume(e2e: tuple[Path, Any]) -> None:
    folder, _ = e2e
    result = CliRunner().invoke(sweep_app(), ["sweep", str(folder / "space.yaml")])
    assert result.exit_code == 2, result.output
    assert "--resume" in result.output
    mlflow_runs(folder, "e2e")  # still exactly one parent run


def test_resume_refuses_a_changed_space(e2e: tuple[Path, Any]) -> None:
    from orchestration.sweep.prepare import prepare_sweep

    folder, _ = e2e
    same = prepare_sweep(folder / "space.yaml", SweepOptions(resume=True), say=lambda m: None)
    assert same.exists
    changed = yaml.safe_load((folder / "space.yaml").read_text())
    changed["fixed"] = {"optim.iters": 6}
    (folder / "changed.yaml").write_text(yaml.safe_dump(changed))
    with pytest.raises(SweepError, match="changed since sweep 'e2e' started"):
        prepare_sweep(folder / "changed.yaml", SweepOptions(resume=True), say=lambda m: None)


def test_two_worker_trial_runs_ddp_through_torchtrainer(tmp_path: Path, synth: Path,
                                                        ray_session: None) -> None:
    path = write_space(tmp_path, "ddp", synth, grid={"method.name": ["cps"]},
                       scaling={"num_workers": 2, "use_gpu": False, "resources_per_worker": {"CPU": 1}})
    outcome = run_sweep(path, SweepOptions(), say=lambda m: None)
    assert outcome.status == "FINISHED", [t.error for t in outcome.trials]
    (trial,) = outcome.trials
    assert trial.fully_trained and trial.steps == [2, 4]
    assert trial.last["rrn/world_size"] == 2.0, "the loop must run under a 2-rank process group"
    train_run = tmp_path / "results" / "ddp" / "train" / trial.trial_id
    assert list(train_run.glob("checkpoint_*/last.pt")), "Ray Train persisted no checkpoint"
    _, (child,) = mlflow_runs(tmp_path, "ddp")
    assert child.info.status == "FINISHED"
    assert child.data.tags["rrn.execution"] == "trainer"


def test_backbone_on_the_grid_runs_and_the_report_groups_by_it(tmp_path: Path, synth: Path,
                                                              ray_session: None) -> None:
    """A ConvNet and DINOv2 on one grid (UniMatch V2's comparison): both train, each run is
    tagged with its backbone and weights, and the report keeps one arm per backbone."""
    from orchestration.report.table import best_trials, label_efficiency_data, summarize_run

    base = base_config(synth, crop_size=28)
    base["model"] = {"aspp_channels": 8, "low_level_channels": 8, "head_channels": 8, "dpt_features": 8}
    path = write_space(tmp_path, "bb", synth, base=base,
                       grid={"model.backbone": ["resnet18d", "vit_small_patch14_dinov2"],
                             "method.name": ["supervised"]})
    outcome = run_sweep(path, SweepOptions(), say=lambda m: None)
    assert outcome.status == "FINISHED", [t.error for t in outcome.trials]
    assert sorted(t.grid["model.backbone"] for t in outcome.trials) == ["resnet18d", "vit_small_patch14_dinov2"]
    parent, children = mlflow_runs(tmp_path, "bb")
    for child in children:
        tags = child.data.tags
        assert tags["rrn.backbone"] == child.data.params["model.backbone"]
        assert tags["rrn.weights"] == "none" and tags["rrn.weights_sha256"] == ""
    df = summarize_run(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"), parent)
    arms = ["supervised on resnet18d", "supervised on vit_small_patch14_dinov2"]
    assert sorted(df["method"]) == arms
    assert sorted(best_trials(df)["method"]) == arms
    assert sorted(label_efficiency_data(df)["method"]) == arms


def test_asha_stopped_trials_are_pruned_not_complete(tmp_path: Path, synth: Path,
                                                     ray_session: None) -> None:
    """One trial at a time, seeded sampler and training: ASHA's decisions are reproducible;
    whichever trials it stops, Optuna must see them as PRUNED and MLflow as KILLED."""
    path = write_space(tmp_path, "asha", synth, grid={"method.name": ["supervised"]},
                       search={"optim.lr": {"type": "loguniform", "low": 1.0e-4, "high": 0.3}},
                       num_samples=4, max_concurrent_trials=1, fixed={"optim.iters": 8},
                       scheduler={"type": "asha", "grace_period": 1, "max_t": 4, "reduction_factor": 2})
    outcome = run_sweep(path, SweepOptions(), say=lambda m: None)
    assert outcome.status == "FINISHED"
    stopped = [t for t in outcome.trials if not t.fully_trained]
    full = [t for t in outcome.trials if t.fully_trained]
    seen = [(t.params, t.steps, t.metric) for t in outcome.trials]
    assert stopped and full, f"expected ASHA to stop some trials and not others: {seen}"
    (study,) = outcome.studies
    by_params = {round(p["optim.lr"], 12): (state, value) for state, value, p in study}
    _, children = mlflow_runs(tmp_path, "asha")
    status = {c.data.tags["rrn.trial_id"]: c.info.status for c in children}
    for t in full:
        assert t.steps == [2, 4, 6, 8]
        assert by_params[round(t.params["optim.lr"], 12)] == ("COMPLETE", pytest.approx(t.metric))
        assert status[t.trial_id] == "FINISHED"
    for t in stopped:
        assert t.steps[-1] < 8
        assert by_params[round(t.params["optim.lr"], 12)][0] == "PRUNED"
        assert status[t.trial_id] == "KILLED"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA device: checks that a use_gpu trial gets one")
def test_gpu_trial_gets_a_gpu(tmp_path: Path, synth: Path, ray_session: None) -> None:
    base = base_config(synth)
    base["runtime"]["device"] = "cuda"  # the loop fails if the trial was given no GPU
    path = write_space(tmp_path, "gpu", synth, grid={"method.name": ["supervised"]}, base=base,
                       scaling={"num_workers": 1, "use_gpu": True,
                                "resources_per_worker": {"CPU": 1, "GPU": 1}})
    outcome = run_sweep(path, SweepOptions(), say=lambda m: None)
    (trial,) = outcome.trials
    assert outcome.status == "FINISHED", trial.error
    assert trial.fully_trained
