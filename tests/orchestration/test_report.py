"""The sweep report read back from a real MLflow store: summary table, label-efficiency
plot, summary artifacts, `rrn report`, and `rrn ui` (a real `mlflow server`), which
also serves as the HTTP tracking server for the one over-the-wire test."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from mlflow import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from orchestration import cli_report
from orchestration.report import (
    label_efficiency_data,
    label_efficiency_figure,
    label_efficiency_plot,
    summarize,
)
from orchestration.tracking import SweepTracker, TrialTracker, resolve_tracking_uri
from rrn_core.evaluate import EvalResult, PredictionSample

EXPERIMENT = "rep"
SWEEP = "ratios"
METHODS = ["supervised", "rrn"]
RATIOS = [0.25, 0.5]
SEEDS = [0, 1]
SAMPLES = 2


def write_space(folder: Path, name: str, num_classes: int = 2):
    from orchestration.space import load_space

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.yaml").write_text(yaml.safe_dump(
        {"name": "base", "data": {"root": "/nonexistent", "num_classes": num_classes,
                                  "class_names": ["bg", "fg"][:num_classes], "crop_size": 48},
         "runtime": {"progress": False}}))
    (folder / "space.yaml").write_text(yaml.safe_dump({
        "name": name, "base_config": "base.yaml", "fixed": {"optim.iters": 4},
        "grid": {"data.label_ratio": RATIOS, "method.name": METHODS, "runtime.seed": SEEDS},
        "search": {"method.w_select": {"type": "uniform", "low": 0.1, "high": 3.0}},
        "num_samples": SAMPLES, "metric": "val/mIoU", "mode": "max"}))
    return load_space(folder / "space.yaml")


def result(a: int, b: int, samples=()) -> EvalResult:
    """A 2-class result whose IoUs are both a / (a + 2b)."""
    return EvalResult(confusion=np.array([[a, b], [b, a]]), class_names=["bg", "fg"],
                      samples=list(samples))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """An empty sqlite store (tables created) shared by this module's tests."""
    root = tmp_path_factory.mktemp("report")
    uri = resolve_tracking_uri(f"sqlite:///{root}/mlflow.db")
    MlflowClient(tracking_uri=uri).search_experiments()
    return {"uri": uri, "root": root}


@pytest.fixture(scope="module")
def ui_launch(store):
    """`rrn ui` on the store, launched as a user would (a real `mlflow server`).

    Launched before the store is filled: the server's start-up (~10 s of imports)
    overlaps the filling instead of adding to the module's run time.
    """
    port = free_port()
    log = store["root"] / "ui.log"
    code = ("import typer; from orchestration import cli_report; app = typer.Typer(); "
            "cli_report.register(app); app()")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "ui", "--tracking-uri", store["uri"], "--port", str(port)],
        cwd=Path(__file__).resolve().parents[2], stdout=log.open("w"),
        stderr=subprocess.STDOUT)
    info = {"url": f"http://127.0.0.1:{port}", "proc": proc, "log": log, "spawned": []}
    try:
        yield info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for pid in info["spawned"]:  # only if `rrn ui` failed to stop its own server
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def filled(store, ui_launch):
    """A finished sweep of 16 trials (2 methods x 2 ratios x 2 seeds x 2 samples).

    Each trial is evaluated twice with random confusion matrices, so its best and final
    mIoU differ in general; one trial dies before its first evaluation.
    """
    root, uri = store["root"], store["uri"]
    space = write_space(root / "space", SWEEP)
    sweep = SweepTracker(uri, EXPERIMENT, SWEEP)
    parent_id = sweep.start(space, git_commit="c0ffee", dataset_hash="h",
                            split_hashes={}, resume=False)
    rng = np.random.default_rng(0)
    expected: dict[str, dict] = {}
    orphan = None
    for gi, point in enumerate(space.grid_points()):
        for s in range(SAMPLES):
            w = float(rng.uniform(0.1, 3.0))
            cfg = space.trial_config(point, {"method.w_select": w})
            trial_id = f"trial_{gi:02d}_{s}"
            tracker = TrialTracker(uri, EXPERIMENT, parent_id, trial_id, trial_id, cfg)
            if gi == 0 and s == 1:
                orphan = tracker  # dies before evaluating: never closed
                continue
            values = []
            for step in (2, 4):
                a, b = (int(v) for v in rng.integers(1, 60, size=2))
                res = result(a, b)
                tracker.on_evaluation(step, res, None)
                values.append(res.miou)
            tracker.close()
            expected[trial_id] = {"method": cfg.method.name, "ratio": cfg.data.label_ratio,
                                  "seed": cfg.runtime.seed, "w": w, "best": max(values),
                                  "final": values[-1], "run_id": tracker.run_id}
    sweep.log_summary()
    sweep.finish()
    return {"uri": uri, "root": root, "parent_id": parent_id, "expected": expected,
            "orphan": orphan.run_id}


