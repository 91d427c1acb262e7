"""The sweep report read back from a real MLflow store: summary table, label-efficiency
plot, summary artifacts, `rrn report`, and `rrn ui` (a real `mlflow server`), which
also serves as the HTTP tracking server for the one over-the-wire test."""

from __future__ import annotations

import json
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

from rrn import report_commands
from orchestration.display_names import distinct_digits, run_name
from orchestration.report.table import find_sweep_run, label_efficiency_data, summarize_run
from orchestration.tracking.store import resolve_tracking_uri
from orchestration.report.plots import label_efficiency_figure, label_efficiency_plot
from orchestration.tracking.store import resolve_tracking_uri
from orchestration.tracking.sweep_run import SweepTracker
from orchestration.tracking.trial_run import TrialTracker
from rrn_core.evaluate import EvalResult, PredictionSample


def summarize(tracking_uri: str, experiment: str, sweep_name: str):
    """One row per trial of the newest sweep named `sweep_name` (what `rrn report` reads)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))
    return summarize_run(client, find_sweep_run(client, experiment, sweep_name))

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
        "search": {"optim.momentum": {"type": "uniform", "low": 0.1, "high": 0.9}},
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
def started(store) -> dict:
    """The sweep's parent run, opened before `rrn ui` starts so the UI can link to it."""
    space = write_space(store["root"] / "space", SWEEP)
    sweep = SweepTracker(store["uri"], EXPERIMENT, SWEEP)
    parent_id = sweep.start(space, git_commit="c0ffee", dataset_hash="h",
                            split_hashes={}, resume=False)
    return {"space": space, "sweep": sweep, "parent_id": parent_id}


@pytest.fixture(scope="module")
def ui_launch(store, started):
    """`rrn ui` on the store, launched as a user would (a real `mlflow server`).

    Launched before the trials are logged: the server's start-up (~10 s of imports)
    overlaps the filling instead of adding to the module's run time.
    """
    port = free_port()
    log = store["root"] / "ui.log"
    code = ("import typer; from rrn import report_commands; app = typer.Typer(); "
            "report_commands.register(app); app()")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "ui", SWEEP, "--tracking-uri", store["uri"],
         "--experiment", EXPERIMENT, "--port", str(port)],
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


#: (grid point index, sample) of the trial whose last evaluation predicts one class.
COLLAPSED = (1, 0)


@pytest.fixture(scope="module")
def filled(store, started, ui_launch):
    """A finished sweep of 16 trials (2 methods x 2 ratios x 2 seeds x 2 samples).

    Each trial is evaluated twice with random confusion matrices, so its best and final
    mIoU differ in general; one trial dies before its first evaluation, one ends
    collapsed (every pixel predicted as background).
    """
    root, uri = store["root"], store["uri"]
    space, sweep, parent_id = started["space"], started["sweep"], started["parent_id"]
    rng = np.random.default_rng(0)
    expected: dict[str, dict] = {}
    orphan = None
    for gi, point in enumerate(space.grid_points()):
        for s in range(SAMPLES):
            w = float(rng.uniform(0.1, 0.9))
            cfg = space.trial_config(point, {"optim.momentum": w})
            trial_id = f"trial_{gi:02d}_{s}"
            name = run_name(cfg.method.name, point, {"optim.momentum": w})
            tracker = TrialTracker(uri, EXPERIMENT, parent_id, trial_id, name, cfg)
            if gi == 0 and s == 1:
                orphan = tracker  # dies before evaluating: never closed
                continue
            values = []
            for step in (2, 4):
                a, b = (int(v) for v in rng.integers(1, 60, size=2))
                res = result(a, b)
                if (gi, s) == COLLAPSED and step == 4:
                    res = EvalResult(confusion=np.array([[a, 0], [b, 0]]), class_names=["bg", "fg"])
                tracker.on_evaluation(step, res, None)
                values.append(res.miou)
            tracker.close()
            expected[trial_id] = {"method": cfg.method.name, "ratio": cfg.data.label_ratio,
                                  "seed": cfg.runtime.seed, "w": w, "best": max(values),
                                  "final": values[-1], "run_id": tracker.run_id, "name": name,
                                  "collapsed": (gi, s) == COLLAPSED}
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
        assert row["optim.momentum"] == pytest.approx(want["w"])
        assert row["miou_best"] == pytest.approx(want["best"])
        assert row["miou_final"] == pytest.approx(want["final"])
        assert row["status"] == "FINISHED" and row["evals"] == 2 and row["last_step"] == 4
        assert row["run_name"] == want["name"] and row["collapsed"] == want["collapsed"]
        assert row["IoU/bg"] >= 0.0
    assert (df["miou_best"] != df["miou_final"]).any()  # the data can tell best from final
    assert str(df["seed"].dtype) == "Int64" and str(df["evals"].dtype) == "Int64"
    assert df["collapsed"].sum() == 1


