"""Missing or wrong credentials are bad input too: one clear error, exit 2, nothing
submitted or written (the rules of test_bad_input.py, whose world and helpers these
rows reuse).

Two services ask for credentials here, as on a real cluster: a Ray head with token
auth (its Jobs API answers 401 without a token, 403 with a wrong one) and an MLflow
server running MLflow's basic-auth app. `rrn submit` and `rrn jobs list` meet the
first without a token or with a wrong one; `rrn sweep` meets the second with trials
that would lack the password (the sweep's environment is theirs) and must refuse
before it starts Ray or writes a run, a split or a results folder.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from test_bad_input import (SUBMIT, Row, World, argv, case_in_isolation, snapshot, space_tree, world,  # noqa: F401  (fixture)
                            write_yaml)

pytestmark = pytest.mark.slow

#: The head's token: drawn per run, never the session's own (conftest), so that a
#: client falling back on the session token would be refused too.
TOKEN = secrets.token_hex(32)
WRONG = "rrn-wrong-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def authed_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Ray head with token auth on (ray_head.py); yields its dashboard URL."""
    from ray_head import ray_head

    temp_dir = Path(os.environ["RAY_TMPDIR"]) / f"auth{os.getpid()}"   # short: Ray puts sockets here
    with ray_head(temp_dir, tmp_path_factory.mktemp("auth-head") / "ray-start.log", num_cpus=1,
                  token=TOKEN) as head:
        yield head.dashboard


@pytest.fixture(scope="module")
def authed_mlflow() -> Iterator[str]:
    """MLflow's basic-auth app on 127.0.0.1 (the one-machine cluster's MlflowServer on a
    sqlite store), outside the world's folder; yields its URL."""
    from orchestration.cluster.local_services import MlflowServer

    root = Path(tempfile.mkdtemp(prefix="rrn-auth-mlflow-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update({"MLFLOW_AUTH_ADMIN_PASSWORD": "rrn-admin-" + secrets.token_hex(8),
                "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    server = MlflowServer(root, env, f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts"))
    try:
        server.start()
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _tracked_by(url_fixture: str) -> Any:
    """A sweep of the world's good space, tracked on the authenticated server."""
    def setup(w: World, case: Path) -> tuple[list[str], list[str]]:
        tree = space_tree(w.root)
        tree["tracking"] = {"uri": w.dashboard}          # the server's URL, put there by the test
        space = write_yaml(case / "space.yaml", tree)
        return ["sweep", str(space)], ["space.yaml", "tracking.uri", "refused the request (HTTP 401)",
                                       "MLFLOW_TRACKING_PASSWORD"]
    setup.server = url_fixture  # type: ignore[attr-defined]
    return setup


NO_TOKEN = {"RAY_AUTH_TOKEN": "", "RAY_AUTH_TOKEN_PATH": "", "HOME": "{home}"}
WRONG_TOKEN = {"RAY_AUTH_TOKEN": WRONG, "RAY_AUTH_TOKEN_PATH": "", "HOME": "{home}"}

ROWS: list[Row] = [
    Row("submit-without-ray-token", argv(*SUBMIT, "--address", "{dashboard}",
                                         names=["{dashboard}", "requires token authentication (401)",
                                                "RAY_AUTH_TOKEN"]), env=NO_TOKEN),
    Row("submit-wrong-ray-token", argv(*SUBMIT, "--address", "{dashboard}",
                                       names=["{dashboard}", "refused the token from RAY_AUTH_TOKEN (403)"]),
        env=WRONG_TOKEN, absent=[WRONG]),
    Row("jobs-list-without-ray-token", argv("jobs", "list", "--address", "{dashboard}",
                                            names=["{dashboard}", "requires token authentication (401)"]),
        env=NO_TOKEN),
    Row("jobs-list-wrong-ray-token", argv("jobs", "list", "--address", "{dashboard}",
                                          names=["{dashboard}", "refused the token from RAY_AUTH_TOKEN (403)"]),
        env=WRONG_TOKEN, absent=[WRONG]),
    Row("sweep-trials-lack-mlflow-password", _tracked_by("authed_mlflow"),
        env={"MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_PASSWORD": ""},
        extra_names=["MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD are not set"]),
    Row("sweep-wrong-mlflow-password", _tracked_by("authed_mlflow"),
        env={"MLFLOW_TRACKING_USERNAME": "rrn-admin", "MLFLOW_TRACKING_PASSWORD": WRONG},
        extra_names=["user 'rrn-admin'", "was not accepted"], absent=[WRONG]),
]


def jobs_on(dashboard: str) -> list[str]:
    """The head's submission ids, asked with its token (whatever the row's environment)."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(dashboard, headers={"Authorization": f"Bearer {TOKEN}"})
    return sorted(j.submission_id for j in client.list_jobs() if j.submission_id)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_missing_or_wrong_credentials_are_refused(row: Row, world: World, request: pytest.FixtureRequest,
                                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rrn.cli import app

    server = getattr(row.setup, "server", None)
    world.dashboard = request.getfixturevalue(server or "authed_head")
    case = case_in_isolation(world, row, monkeypatch)
    args, names = row.setup(world, case)
    jobs_before = [] if server else jobs_on(world.dashboard)
    for name, value in row.env.items():
        if value:
            monkeypatch.setenv(name, value.format(case=case, home=tmp_path))  # an empty $HOME: no ~/.ray/auth_token
        else:
            monkeypatch.delenv(name, raising=False)

    before = snapshot(world.root)
    result = CliRunner().invoke(app, args)
    after = snapshot(world.root)
    output = result.output
    assert result.exit_code == 2, f"{args}: exit {result.exit_code}\n{output}\n{result.exception!r}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output and "error" in output.lower(), output
    for name in [n.format(dashboard=world.dashboard) for n in names + row.extra_names]:
        assert name in output, f"message does not name {name!r}:\n{output}"
    for secret in row.absent:
        assert secret not in output, f"the message echoes {secret!r}"
    assert sorted(set(after) - set(before)) == [], "written during a refused command"
    assert sorted(k for k in set(after) & set(before) if after[k] != before[k] and after[k][0] != -1) == []
    if not server:
        assert jobs_on(world.dashboard) == jobs_before, "a job (or check job) reached the cluster"
