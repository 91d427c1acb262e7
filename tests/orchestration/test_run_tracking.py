"""`rrn train`'s tracking (rrn/train_commands.py, run_tracking.py) with the real loop
and a real sqlite store: an MLflow run named like a trial, its metrics and artifacts,
a metrics.jsonl beside the checkpoints, and the same run continued on resume."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from orchestration.tracking.store import resolve_tracking_uri
from orchestration.tracking.train_run import METRICS_FILE, standalone_hooks
from rrn_core.config import build_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from rrn_core.data.synth import generate_synthetic

    root = tmp_path_factory.mktemp("train")
    generate_synthetic(root / "data", num_classes=4, num_train=16, num_val=2, size=32, seed=0)
    cfg = build_config({
        "data": {"root": str(root / "data"), "num_classes": 4, "label_ratio": 0.25,
                 "crop_size": 32, "batch_size": 2, "unlabeled_batch_size": 2},
        "model": {"backbone": "resnet18d", "base_width": 8,
                  "aspp_channels": 16, "low_level_channels": 8, "head_channels": 16},
        "method": {"name": "cps"}, "optim": {"iters": 4},
        "eval": {"every": 2, "overlays": 1},
        "runtime": {"device": "cpu", "progress": False, "log_every": 2,
                    "output_dir": str(root / "run")}})
    return root, cfg, resolve_tracking_uri(f"sqlite:///{root}/mlflow.db")


def test_a_single_run_is_tracked_like_a_trial(tiny):
    """`rrn train` as registered by rrn/cli.py order: rrn_core's commands, then ours."""
    import torch
    import typer
    import yaml
    from typer.testing import CliRunner

    from rrn import train_commands
    from rrn import run_commands

    root, cfg, uri = tiny
    app = typer.Typer()
    run_commands.register(app)
    train_commands.register(app)
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = CliRunner().invoke(app, ["train", str(path), "--tracking-uri", uri,
                                       "--experiment", "single"])
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    assert "MLflow run " in res.output
    run_id = res.output.split("MLflow run ", 1)[1].split()[0]
    final = float(res.output.split("step 4: mIoU ", 1)[1].split()[0])

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.run_name == "cps r=1/4 s=0" and run.info.status == "FINISHED"
    tags, params = run.data.tags, run.data.params
    assert (tags["rrn.role"], tags["rrn.method"], tags["rrn.label_ratio"]) == \
        ("train", "cps", "0.25")
    assert tags["rrn.collapsed"] in ("true", "false")
    assert "method.w_cps" in params and "method.w_select" not in params
    assert not any(k.startswith("runtime.output_dir") for k in params)
    miou = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "val/mIoU"))
    assert [s for s, _ in miou] == [2, 4] and miou[-1][1] == pytest.approx(final, abs=1e-4)
    files = {a.path for a in client.list_artifacts(run_id, "eval/step_0000004")}
    assert "eval/step_0000004/confusion.png" in files
    assert any("/overlay_" in f for f in files)
    assert {a.path for a in client.list_artifacts(run_id)} >= {"config.yaml"}
    exp = client.get_experiment_by_name("single")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"

    lines = [json.loads(line) for line in (root / "run" / METRICS_FILE).read_text().splitlines()]
    evals = [r for r in lines if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    assert evals[-1]["val/mIoU"] == pytest.approx(final, abs=1e-4)
    assert isinstance(evals[-1]["collapsed"], bool)
    assert [r["step"] for r in lines if r["kind"] == "train"] == [2, 4]


def test_resume_continues_the_same_run_and_file(tiny):
    root, cfg, uri = tiny
    first = [json.loads(x) for x in (root / "run" / METRICS_FILE).read_text().splitlines()]
    hooks, close, run_id = standalone_hooks(cfg, tracking_uri=uri, experiment="single")
    hooks.on_log(4, {"train/loss": 9.0})        # the replay of a step already logged
    hooks.on_log(6, {"train/loss": 0.5})
    close("FINISHED")
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("single").experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]          # one run, continued
    losses = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train/loss"))
    assert [s for s, _ in losses] == [2, 4, 6] and dict(losses)[4] != 9.0
    lines = [json.loads(x) for x in (root / "run" / METRICS_FILE).read_text().splitlines()]
    assert len(lines) == len(first) + 1 and lines[-1]["step"] == 6


def test_no_track_writes_only_the_file(tiny, tmp_path):
    _, cfg, _ = tiny
    cfg = cfg.model_copy(update={"runtime": cfg.runtime.model_copy(
        update={"output_dir": str(tmp_path / "untracked")})})
    hooks, close, run_id = standalone_hooks(cfg, track=False)
    hooks.on_log(1, {"train/loss": 1.0})
    close("FINISHED")
    assert run_id is None
    assert (tmp_path / "untracked" / METRICS_FILE).is_file()