def expected_curves(expected: dict[str, dict]) -> dict[tuple[str, float], list[float]]:
    """Independent of report.py: per (method, ratio, seed) the trial with the best objective
    (the best evaluation), and of it the final evaluation (what comparisons use), per seed."""
    best: dict[tuple, dict] = {}
    for t in expected.values():
        key = (t["method"], t["ratio"], t["seed"])
        if key not in best or t["best"] > best[key]["best"]:
            best[key] = t
    curves: dict[tuple[str, float], list[float]] = defaultdict(list)
    for (method, ratio, _seed), trial in best.items():
        curves[(method, ratio)].append(trial["final"])
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
    for line in lines:   # at the sweep's ratios, each method dodged by one constant factor
        factors = np.asarray(line.get_xdata(), float) / np.asarray(RATIOS)
        assert np.allclose(factors, factors[0]) and abs(factors[0] - 1) < 0.05

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
    assert cfg["optim"]["momentum"] == pytest.approx(top["w"])
    parent = client.get_run(pid)
    assert parent.data.metrics["best/val/mIoU"] == pytest.approx(top["best"])
    assert parent.data.tags["rrn.best_run"] == top["run_id"]
    csv = pd.read_csv(client.download_artifacts(pid, "summary/summary.csv", str(tmp_path)))
    assert len(csv) == len(METHODS) * len(RATIOS) * len(SEEDS) * SAMPLES


@pytest.fixture(scope="module")
def cli_app() -> typer.Typer:
    app = typer.Typer()
    report_commands.register(app)
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
    assert "failed" in res.output and "momentum" in res.output
    assert f"table: {out / 'summary.csv'}" in res.output
    assert f"plot:  {out / 'label_efficiency.png'}" in res.output
    assert f"page:  {out / 'summary.html'}" in res.output
    assert len(pd.read_csv(out / "summary.csv")) == 16
    with Image.open(out / "label_efficiency.png") as img:
        assert img.format == "PNG"

    monkeypatch.setenv("RRN_HOME", str(tmp_path / "home"))
    res = runner.invoke(cli_app, ["report", SWEEP, "--tracking-uri", filled["uri"],
                                  "--experiment", EXPERIMENT])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "home" / "reports" / SWEEP / "summary.csv").is_file()