def test_summarize_one_row_per_trial(filled):
    df = summarize(filled["uri"], EXPERIMENT, SWEEP)
    expected = filled["expected"]
    assert len(df) == len(METHODS) * len(RATIOS) * len(SEEDS) * SAMPLES
    assert df["run_id"].is_unique
    for _, row in df.iterrows():
        if row["run_id"] == filled["orphan"]:
            assert row["status"] == "FAILED" and np.isnan(row["miou_best"])
            continue
        want = expected[row["trial_id"]]
        assert (row["method"], row["label_ratio"], row["seed"]) == \
            (want["method"], want["ratio"], want["seed"])
        assert row["method.w_select"] == pytest.approx(want["w"])
        assert row["miou_best"] == pytest.approx(want["best"])
        assert row["miou_final"] == pytest.approx(want["final"])
        assert row["status"] == "FINISHED" and row["evals"] == 2 and row["last_step"] == 4
    assert (df["miou_best"] != df["miou_final"]).any()  # the data can tell best from final


def expected_curves(expected: dict[str, dict]) -> dict[tuple[str, float], list[float]]:
    """Independent of report.py: best trial per (method, ratio, seed), listed per seed."""
    best: dict[tuple, float] = defaultdict(lambda: -1.0)
    for t in expected.values():
        key = (t["method"], t["ratio"], t["seed"])
        best[key] = max(best[key], t["best"])
    curves: dict[tuple[str, float], list[float]] = defaultdict(list)
    for (method, ratio, _seed), value in best.items():
        curves[(method, ratio)].append(value)
    return curves


def test_label_efficiency_data_and_plot(filled, tmp_path):
    df = summarize(filled["uri"], EXPERIMENT, SWEEP)
    data = label_efficiency_data(df)
    curves = expected_curves(filled["expected"])
    assert sorted(data["method"].unique()) == sorted(METHODS)
    assert len(data) == len(curves) == len(METHODS) * len(RATIOS)
    for _, row in data.iterrows():
        values = curves[(row["method"], row["x"])]
        assert row["n"] == len(SEEDS)
        assert row["mean"] == pytest.approx(statistics.mean(values))
        assert row["std"] == pytest.approx(statistics.stdev(values))

    fig = label_efficiency_figure(df)
    lines = [ln for ln in fig.axes[0].get_lines() if not ln.get_label().startswith("_")]
    assert sorted(ln.get_label() for ln in lines) == sorted(METHODS)  # one line per method
    for line in lines:
        assert list(line.get_xdata()) == RATIOS

    out = tmp_path / "plot" / "le.png"
    label_efficiency_plot(df, out)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 300
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3)
        assert len(np.unique(pixels, axis=0)) > 20  # not a blank canvas


def test_label_efficiency_plot_of_an_empty_sweep(tmp_path):
    df = pd.DataFrame(columns=["method", "label_ratio", "label_count", "seed", "objective",
                               "miou_best"])
    label_efficiency_plot(df, tmp_path / "empty.png")
    assert (tmp_path / "empty.png").stat().st_size > 0


def test_log_summary_writes_table_plot_and_best_configs(filled, tmp_path):
    client = MlflowClient(tracking_uri=filled["uri"])
    pid = filled["parent_id"]
    files = {a.path for a in client.list_artifacts(pid, "summary")}
    assert {"summary/summary.csv", "summary/summary.md", "summary/summary.html",
            "summary/label_efficiency.png", "summary/best_config.yaml"} <= files
    best_cfgs = client.list_artifacts(pid, "summary/best_configs")
    assert len(best_cfgs) == len(METHODS) * len(RATIOS)

    expected = filled["expected"]
    top = max(expected.values(), key=lambda t: t["best"])
    got = Path(client.download_artifacts(pid, "summary/best_config.yaml", str(tmp_path)))
    cfg = yaml.safe_load(got.read_text())
    assert cfg["method"]["name"] == top["method"]
    assert cfg["data"]["label_ratio"] == top["ratio"]
    assert cfg["method"]["w_select"] == pytest.approx(top["w"])
    parent = client.get_run(pid)
    assert parent.data.metrics["best/val/mIoU"] == pytest.approx(top["best"])
    assert parent.data.tags["rrn.best_run"] == top["run_id"]
    csv = pd.read_csv(client.download_artifacts(pid, "summary/summary.csv", str(tmp_path)))
    assert len(csv) == len(METHODS) * len(RATIOS) * len(SEEDS) * SAMPLES


@pytest.fixture(scope="module")
def cli_app() -> typer.Typer:
    app = typer.Typer()
    cli_report.register(app)
    return app


