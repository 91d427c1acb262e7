"""Submit a sweep to a Ray cluster as a Ray Job, then follow, inspect or stop it.

The job id is derived from what is being run (space file, base config, git
commit), so submitting the same thing twice finds the first job instead of
starting a duplicate sweep that would race it for the same Ray run name and
MLflow parent run.

No secret ever goes into the job's runtime env: Ray logs runtime envs in clear
into the cluster's world-readable session logs (runtime_env_agent.log,
dashboard logs) and shows them in `ray job list`. Credentials reach the job and
its trials through the nodes' own environment (exported before `ray start`, or
a Kubernetes Secret: deploy/README.md); a secret-named --env, a password in a
URI option or --forward-credentials is refused. Before submitting, a short
check job proves the cluster's `python` can run `rrn` (cluster/probe.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shlex
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchestration.storage import filesystems as storage
from orchestration.tracking.gitinfo import git_state
from orchestration.names import ENV_STORAGE_ENDPOINT, ENV_STORAGE_PATH, ENV_TRACKING_URI
from orchestration.space import ResolvedSpace, load_space

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ray.job_submission import JobDetails, JobStatus, JobSubmissionClient

DEFAULT_ADDRESS = "http://127.0.0.1:8265"

#: Never uploaded: environments, VCS data, local results and caches (anchored at the
#: repository root, so rrn_core/data/ is kept). Ray also honours .gitignore.
EXCLUDES = ["/.venv/", "/.git/", "/rrn-home/", "/runs/", "/data/", "/mlruns/", "/mlflow.db",
            "__pycache__/", "*.pyc", "*.egg-info/", ".pytest_cache/"]

#: Forwarded from the submitting shell when set: settings, never secrets (see the top).
FORWARDED_ENV = ("AWS_DEFAULT_REGION", "AWS_REGION")

#: Why a secret is refused, and where it goes instead.
SECRETS_HINT = ("secrets never travel in a Ray runtime env (Ray writes runtime envs in clear into the "
                "cluster's session logs); give the cluster's nodes the credentials instead: export them "
                "before `ray start`, or mount a Kubernetes Secret (deploy/README.md)")

#: What the pre-submission check job runs, with the sweep's own runtime env.
PROBE_ENTRYPOINT = "python -m orchestration.cluster.probe"

#: Seconds the check job may take (an upload of the working_dir included).
CHECK_TIMEOUT_S = 180.0

#: RRN_HOME on the cluster unless --env RRN_HOME=... says otherwise (expanded there).
CLUSTER_HOME = "~/rrn-home"

#: Telemetry off on the cluster too: the project never phones home.
QUIET_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}

#: How `rrn jobs stop` ends the sweep: SIGINT (Tune's graceful stop, which saves the
#: experiment state and the searcher once more) instead of Ray's default SIGTERM,
#: which kills the driver mid-way and loses whatever Tune did since its last
#: periodic snapshot (a trial started since then runs again under a new id on
#: --resume, beside an orphaned MLflow run). Read by Ray's job supervisor from
#: the job's environment; --env overrides either.
GRACEFUL_STOP_ENV = {"RAY_JOB_STOP_SIGNAL": "SIGINT", "RAY_JOB_STOP_WAIT_TIME_S": "60"}

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class JobsError(RuntimeError):
    """A submission or job query that cannot proceed; the message says why."""


# --------------------------------------------------------------------------- client


def resolve_address(address: str | None = None) -> str:
    """--address, else RAY_ADDRESS, else the local dashboard."""
    return address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS


def auth_headers() -> dict[str, str] | None:
    """Bearer header for clusters with Ray token auth (RAY_AUTH_TOKEN)."""
    token = os.environ.get("RAY_AUTH_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else None


@contextmanager
def _address_env_hidden() -> Iterator[None]:
    """Ray's client lets RAY_ADDRESS override an explicit address; we want the
    explicit --address to win, so hide those variables while connecting."""
    names = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")
    saved = {n: os.environ.pop(n) for n in names if n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def connect(address: str | None = None) -> JobSubmissionClient:
    """A JobSubmissionClient for the cluster (its dashboard URL, e.g. http://head:8265)."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    url = resolve_address(address)
    try:
        with _address_env_hidden():
            return JobSubmissionClient(url, headers=auth_headers())
    except AuthenticationError:
        hint = "RAY_AUTH_TOKEN was rejected" if os.environ.get("RAY_AUTH_TOKEN") else "set RAY_AUTH_TOKEN"
        raise JobsError(f"the Ray dashboard at {url} requires token authentication: {hint}") from None
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise JobsError(f"cannot reach the Ray dashboard at {url}: {err}") from None


# --------------------------------------------------------------------------- request


@dataclass(frozen=True)
class JobRequest:
    """Everything `JobSubmissionClient.submit_job` receives, built before any I/O."""

    entrypoint: str
    submission_id: str
    runtime_env: dict[str, Any]
    metadata: dict[str, str]
    entrypoint_num_cpus: float = 1
    space: ResolvedSpace | None = field(default=None, compare=False, repr=False)

    def printable_env(self) -> dict[str, str]:
        """The job's environment variables with secrets masked, for display."""
        return storage.redact(self.runtime_env.get("env_vars", {}))


def project_root() -> Path:
    """The repository holding this code: what a job uploads as its working_dir."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "pyproject.toml").is_file() else Path.cwd().resolve()


def parse_env(pairs: list[str] | None) -> dict[str, str]:
    """`KEY=VAL` strings (from --env) to a dict; a malformed one names itself."""
    env: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not _ENV_NAME.match(key):
            raise JobsError(f"--env {pair!r}: expected KEY=VALUE with KEY a variable name")
        env[key] = value
    return env


def content_digest(resolved: ResolvedSpace, commit: str | None) -> str:
    """sha256 over the space file, its base config and the git commit."""
    h = hashlib.sha256()
    h.update(resolved.path.read_bytes())
    base = resolved.base_path.read_bytes() if resolved.base_path else yaml.safe_dump(resolved.base).encode()
    h.update(b"\0" + base + b"\0" + (commit or "no-git").encode())
    return h.hexdigest()


def submission_id(resolved: ResolvedSpace, commit: str | None) -> str:
    """rrn-<space name>-<10 hex>: the same space, base config and commit give the same id."""
    return f"rrn-{resolved.space.name}-{content_digest(resolved, commit)[:10]}"


def _inside(path: Path, root: Path, what: str) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        raise JobsError(f"{path}: the {what} must be inside the uploaded working directory {root} "
                        "(or pass --working-dir)") from None


def secret_problems(options: Mapping[str, str | None], env: Mapping[str, str]) -> list[str]:
    """Each option or --env entry that would put a secret into the runtime env."""
    problems = [f"{flag}: holds a password ({storage.redact_text(value)})"
                for flag, value in options.items() if value and storage.redact_text(value) != value]
    for key, value in env.items():
        if storage.is_secret_key(key):
            problems.append(f"--env {key}: names a secret")
        elif storage.redact_text(value) != value:
            problems.append(f"--env {key}: holds a password ({storage.redact_text(value)})")
    return problems


def build_request(
    space_path: str | Path,
    *,
    working_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    storage_path: str | None = None,
    endpoint_url: str | None = None,
    env: Mapping[str, str] | None = None,
    command: str = "sweep",
    entrypoint_num_cpus: float = 1,
    commit: str | None = None,
    dirty: bool | None = None,
    resume: bool = False,
) -> JobRequest:
    """Validate the space locally and describe the job that would run it.

    Raises SpaceError for a bad space and JobsError for a bad request, before any
    network call. `command` is "sweep" (the real job) or "validate" (a quick job
    that proves the plumbing: upload, imports, environment). `resume` runs
    `rrn sweep --resume`: a stopped job's sweep continues from its saved state. `commit`/`dirty`
    default to the working directory's git state.
    """
    if command not in ("sweep", "validate"):
        raise JobsError(f"unknown entrypoint command {command!r}: use sweep or validate")
    secrets = secret_problems({"--tracking-uri": tracking_uri, "--storage": storage_path,
                               "--endpoint-url": endpoint_url}, env or {})
    if secrets:
        raise JobsError(f"{'; '.join(secrets)}: {SECRETS_HINT}")
    root = Path(working_dir).resolve() if working_dir else project_root()
    if not root.is_dir():
        raise JobsError(f"--working-dir {root}: not a directory")
    resolved = load_space(space_path)
    rel = _inside(Path(space_path), root, "space file")
    if resolved.base_path is not None:
        _inside(resolved.base_path, root, "base config")
    if commit is None and dirty is None:
        state = git_state(root)
        commit, dirty = state.commit, state.dirty

    # The uploaded working_dir is a temporary copy: a relative RRN_HOME inside it
    # would vanish with the job, and a resubmitted sweep could not resume.
    env_vars: dict[str, str] = {**QUIET_ENV, **GRACEFUL_STOP_ENV, "RRN_HOME": CLUSTER_HOME}
    if tracking_uri:
        env_vars[ENV_TRACKING_URI] = env_vars["MLFLOW_TRACKING_URI"] = tracking_uri
    if storage_path:
        env_vars[ENV_STORAGE_PATH] = storage_path
    if endpoint_url:
        env_vars[ENV_STORAGE_ENDPOINT] = endpoint_url
    s3_endpoint = endpoint_url or resolved.space.storage.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if s3_endpoint:
        env_vars["AWS_ENDPOINT_URL"] = env_vars["MLFLOW_S3_ENDPOINT_URL"] = s3_endpoint
    env_vars.update({n: os.environ[n] for n in FORWARDED_ENV if os.environ.get(n)})
    env_vars.update(env or {})

    # `python -m rrn`, not the `rrn` script: the job runs with the cluster's Python (the
    # one Ray runs), whose PATH need not hold the venv's scripts (`/bin/sh: rrn: not
    # found`), and the uploaded working_dir puts this very rrn package on its path.
    program = (["python", "-m", "rrn", "sweep", rel, *(["--resume"] if resume else [])]
               if command == "sweep" else ["python", "-m", "rrn", "space", "validate", rel])
    return JobRequest(
        entrypoint=shlex.join(program),
        submission_id=submission_id(resolved, commit),
        runtime_env={"working_dir": str(root), "excludes": list(EXCLUDES), "env_vars": env_vars},
        metadata={"git_commit": commit or "unknown", "git_dirty": str(bool(dirty)).lower(),
                  "space": resolved.space.name, "space_file": rel, "submitted_by": "rrn"},
        entrypoint_num_cpus=entrypoint_num_cpus,
        space=resolved,
    )


# --------------------------------------------------------------------------- submit


@dataclass(frozen=True)
class SubmitOutcome:
    submission_id: str
    status: str            # JobStatus value: PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED
    submitted: bool        # False: an existing job with this id was found and reported
    message: str


def _runs_of(jobs: Mapping[str, JobDetails], base_id: str) -> list[str]:
    """base_id, base_id-2, base_id-3 ... as far as they exist on the cluster."""
    runs, n = [], 1
    while True:
        candidate = base_id if n == 1 else f"{base_id}-{n}"
        if candidate not in jobs:
            return runs
        runs.append(candidate)
        n += 1


def _jobs_by_id(client: JobSubmissionClient) -> dict[str, JobDetails]:
    return {j.submission_id: j for j in client.list_jobs() if j.submission_id}


_RAY_NOISE = re.compile(r"^(\d{4}-\d\d-\d\d [\d:,]+\s+INFO |Running entrypoint for job )")


def _tail(text: str, lines: int = 6) -> str:
    """The last lines a job printed (Ray's own INFO lines left out), secrets in URLs
    masked, on one line."""
    kept = [line.strip() for line in text.splitlines() if line.strip() and not _RAY_NOISE.match(line)][-lines:]
    return storage.redact_text(" | ".join(kept)) or "no output"


def _forget(client: JobSubmissionClient, sid: str, wait_s: float = 30, settle_s: float = 2) -> None:
    """Stop the check job if it still runs, then delete it: it must not show in
    `rrn jobs list`. Ray's job monitor writes a deleted job back (FAILED, "supervisor
    actor died") when the deletion beats the supervisor's exit, so it is deleted again
    until it has stayed gone for `settle_s` (a few monitor periods)."""
    deadline = time.monotonic() + wait_s
    gone_since: float | None = None
    while time.monotonic() < deadline:
        try:
            status = client.get_job_status(sid)
        except RuntimeError:  # 404: gone
            gone_since = gone_since or time.monotonic()
            if time.monotonic() - gone_since >= settle_s:
                return
        else:
            gone_since = None
            try:
                if status.is_terminal():
                    client.delete_job(sid)
                else:
                    client.stop_job(sid)
            except RuntimeError:
                pass  # raced with the monitor: the next round sees the new state
        time.sleep(0.25)


def _submit_when_agent_ready(client: JobSubmissionClient, wait_s: float = 30, **job: Any) -> None:
    """submit_job, retried while a just-started head answers "No available agent to
    submit job" (its dashboard agent registers seconds after the dashboard)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.submit_job(**job)
            return
        except RuntimeError as err:
            if "no available agent" in str(err).lower() and time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            raise JobsError(f"the cluster check job could not start: {storage.redact_text(str(err))}") from None


def check_cluster_can_run(client: JobSubmissionClient, request: JobRequest,
                          timeout_s: float = CHECK_TIMEOUT_S, poll: float = 0.5) -> None:
    """Run `PROBE_ENTRYPOINT` with the request's runtime env (its working_dir and
    variables, 0 CPUs so a busy cluster still answers) and refuse (JobsError) unless
    it succeeds: the sweep would otherwise upload, start and fail on the cluster.
    The check job is deleted afterwards, whatever its outcome."""
    from orchestration.cluster.probe import OK_MARK

    probe_id = f"{request.submission_id}-check-{uuid.uuid4().hex[:6]}"
    _submit_when_agent_ready(client, entrypoint=PROBE_ENTRYPOINT, submission_id=probe_id,
                             runtime_env=request.runtime_env, entrypoint_num_cpus=0,
                             metadata={"submitted_by": "rrn", "check_for": request.submission_id})
    try:
        status = wait_for(client, probe_id, timeout=timeout_s, poll=poll)
        info = client.get_job_info(probe_id)
        output = client.get_job_logs(probe_id)
    finally:
        _forget(client, probe_id)
    if str(status) == "SUCCEEDED" and OK_MARK in output:
        return
    state = f"was still {status} after {timeout_s:g} s" if not status.is_terminal() else f"ended {status}"
    detail = _tail(output) if _tail(output) != "no output" else storage.redact_text(info.message or "no output")
    raise JobsError(f"the cluster cannot run rrn: `{PROBE_ENTRYPOINT}` with this job's runtime env {state}: "
                    f"{detail}. Start Ray from the environment rrn is installed in (activate "
                    "its venv before `ray start`) or use the project's image; --no-check skips this check")


def submit(client: JobSubmissionClient, request: JobRequest, resubmit: bool = False,
           check_timeout_s: float | None = CHECK_TIMEOUT_S) -> SubmitOutcome:
    """Submit unless this exact job exists; with `resubmit`, a finished one runs again
    under `<id>-<n>`. A job still pending or running is never duplicated. Before a new
    submission the cluster is checked (`check_cluster_can_run`; None skips it)."""
    jobs = _jobs_by_id(client)
    runs = _runs_of(jobs, request.submission_id)
    new_id = request.submission_id
    if runs:
        latest = jobs[runs[-1]]
        if not latest.status.is_terminal():
            return SubmitOutcome(runs[-1], str(latest.status), False,
                                 f"job {runs[-1]} for this space and commit is already {latest.status}")
        if not resubmit:
            return SubmitOutcome(runs[-1], str(latest.status), False,
                                 f"job {runs[-1]} for this space and commit already ran ({latest.status}); "
                                 "pass --resubmit to run it again")
        new_id = f"{request.submission_id}-{len(runs) + 1}"
    if check_timeout_s is not None:
        check_cluster_can_run(client, request, timeout_s=check_timeout_s)
    try:
        client.submit_job(entrypoint=request.entrypoint, submission_id=new_id,
                          runtime_env=request.runtime_env, metadata=request.metadata,
                          entrypoint_num_cpus=request.entrypoint_num_cpus)
    except RuntimeError as err:
        if "already" in str(err).lower():  # another submitter won the race: report its job
            status = client.get_job_status(new_id)
            return SubmitOutcome(new_id, str(status), False, f"job {new_id} was just submitted by someone else")
        raise JobsError(f"submission of {new_id} failed: {storage.redact_text(str(err))}") from None
    return SubmitOutcome(new_id, "PENDING", True, f"submitted {new_id}")


# --------------------------------------------------------------------------- follow


def job_info(client: JobSubmissionClient, sid: str) -> JobDetails:
    """A job's details; JobsError naming the id when the cluster has no such job."""
    try:
        return client.get_job_info(sid)
    except RuntimeError as err:
        if "404" in str(err) or "does not exist" in str(err):
            raise JobsError(f"no job {sid!r} on this cluster (see `rrn jobs list`)") from None
        raise JobsError(f"cannot query job {sid}: {err}") from None


def wait_for(client: JobSubmissionClient, sid: str, timeout: float | None = None,
             poll: float = 1.0) -> JobStatus:
    """Block until the job reaches a terminal status (or `timeout` seconds pass)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = job_info(client, sid).status
        if status.is_terminal() or (deadline is not None and time.monotonic() >= deadline):
            return status
        time.sleep(poll)


def follow_logs(client: JobSubmissionClient, sid: str, write: Callable[[str], Any]) -> JobStatus:
    """Stream the job's output to `write` until it ends; return its final status."""
    job_info(client, sid)  # a clear error for an unknown id before opening the stream

    async def stream() -> None:
        async for chunk in client.tail_job_logs(sid):
            write(chunk)

    asyncio.run(stream())
    return wait_for(client, sid, timeout=60)


def stop(client: JobSubmissionClient, sid: str) -> bool:
    """Ask the job to stop; True when it was still running."""
    job_info(client, sid)
    return bool(client.stop_job(sid))


def logs(client: JobSubmissionClient, sid: str) -> str:
    job_info(client, sid)
    return client.get_job_logs(sid)


def list_jobs(client: JobSubmissionClient) -> list[JobDetails]:
    """All jobs, newest first."""
    return sorted(client.list_jobs(), key=lambda j: j.start_time or 0, reverse=True)
