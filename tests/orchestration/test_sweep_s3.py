"""A sweep whose results live in S3 (moto's server over HTTP on 127.0.0.1).

The endpoint is given only in the space file (AWS_ENDPOINT_URL is unset): if it
were lost on the way to Ray's storage layer or to a trial, requests would leave
for AWS and fail. `run_sweep` starts its own local Ray here (after the fixture set
the dummy credentials), which also covers the embedded-Ray path.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from s3_server import DUMMY_CREDENTIALS
from test_sweep import make_synth, mlflow_runs, write_space

from orchestration.sweep.run import run_sweep
from orchestration.sweep.prepare import SweepError, SweepOptions, prepare_sweep

pytestmark = pytest.mark.slow


def test_sweep_checkpoints_land_in_the_bucket(tmp_path: Path, s3_endpoint: tuple[str, str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    import ray
    import torch

    endpoint, bucket = s3_endpoint
    for name in ("RRN_TRACKING_URI", "RRN_STORAGE_PATH", "RRN_STORAGE_ENDPOINT_URL", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RRN_HOME", str(tmp_path / "home"))
    synth = make_synth(tmp_path / "synth")
    path = write_space(tmp_path, "s3sweep", synth, grid={"method.name": ["supervised", "cps"]},
                       storage={"path": f"s3://{bucket}/sweeps", "endpoint_url": endpoint})

    assert not ray.is_initialized()
    outcome = run_sweep(path, SweepOptions(), say=lambda m: None)
    assert not ray.is_initialized(), "run_sweep must stop the Ray it started"
    assert outcome.status == "FINISHED", [t.error for t in outcome.trials]
    assert outcome.experiment_path == f"s3://{bucket}/sweeps/s3sweep"

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="sweeps/s3sweep/")["Contents"]]
    _, children = mlflow_runs(tmp_path, "s3sweep")
    tags = {c.data.tags["rrn.trial_id"]: c.data.tags["rrn.checkpoint"] for c in children}
    for trial in outcome.trials:
        assert trial.fully_trained and trial.steps == [2, 4]
        pattern = re.compile(rf"sweeps/s3sweep/trial-\d+-{trial.trial_id}/checkpoint_\d+/last\.pt")
        checkpoints = sorted(k for k in keys if pattern.fullmatch(k))
        assert checkpoints, f"no checkpoint object for trial {trial.trial_id} in {keys}"
        state = torch.load(io.BytesIO(s3.get_object(Bucket=bucket, Key=checkpoints[-1])["Body"].read()),
                           map_location="cpu", weights_only=False)
        assert state["step"] == 4
        assert tags[trial.trial_id] == f"s3://{bucket}/{checkpoints[-1].rsplit('/', 1)[0]}"
    assert not (tmp_path / "home" / "results").exists(), "results went to local disk instead of S3"

    secret = DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"].encode()
    leaked = [k for k in keys if secret in s3.get_object(Bucket=bucket, Key=k)["Body"].read()]
    assert not leaked, f"the secret key was written into {leaked}"

    with pytest.raises(SweepError, match="--resume"):
        prepare_sweep(path, SweepOptions(), say=lambda m: None)