def test_report_fits_80_columns_and_never_cuts_the_searched_values(filled, cli_app, tmp_path):
    res = CliRunner().invoke(cli_app, ["report", SWEEP, "--tracking-uri", filled["uri"],
                                       "--experiment", EXPERIMENT, "--out", str(tmp_path)],
                             env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(len(line) for line in lines if not line.startswith(("table:", "page:", "plot:"))) \
        <= 80, res.output
    assert "…" not in res.output
    df = summarize(filled["uri"], EXPERIMENT, SWEEP)
    digits = distinct_digits(df["optim.momentum"])
    shown = {f"{w:.{digits}g}" for w in df["optim.momentum"]}
    assert len(shown) == len(df)                          # every trial's value tells it apart
    for text in shown:
        assert text in res.output, text
    assert "by method and label amount" in res.output
    assert "COLLAPSED" in res.output and "predicted one class" in res.output
    assert "1/4" in res.output and "1/2" in res.output    # ratios as fractions


def test_report_formats_csv_json_markdown(filled, cli_app, tmp_path):
    import io
    import json

    runner = CliRunner()
    args = ["report", SWEEP, "--tracking-uri", filled["uri"], "--experiment", EXPERIMENT,
            "--out", str(tmp_path)]
    res = runner.invoke(cli_app, [*args, "--format", "csv"])
    assert res.exit_code == 0, res.output
    csv = pd.read_csv(io.StringIO(res.stdout))
    assert len(csv) == 16 and "label_count" not in csv      # no all-empty column
    assert csv["seed"].dtype == np.int64 and csv["evals"].dtype == np.int64
    assert csv["collapsed"].sum() == 1
    assert "table:" not in res.stdout                        # paths go to stderr

    res = runner.invoke(cli_app, [*args, "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["sweep"] == SWEEP and len(doc["trials"]) == 16 and doc["classes"] == ["bg", "fg"]
    assert {g["n"] for g in doc["groups"]} == {len(SEEDS)}
    assert len(doc["groups"]) == len(METHODS) * len(RATIOS)
    assert all(isinstance(t["seed"], int) for t in doc["trials"])

    res = runner.invoke(cli_app, [*args, "--format", "markdown"])
    assert res.exit_code == 0, res.output
    assert "## By method and label amount" in res.stdout and "## Trials" in res.stdout
    assert "| method | ratio | mIoU | n | impr. | TFLOP | best trial |" in res.stdout

    res = runner.invoke(cli_app, [*args, "--format", "yaml"])
    assert res.exit_code == 2


def test_parent_run_summary_page_and_description(filled, tmp_path):
    client = MlflowClient(tracking_uri=filled["uri"])
    pid = filled["parent_id"]
    files = {a.path for a in client.list_artifacts(pid, "summary")}
    assert {"summary/class_iou.png", "summary/summary.html"} <= files
    page = Path(client.download_artifacts(pid, "summary/summary.html", str(tmp_path))).read_text()
    assert "<style>" in page and page.count("data:image/png;base64,") == 2  # self-contained
    assert "By method and label amount" in page and 'class="collapsed"' in page
    for t in filled["expected"].values():
        assert t["name"] in page
    parent = client.get_run(pid)
    note = parent.data.tags["mlflow.note.content"]
    assert "| method | ratio | mIoU | n | impr. | TFLOP | best trial |" in note
    assert parent.data.tags["rrn.collapsed_trials"] == "1"


def test_group_table_and_figure_say_n_and_draw_the_ceiling():
    rows = []
    for method, ratio, seed, value in [("supervised", 0.125, 0, 0.3), ("supervised", 0.125, 1, 0.4),
                                       ("supervised", 1.0, 0, 0.7), ("rrn", 0.125, 0, 0.5)]:
        rows.append({"trial_id": f"{method}{ratio}{seed}", "run_name": method, "method": method,
                     "label_ratio": ratio, "label_count": np.nan, "seed": seed,
                     "objective": value, "miou_best": value, "miou_final": value,
                     "collapsed": False, "run_id": f"r{len(rows)}"})
    df = pd.DataFrame(rows)
    df.attrs.update(sweep="mini", mode="max")
    data = label_efficiency_data(df)
    sup = data[(data["method"] == "supervised") & (data["x"] == 0.125)].iloc[0]
    assert (sup["n"], sup["mean"], sup["best"]) == (2, pytest.approx(0.35), 0.4)
    fig = label_efficiency_figure(df)
    ax = fig.axes[0]
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert "supervised, all labels (n=1)" in labels
    assert any(t.get_text() == "n=2" for t in ax.texts)
    assert "mini" in ax.get_title() and "95 % t interval" in ax.get_ylabel()
    # every seed is a dot: the two supervised seeds at 1/8 are drawn where their values are
    dots = [(round(float(x), 2), float(y)) for c in ax.collections for x, y in c.get_offsets()]
    assert (0.12, 0.3) in dots and (0.12, 0.4) in dots
    # 0.3 and 0.4: a 2-seed t interval of 0.35 ± 0.64 reaches below 0; the axis stays in mIoU's range
    assert ax.get_ylim()[0] >= 0.0 and ax.get_ylim()[1] <= 1.0 and "cut at 0 and 1" in ax.get_ylabel()
    one_seed = label_efficiency_figure(df[df["seed"] == 0])
    assert "interval" in one_seed.axes[0].get_ylabel() and "no interval" in one_seed.axes[0].get_ylabel()
    assert "cut at" not in one_seed.axes[0].get_ylabel()


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
    """The launched UI once it answers and has printed its links (the store is filled)."""
    proc = ui_launch["proc"]
    if not report_commands.wait_http_ok(ui_launch["url"] + "/health", 120, proc):
        pytest.fail(f"rrn ui did not start:\n{ui_launch['log'].read_text()[-3000:]}")
    deadline = time.monotonic() + 30
    while "parent run:" not in ui_launch["log"].read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
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
    cfg = space.trial_config(point, {"optim.momentum": 0.5})
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


def test_ui_prints_the_sweeps_links(ui_server, filled):
    from orchestration.tracking.ui_links import view_key

    client = MlflowClient(tracking_uri=filled["uri"])
    exp_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    log = ui_server["log"].read_text()
    base = ui_server["url"]
    assert (f"sweep {SWEEP}, its trials: {base}/#/experiments/{exp_id}/runs?"
            f"workflowType=machine_learning&viewStateShareKey={view_key(SWEEP)}") in log
    assert (f"sweep {SWEEP}, parent run:  {base}/#/experiments/{exp_id}/runs/"
            f"{filled['parent_id']}?workflowType=machine_learning") in log
    # one light server: `rrn ui`, `mlflow server` and its one uvicorn worker, no job runners
    names = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
             for pid in descendants(ui_server["proc"].pid) if alive(pid)]
    assert len(names) <= 2, names
    assert not any(b"huey" in n for n in names)


def browser() -> str | None:
    """Debian's headless Chromium (scripts/setup.sh installs it), or another Chromium."""
    import shutil

    for name in ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    path = Path("/usr/lib/chromium/chromium-headless-shell")
    return str(path) if path.is_file() else None


def rendered_text(url: str, tmp_path: Path) -> str:
    """The page's text after the single-page app has rendered (Chromium --dump-dom)."""
    import re

    exe = browser()
    if exe is None:
        pytest.skip(reason="no headless Chromium here (scripts/setup.sh installs Debian's "
                    "chromium-headless-shell with apt-get; it could not here)")
    cmd = [exe, "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=2400,2400",
           "--virtual-time-budget=20000", "--dump-dom", url]
    if not exe.endswith("chromium-headless-shell"):
        cmd.insert(1, "--headless")
    done = subprocess.run(cmd, capture_output=True, timeout=180, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = re.sub(r"<(style|script)\b.*?</\1>", " ", done.stdout, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def test_browser_shows_the_sweep_in_the_runs_view(ui_server, filled, tmp_path):
    """Headless Chromium on the link `rrn ui` printed: the model-training runs view with
    the parent run and every trial by name, and the objective as a column."""
    log = ui_server["log"].read_text()
    link = next(line.split(": ", 1)[1].strip() for line in log.splitlines()
                if f"sweep {SWEEP}, its trials:" in line)
    text = rendered_text(link, tmp_path)
    assert "Model training" in text and "Runs" in text
    assert f" {SWEEP} " in text                                   # the parent run
    missing = [t["name"] for t in filled["expected"].values() if t["name"] not in text]
    assert not missing, f"trials not in the runs view: {missing}\n{text[:3000]}"
    assert "val/mIoU" in text and "rrn.collapsed" in text, text[:2500]  # the shared view


def test_ui_stops_its_server_on_ctrl_c(ui_server):
    proc = ui_server["proc"]
    proc.send_signal(signal.SIGINT)   # what Ctrl-C sends (SIGTERM takes the same path)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 15
    assert ui_server["spawned"]  # the mlflow server (and its workers) ran as our children
    while time.monotonic() < deadline and any(alive(p) for p in ui_server["spawned"]):
        time.sleep(0.2)
    assert not any(alive(p) for p in ui_server["spawned"])
    assert proc.returncode == 0
    log = ui_server["log"].read_text()
    assert "MLflow UI: http://127.0.0.1:" in log and "MLflow UI stopped." in log


def test_report_json_carries_verdicts_intervals_and_convergence(filled, cli_app, tmp_path):
    res = CliRunner().invoke(cli_app, ["report", SWEEP, "--tracking-uri", filled["uri"],
                                       "--experiment", EXPERIMENT, "--out", str(tmp_path),
                                       "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    evidence = doc["evidence"]
    assert evidence["metric"] == "miou_final"
    # 2 methods at each of 2 ratios: one pair per ratio, rrn - supervised (the table's order)
    pairs = {(c["method"], c["baseline"], c["amount"]) for c in evidence["comparisons"]}
    assert pairs == {("rrn", "supervised", r) for r in RATIOS}
    for c in evidence["comparisons"]:
        d = c["difference"]
        assert d["verdict"] in ("ahead", "behind", "no difference detectable", "no verdict")
        assert d["interval"] == "t" and d["n"] == len(SEEDS)
        assert d["low"] <= d["mean"] <= d["high"]
    # two evaluations per trial: too few for a convergence verdict, and the report says so
    assert all(t["still_improving"] is None for t in doc["trials"])
    assert evidence["convergence"]["unknown"] == len(doc["trials"])
    assert "without a convergence verdict" in evidence["convergence"]["line"]
    assert {"ci", "improving", "tflop"} <= set(doc["groups"][0])
