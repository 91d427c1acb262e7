"""Cluster submission: request building, then the whole path on a real local Ray head.

The head is started once per module (ray_head.py: `ray start --head --block` on
free ports, its temp dir under $RAY_TMPDIR) and ended by signalling the process
group this test started, never with `ray stop`.
Submitted jobs run the hidden `validate` entrypoint: it exercises the working_dir
upload, `rrn` being importable on the cluster and environment variables
arriving, in seconds, without training anything. Every submission first runs the
cluster check job (orchestration/cluster/probe.py; a cluster that fails it is a row of
test_bad_input.py); fake AWS credentials sit in the
submitting environment and must appear in no file under the head's Ray temp dir.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from rrn import jobs_commands
from orchestration.tracking.gitinfo import git_state
from orchestration.cluster.jobs import auth_headers, resolve_address
from orchestration.cluster.job_request import EXCLUDES, JobsError, build_request, parse_env, submission_id
from orchestration.space import SpaceError, load_space
from leak_scan import files_holding
from ray_head import free_port as _free_port
from ray_head import ray_head as start_head

REPO = Path(__file__).resolve().parents[2]
JOB_SPACE = "tests/orchestration/fixtures/job_space.yaml"
# Drawn per run, never literal: the head's temp dir holds uploaded copies of this file.
SECRET = "rrn-job-secret-" + uuid.uuid4().hex
SECRET_ID = "AKIA" + uuid.uuid4().hex[:16].upper()
TOKEN = secrets.token_hex(32)          # the test cluster runs with Ray token auth on
WIDE = {"COLUMNS": "200"}
AUTHED = {**WIDE, "RAY_AUTH_TOKEN": TOKEN}


def _app() -> typer.Typer:
    app = typer.Typer()
    jobs_commands.register(app)
    return app


def _invoke(*args: str, env: dict[str, str] | None = None):
    """Run the CLI; on the test cluster with the auth token in the environment."""
    return CliRunner().invoke(_app(), list(args), env=env or AUTHED)


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    """A throwaway working directory holding a space and its base config."""
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "tiny.yaml").write_text((REPO / "tests/orchestration/fixtures/tiny_config.yaml").read_text())
    space = yaml.safe_load((REPO / JOB_SPACE).read_text())
    space["base_config"] = "tiny.yaml"
    (tmp_path / "spaces" / "s.yaml").write_text(yaml.safe_dump(space))
    return tmp_path


# ------------------------------------------------------------------ without a cluster

def test_request_carries_entrypoint_env_and_metadata(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SECRET_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    req = build_request("spaces/s.yaml", working_dir=workdir, tracking_uri="http://mlflow:5000",
                        storage_path="s3://bucket/rrn", endpoint_url="http://minio:9000",
                        env={"EXTRA": "1"}, commit="c0ffee", dirty=False)
    assert req.entrypoint == "python -m rrn sweep spaces/s.yaml"
    assert req.submission_id == submission_id(load_space(workdir / "spaces/s.yaml"), "c0ffee")
    assert req.submission_id.startswith("rrn-job-plumbing-") and len(req.submission_id) == len("rrn-job-plumbing-") + 10
    assert req.runtime_env["working_dir"] == str(workdir) and req.runtime_env["excludes"] == EXCLUDES
    env = req.runtime_env["env_vars"]
    assert env["RRN_TRACKING_URI"] == env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["RRN_STORAGE_PATH"] == "s3://bucket/rrn"
    assert env["AWS_ENDPOINT_URL"] == env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["RAY_USAGE_STATS_ENABLED"] == "0" and env["EXTRA"] == "1" and env["AWS_REGION"] == "eu-west-3"
    assert SECRET not in repr(req.runtime_env) and SECRET_ID not in repr(req.runtime_env)   # nodes' env only
    assert req.metadata == {"git_commit": "c0ffee", "git_dirty": "false", "space": "job-plumbing",
                            "space_file": "spaces/s.yaml", "submitted_by": "rrn"}
    assert req.entrypoint_num_cpus == 1
    assert env["RRN_HOME"] == "~/rrn-home"          # not inside the job's temporary working_dir copy
    validate = build_request("spaces/s.yaml", working_dir=workdir, commit="c0ffee", dirty=False,
                             command="validate")
    assert validate.entrypoint == "python -m rrn space validate spaces/s.yaml"


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"env": {"AWS_SECRET_ACCESS_KEY": "x"}}, "--env AWS_SECRET_ACCESS_KEY: names a secret"),
    ({"env": {"MLFLOW_TRACKING_TOKEN": "x"}}, "--env MLFLOW_TRACKING_TOKEN: names a secret"),
    ({"env": {"DB": "postgresql://u:hunter2@db/m"}}, "--env DB: holds a password"),
    ({"tracking_uri": "http://u:hunter2@mlflow:5000"}, "--tracking-uri: holds a password"),
])
def test_request_refuses_secrets_for_the_runtime_env(workdir: Path, kwargs: dict, named: str) -> None:
    with pytest.raises(JobsError, match="never travel in a Ray runtime env") as caught:
        build_request("spaces/s.yaml", working_dir=workdir, commit="c", dirty=False, **kwargs)
    assert named in str(caught.value) and "hunter2" not in str(caught.value)


def test_submission_id_is_deterministic_and_content_addressed(workdir: Path) -> None:
    space = workdir / "spaces" / "s.yaml"
    first = submission_id(load_space(space), "abc")
    assert first == submission_id(load_space(space), "abc")
    assert first != submission_id(load_space(space), "def")              # another commit
    (workdir / "spaces" / "tiny.yaml").write_text((workdir / "spaces" / "tiny.yaml").read_text() + "\n# edit\n")
    assert first != submission_id(load_space(space), "abc")              # another base config
    space.write_text(space.read_text().replace("num_samples: 2", "num_samples: 3"))
    assert submission_id(load_space(space), "abc") != first                # another space file


def test_request_rejects_bad_input_before_any_network(workdir: Path, tmp_path_factory: pytest.TempPathFactory,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    with pytest.raises(JobsError, match="inside the uploaded working directory"):
        build_request("spaces/s.yaml", working_dir=elsewhere, commit="x", dirty=False)
    (workdir / "spaces" / "bad.yaml").write_text("name: bad\nbase_config: tiny.yaml\nfixed: {optim.lr: -1}\n")
    with pytest.raises(SpaceError, match=r"fixed\.optim\.lr=-1"):
        build_request("spaces/bad.yaml", working_dir=workdir, commit="x", dirty=False)
    with pytest.raises(JobsError, match="--env 'NOEQUALS'"):
        parse_env(["A=1", "NOEQUALS"])
    assert parse_env(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}


def test_address_and_auth_header_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_address() == "http://127.0.0.1:8265" and auth_headers() is None
    # Ray's own token file, as `ray get-auth-token --generate` writes it
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home\n")
    assert auth_headers() == {"Authorization": "Bearer from-home"}
    (tmp_path / "tok").write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "tok"))
    assert auth_headers() == {"Authorization": "Bearer from-path"}
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(JobsError, match="RAY_AUTH_TOKEN_PATH=.*missing: cannot read"):
        auth_headers()
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    assert resolve_address() == "http://head:8265" and resolve_address("http://x:1") == "http://x:1"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "tkn")
    assert auth_headers() == {"Authorization": "Bearer tkn"}


def test_cli_dry_run_and_errors_need_no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    dead = f"http://127.0.0.1:{_free_port()}"
    dry = _invoke("submit", JOB_SPACE, "--address", dead, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "rrn sweep tests/orchestration/fixtures/job_space.yaml" in dry.stdout and SECRET not in dry.output
    assert "AWS_SECRET_ACCESS_KEY" not in dry.stdout
    unreachable = _invoke("submit", JOB_SPACE, "--address", dead)
    assert unreachable.exit_code == 2 and "cannot reach the Ray dashboard" in unreachable.stderr
    bad_env = _invoke("submit", JOB_SPACE, "--env", "1BAD=x", "--address", dead)
    assert bad_env.exit_code == 2 and "1BAD=x" in bad_env.stderr


# ------------------------------------------------------------------ on a real Ray head


def _head_temp_dir() -> Path:
    return Path(os.environ["RAY_TMPDIR"]) / f"jobs{os.getpid()}"   # short: Ray puts sockets here


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Ray head with the dashboard (jobs API) on free 127.0.0.1 ports and
    token auth on (with its token in the environment, not in ~/.ray)."""
    log = tmp_path_factory.mktemp("ray-head") / "ray-start.log"
    with start_head(_head_temp_dir(), log, token=TOKEN) as head:
        yield head.dashboard


