"""A sweep never hangs on resources, re-runs under its name after an early failure,
keeps credentials out of every file it or Ray writes, and reads relative paths
against the config file's folder.

One real local Ray (1 CPU) backs the sweep test: an actor holds the CPU, so the
sweep's trial cannot be placed although the cluster's totals fit it; the
placement watchdog must stop the sweep, and after the CPU is freed the same
command under the same name must run to the end. Fake AWS credentials sit in the
environment the whole time (the driver's and, through it, every Ray process's);
afterwards every file under Ray's temp dir, the MLflow store, the artifacts and
the results folder is searched for them.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import yaml
from test_sweep import make_synth, mlflow_runs, write_space

from orchestration.sweep.run import run_sweep
from leak_scan import files_holding
from orchestration.sweep.prepare import SweepError, SweepOptions

pytestmark = pytest.mark.slow

# Drawn per run, never literal: Ray's temp dir also holds uploaded copies of this file.
SECRET_ID = "AKIA" + uuid.uuid4().hex[:16].upper()
SECRET = "rrn-leak-check-" + uuid.uuid4().hex


def test_unplaceable_sweep_stops_reruns_under_its_name_and_leaks_no_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    for name in ("RRN_TRACKING_URI", "RRN_STORAGE_PATH", "RRN_STORAGE_ENDPOINT_URL",
                 "MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RRN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SECRET_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    synth = make_synth(tmp_path / "synth")
    space = write_space(tmp_path, "guard", synth, grid={"method.name": ["supervised"]},
                        scaling={"num_workers": 1, "resources_per_worker": {"CPU": 1}})
    temp_dir = Path(os.environ["RAY_TMPDIR"])

    assert not ray.is_initialized()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=str(temp_dir))
    try:
        @ray.remote(num_cpus=1)
        class Hog:
            def ping(self) -> int:
                return 1

        hog = Hog.remote()
        ray.get(hog.ping.remote())
        with pytest.raises(SweepError, match="no trial could be placed for 3 s"):
            run_sweep(space, SweepOptions(placement_timeout=3), say=lambda m: None)
        ray.kill(hog)

        said: list[str] = []
        outcome = run_sweep(space, SweepOptions(placement_timeout=120), say=said.append)
        assert outcome.status == "FINISHED", [t.error for t in outcome.trials]
        assert any("finished no trial" in m for m in said), said
        parent, children = mlflow_runs(tmp_path, "guard")   # exactly one live parent run
        assert len(children) == 1
    finally:
        ray.shutdown()

    needles = [SECRET_ID.encode(), SECRET.encode()]
    leaked = files_holding(temp_dir, needles) + files_holding(tmp_path, needles)
    assert not leaked, "credentials written to:\n" + "\n".join(leaked)


def test_relative_data_root_resolves_against_the_config_folder(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from rrn.cli import app
    from rrn_core.config import load_config

    make_synth(tmp_path / "data")
    (tmp_path / "configs").mkdir()
    cfg = tmp_path / "configs" / "run.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"root": "../data", "num_classes": 4}}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_config(cfg).data.root == str(tmp_path / "data")
    # on the command line, relative to the current directory
    assert load_config(cfg, {"data.root": "here"}).data.root == str(elsewhere / "here")
    monkeypatch.chdir(tmp_path)
    for target in ("data", str(cfg)):     # a relative root folder, and a config with one
        result = CliRunner().invoke(app, ["data", "check", target])
        assert result.exit_code == 0, result.output
        assert "OK" in result.output
