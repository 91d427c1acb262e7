"""Cluster submission: request building, then the whole path on a real local Ray head.

The head is started once per module (`ray start --head --block` on free ports,
its temp dir under $RAY_TMPDIR) and ended by signalling the process group this
test started, never with `ray stop` (which would end other people's Ray too).
Submitted jobs run the hidden `validate` entrypoint: it exercises the working_dir
upload, `rrn` being importable on the cluster and environment variables
arriving, in seconds, without training anything.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from orchestration import cli_jobs
from orchestration.gitinfo import git_state
from orchestration.jobs import (EXCLUDES, JobsError, auth_headers, build_request, parse_env, resolve_address,
                                submission_id)
from orchestration.space import SpaceError, load_space

REPO = Path(__file__).resolve().parents[2]
JOB_SPACE = "tests/orchestration/fixtures/job_space.yaml"
SECRET = "never-print-this-secret"
TOKEN = secrets.token_hex(32)          # the test cluster runs with Ray token auth on
WIDE = {"COLUMNS": "200"}
AUTHED = {**WIDE, "RAY_AUTH_TOKEN": TOKEN}


def _app() -> typer.Typer:
    app = typer.Typer()
    cli_jobs.register(app)
    return app


def _invoke(*args: str, env: dict[str, str] | None = None):
    """Run the CLI; on the test cluster with the auth token in the environment."""
    return CliRunner().invoke(_app(), list(args), env=env or AUTHED)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
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
    assert env["AWS_SECRET_ACCESS_KEY"] == SECRET and env["RAY_USAGE_STATS_ENABLED"] == "0" and env["EXTRA"] == "1"
    assert SECRET not in repr(req.printable_env())
    assert req.metadata == {"git_commit": "c0ffee", "git_dirty": "false", "space": "job-plumbing",
                            "space_file": "spaces/s.yaml", "submitted_by": "rrn"}
    assert req.entrypoint_num_cpus == 1
    assert env["RRN_HOME"] == "~/rrn-home"          # not inside the job's temporary working_dir copy
    no_creds = build_request("spaces/s.yaml", working_dir=workdir, forward_credentials=False, commit="c0ffee",
                             dirty=False, command="validate")
    assert "AWS_SECRET_ACCESS_KEY" not in no_creds.runtime_env["env_vars"]
    assert no_creds.entrypoint == "python -m rrn space validate spaces/s.yaml"


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


def test_address_and_auth_header_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    assert resolve_address() == "http://127.0.0.1:8265" and auth_headers() is None
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
    assert "AWS_SECRET_ACCESS_KEY=***" in dry.stdout
    unreachable = _invoke("submit", JOB_SPACE, "--address", dead)
    assert unreachable.exit_code == 2 and "cannot reach the Ray dashboard" in unreachable.stderr
    bad_env = _invoke("submit", JOB_SPACE, "--env", "1BAD=x", "--address", dead)
    assert bad_env.exit_code == 2 and "1BAD=x" in bad_env.stderr


# ------------------------------------------------------------------ on a real Ray head


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"Ray dashboard not up at {url} after {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Ray head with the dashboard (jobs API) on free 127.0.0.1 ports and
    token auth on (with its token in the environment, not in ~/.ray)."""
    temp_dir = Path(os.environ["RAY_TMPDIR"]) / f"jobs{os.getpid()}"   # short: Ray puts sockets here
    log = tmp_path_factory.mktemp("ray-head") / "ray-start.log"
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)
    dashboard = _free_port()
    cmd = [str(venv_bin / "ray"), "start", "--head", "--block", "--disable-usage-stats",
           "--node-ip-address", "127.0.0.1", "--port", str(_free_port()),
           "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
           "--dashboard-agent-listen-port", str(_free_port()), "--ray-client-server-port", str(_free_port()),
           "--num-cpus", "2", "--num-gpus", "0", "--object-store-memory", str(100 * 1024 * 1024),
           "--temp-dir", str(temp_dir)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_http(f"{address}/api/jobs/", proc, log)
        yield address
    finally:
        # `ray start --block` tears its own processes down on SIGTERM; anything left
        # in the process group started above is then killed. Never `ray stop`.
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


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
    patch.setenv("AWS_ACCESS_KEY_ID", "AKIA-test")
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
    assert info.runtime_env["env_vars"]["AWS_SECRET_ACCESS_KEY"] == SECRET   # forwarded, not printed
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
    assert "AWS_SECRET_ACCESS_KEY=***" in status.stdout and SECRET not in status.output
    logs = _invoke("jobs", "logs", sid, "--address", ray_head)
    assert logs.exit_code == 0 and f"OK {JOB_SPACE}: 4 trial(s)" in logs.stdout
    followed = _invoke("jobs", "logs", sid, "--follow", "--address", ray_head)
    assert followed.exit_code == 0 and f"OK {JOB_SPACE}" in followed.stdout
    listed = _invoke("jobs", "list", "--address", ray_head)
    assert listed.exit_code == 0 and sid in listed.stdout and "job-plumbing" in listed.stdout
    missing = _invoke("jobs", "status", "rrn-no-such-job", "--address", ray_head)
    assert missing.exit_code == 2 and "no job 'rrn-no-such-job'" in missing.stderr
    no_token = _invoke("jobs", "list", "--address", ray_head, env={**WIDE, "RAY_AUTH_TOKEN": ""})
    assert no_token.exit_code == 2 and "requires token authentication: set RAY_AUTH_TOKEN" in no_token.stderr


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