@pytest.fixture(scope="module")
def client(ray_head: str):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(ray_head, headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture(scope="module")
def validate_job(ray_head: str, client, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object]:
    """`rrn submit --wait` of the plumbing space; returns (submission id, CLI result)."""
    remote_home = tmp_path_factory.mktemp("remote-home")
    patch = pytest.MonkeyPatch()
    patch.chdir(REPO)
    patch.setenv("AWS_ACCESS_KEY_ID", SECRET_ID)
    patch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    try:
        sid = submission_id(load_space(REPO / JOB_SPACE), git_state(REPO).commit)
        result = _invoke("submit", JOB_SPACE, "--address", ray_head, "--entrypoint-command", "validate",
                         "--tracking-uri", "http://mlflow.test:5000", "--env", f"RRN_HOME={remote_home}", "--wait")
    finally:
        patch.undo()
    result.remote_home = remote_home  # type: ignore[attr-defined]
    return sid, result


@pytest.mark.slow
def test_submit_runs_on_the_cluster_with_env_and_code(validate_job, client) -> None:
    sid, result = validate_job
    assert result.exit_code == 0, result.output
    assert f"submitted {sid}" in result.stdout
    assert SECRET not in result.output
    info = client.get_job_info(sid)
    assert str(info.status) == "SUCCEEDED"
    assert info.entrypoint == f"python -m rrn space validate {JOB_SPACE}"
    assert info.metadata["space"] == "job-plumbing" and info.metadata["git_commit"] == (git_state(REPO).commit or "unknown")
    assert not any("AWS_" in k and "REGION" not in k for k in info.runtime_env["env_vars"])  # nodes' env only
    jobs = [j.submission_id or "" for j in client.list_jobs()]
    assert not any("-check-" in j for j in jobs), jobs          # the check job ran and was deleted
    logs = client.get_job_logs(sid)
    # The job printed what it resolved from the environment we sent ...
    assert "tracking   http://mlflow.test:5000" in logs
    assert f"storage    {result.remote_home}/results" in logs
    assert f"OK {JOB_SPACE}: 4 trial(s)" in logs
    # ... from the uploaded copy of the repository, not from this checkout.
    base_line = next(line for line in logs.splitlines() if line.startswith("base "))
    assert "_ray_pkg_" in base_line and str(REPO) not in base_line
    assert "OK tests/orchestration/fixtures/job_space.yaml" in result.stdout   # --wait streamed the logs


@pytest.mark.slow
def test_resubmit_is_idempotent_then_counts(validate_job, ray_head: str, client, monkeypatch) -> None:
    sid, _ = validate_job
    monkeypatch.chdir(REPO)
    again = _invoke("submit", JOB_SPACE, "--address", ray_head, "--entrypoint-command", "validate")
    assert again.exit_code == 0, again.output
    assert f"job {sid} for this space and commit already ran (SUCCEEDED)" in again.stdout
    assert [j.submission_id for j in client.list_jobs()].count(sid) == 1
    rerun = _invoke("submit", JOB_SPACE, "--address", ray_head, "--entrypoint-command", "validate",
                    "--resubmit", "--wait")
    assert rerun.exit_code == 0, rerun.output
    assert f"submitted {sid}-2" in rerun.stdout
    assert str(client.get_job_status(f"{sid}-2")) == "SUCCEEDED"


@pytest.mark.slow
def test_status_logs_list_cli(validate_job, ray_head: str) -> None:
    sid, _ = validate_job
    status = _invoke("jobs", "status", sid, "--address", ray_head)
    assert status.exit_code == 0, status.output
    assert "SUCCEEDED" in status.stdout and "space=job-plumbing" in status.stdout
    assert SECRET not in status.output and "AWS_SECRET_ACCESS_KEY" not in status.stdout
    logs = _invoke("jobs", "logs", sid, "--address", ray_head)
    assert logs.exit_code == 0 and f"OK {JOB_SPACE}: 4 trial(s)" in logs.stdout
    followed = _invoke("jobs", "logs", sid, "--follow", "--address", ray_head)
    assert followed.exit_code == 0 and f"OK {JOB_SPACE}" in followed.stdout
    listed = _invoke("jobs", "list", "--address", ray_head)
    assert listed.exit_code == 0 and sid in listed.stdout and "job-plumbing" in listed.stdout
    missing = _invoke("jobs", "status", "rrn-no-such-job", "--address", ray_head)
    assert missing.exit_code == 2 and "no job 'rrn-no-such-job'" in missing.stderr
    no_token = _invoke("jobs", "list", "--address", ray_head, env={**WIDE, "RAY_AUTH_TOKEN": ""})
    assert no_token.exit_code == 2 and "requires token authentication (401)" in no_token.stderr


@pytest.mark.slow
def test_stop_a_running_job(ray_head: str, client) -> None:
    sid = "rrn-test-sleeper"
    client.submit_job(entrypoint="python -c \"import time; print('sleeping', flush=True); time.sleep(300)\"",
                      submission_id=sid)
    deadline = time.monotonic() + 60
    while str(client.get_job_status(sid)) != "RUNNING":
        assert time.monotonic() < deadline, f"job never started: {client.get_job_info(sid)}"
        time.sleep(0.5)
    stopped = _invoke("jobs", "stop", sid, "--address", ray_head)
    assert stopped.exit_code == 0, stopped.output
    assert f"stop requested for {sid}" in stopped.stdout and f"job {sid}: STOPPED" in stopped.stdout
    assert str(client.get_job_status(sid)) == "STOPPED"
    assert "was not running" in _invoke("jobs", "stop", sid, "--address", ray_head).stdout


@pytest.mark.slow
def test_invalid_space_submits_nothing(ray_head: str, client, tmp_path: Path) -> None:
    before = len(client.list_jobs())
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: bad\nbase_config: {REPO / 'tests/orchestration/fixtures/tiny_config.yaml'}\n"
                   "search:\n  runtime.seed: {type: int, low: 0, high: 3}\n")
    result = _invoke("submit", str(bad), "--address", ray_head)
    assert result.exit_code == 2 and "search.runtime.seed" in result.stderr and "grid-only" in result.stderr
    assert len(client.list_jobs()) == before


@pytest.mark.slow
def test_no_secret_in_any_file_under_the_head_temp_dir(validate_job) -> None:
    """The submitting shell held AWS keys; after the check job and the job itself ran,
    Ray's whole temp dir (runtime_env_agent.log, dashboard logs, job logs, uploaded
    packages) holds neither."""
    hits = files_holding(_head_temp_dir(), [SECRET.encode(), SECRET_ID.encode()])
    assert not hits, "credentials written to:\n" + "\n".join(hits)
    assert any(_head_temp_dir().rglob("runtime_env_agent.log")), "Ray wrote no runtime env log: wrong folder?"


def test_the_cluster_probe_names_what_is_missing() -> None:
    from orchestration.cluster.probe import REQUIRED, missing_modules

    assert missing_modules(("json", "rrn_no_such_pkg", "rrn_no_such.sub")) == ["rrn_no_such_pkg", "rrn_no_such.sub"]
    assert missing_modules(REQUIRED) == []          # this environment runs rrn