def test_report_cli(filled, cli_app, tmp_path, monkeypatch):
    runner = CliRunner()
    out = tmp_path / "out"
    res = runner.invoke(cli_app, ["report", SWEEP, "--tracking-uri", filled["uri"],
                                  "--experiment", EXPERIMENT, "--out", str(out)],
                        env={"COLUMNS": "220"})
    assert res.exit_code == 0, res.output
    for method in METHODS:
        assert method in res.output
    assert "FAILED" in res.output and "w_select=" in res.output
    assert f"table: {out / 'summary.csv'}" in res.output
    assert f"plot:  {out / 'label_efficiency.png'}" in res.output
    assert len(pd.read_csv(out / "summary.csv")) == 16
    with Image.open(out / "label_efficiency.png") as img:
        assert img.format == "PNG"

    monkeypatch.setenv("RRN_HOME", str(tmp_path / "home"))
    res = runner.invoke(cli_app, ["report", SWEEP, "--tracking-uri", filled["uri"],
                                  "--experiment", EXPERIMENT])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "home" / "reports" / SWEEP / "summary.csv").is_file()


def test_report_cli_errors(filled, cli_app, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli_app, ["report", "nope", "--tracking-uri", filled["uri"],
                                  "--experiment", EXPERIMENT])
    assert res.exit_code == 2
    assert "no sweep named 'nope'" in res.output and SWEEP in res.output
    res = runner.invoke(cli_app, ["report", SWEEP, "--tracking-uri", filled["uri"],
                                  "--experiment", "missing-exp"])
    assert res.exit_code == 2 and "missing-exp" in res.output
    missing = tmp_path / "none" / "mlflow.db"
    res = runner.invoke(cli_app, ["report", SWEEP, "--tracking-uri", f"sqlite:///{missing}"])
    assert res.exit_code == 2 and str(missing) in res.output
    assert not missing.exists()  # reading never creates an empty store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ppid_state(pid: int) -> tuple[int, str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), fields[0]


def descendants(pid: int) -> list[int]:
    """Live descendant pids, from /proc (Linux; no psutil in the environment)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _ppid_state(int(entry.name))):
            children[info[0]].append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    info = _ppid_state(pid)
    return info is not None and info[1] != "Z"


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture(scope="module")
def ui_server(ui_launch, filled):
    """The launched UI once it answers (the store is filled by then)."""
    proc = ui_launch["proc"]
    if not cli_report.wait_http_ok(ui_launch["url"] + "/health", 120, proc):
        pytest.fail(f"rrn ui did not start:\n{ui_launch['log'].read_text()[-3000:]}")
    ui_launch["spawned"].extend(descendants(proc.pid))
    return ui_launch


def test_ui_serves_the_store_and_its_artifacts(ui_server, filled):
    status, body = http_get(ui_server["url"] + "/")
    assert status == 200 and b"<html" in body.lower()
    run_id = next(iter(filled["expected"].values()))["run_id"]
    status, body = http_get(f"{ui_server['url']}/get-artifact?path=config.yaml&run_uuid={run_id}")
    assert status == 200 and yaml.safe_load(body)["data"]["num_classes"] == 2
    status, body = http_get(f"{ui_server['url']}/get-artifact?path=summary/label_efficiency.png"
                            f"&run_uuid={filled['parent_id']}")
    assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"


def test_tracking_over_http(ui_server, filled, tmp_path):
    """The same trackers against a tracking server: runs over REST, artifacts proxied."""
    uri = ui_server["url"]
    space = write_space(tmp_path / "space", "web")
    sweep = SweepTracker(uri, "http-exp", "web")
    parent_id = sweep.start(space, git_commit=None, dataset_hash=None, split_hashes={},
                            resume=False)
    point = space.grid_points()[0]
    cfg = space.trial_config(point, {"method.w_select": 1.0})
    trial = TrialTracker(uri, "http-exp", parent_id, "t0", "t0", cfg)
    trial.on_log(1, {"train/loss": 0.7})
    img = np.zeros((16, 16, 3), np.uint8)
    sample = PredictionSample("s", img, np.zeros((16, 16), int), np.ones((16, 16), int))
    trial.on_evaluation(1, result(30, 5, [sample]), "s3://bucket/ckpt")
    trial.close()
    sweep.log_summary()
    sweep.finish()

    df = summarize(uri, "http-exp", "web")
    assert len(df) == 1 and df.loc[0, "miou_best"] == pytest.approx(result(30, 5).miou)
    client = MlflowClient(tracking_uri=uri)
    eval_files = {a.path for a in client.list_artifacts(trial.run_id, "eval/step_0000001")}
    assert "eval/step_0000001/confusion.png" in eval_files
    # proxied uploads land in the store's own artifact folder on the server side
    stored = list((filled["root"] / "mlartifacts").rglob("confusion.png"))
    assert any(trial.run_id in str(p) for p in stored)


def test_ui_stops_its_server_on_sigterm(ui_server):
    proc = ui_server["proc"]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 15
    assert ui_server["spawned"]  # the mlflow server (and its workers) ran as our children
    while time.monotonic() < deadline and any(alive(p) for p in ui_server["spawned"]):
        time.sleep(0.2)
    assert not any(alive(p) for p in ui_server["spawned"])
    assert "MLflow UI: http://127.0.0.1:" in ui_server["log"].read_text()
