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
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestration.cluster.job_request import JobsError, DEFAULT_ADDRESS, JobRequest, submission_id
from orchestration.storage import filesystems as storage

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ray.job_submission import JobDetails, JobStatus, JobSubmissionClient


#: What the pre-submission check job runs, with the sweep's own runtime env.
PROBE_ENTRYPOINT = "python -m orchestration.cluster.probe"

#: Seconds the check job may take (an upload of the working_dir included).
CHECK_TIMEOUT_S = 180.0


# --------------------------------------------------------------------------- client


def resolve_address(address: str | None = None) -> str:
    """--address, else RAY_ADDRESS, else the local dashboard."""
    return address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS


def ray_token() -> tuple[str | None, str]:
    """The Ray auth token and where it came from, looked up as Ray itself does:
    RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH names, else ~/.ray/auth_token
    (what `ray get-auth-token --generate` writes). (None, "") when there is none."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if token:
        return token, "RAY_AUTH_TOKEN"
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    path = Path(named).expanduser() if named else Path.home() / ".ray" / "auth_token"
    try:
        token = path.read_text().strip()
    except OSError:
        if named:
            raise JobsError(f"RAY_AUTH_TOKEN_PATH={named}: cannot read the Ray token file") from None
        return None, ""
    if not token and named:
        raise JobsError(f"RAY_AUTH_TOKEN_PATH={named}: the Ray token file is empty")
    return (token, str(path)) if token else (None, "")


def auth_headers() -> dict[str, str] | None:
    """Bearer header for clusters with Ray token auth (see `ray_token`)."""
    token, _ = ray_token()
    return {"Authorization": f"Bearer {token}"} if token else None


def _reload_rays_token_cache() -> None:
    """Ray's client adds a token of its own (cached per process, when RAY_AUTH_MODE=token)
    unless given one: make it read the environment again, so that it sees what
    `ray_token` saw (matters where one process connects with different settings)."""
    try:
        from ray._raylet import AuthenticationTokenLoader

        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):  # pragma: no cover - a Ray without token auth
        pass


AUTH_HINT = ("export RAY_AUTH_TOKEN=<the cluster's token> (or point RAY_AUTH_TOKEN_PATH at a file "
             "holding it; `ray get-auth-token` on the head prints it)")


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
    """A JobSubmissionClient for the cluster (its dashboard URL, e.g. http://head:8265),
    authenticated with the Ray token when there is one. A cluster that refuses the
    request (401 without a token, 403 with a wrong one) is one JobsError saying which."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    url = resolve_address(address)
    token, source = ray_token()
    try:
        _reload_rays_token_cache()
        with _address_env_hidden():
            return JobSubmissionClient(url, headers={"Authorization": f"Bearer {token}"} if token else None)
    except AuthenticationError:
        if token:
            raise JobsError(f"the Ray dashboard at {url} refused the token from {source} (403): it is not "
                            f"this cluster's token; {AUTH_HINT}") from None
        raise JobsError(f"the Ray dashboard at {url} requires token authentication (401) and no token "
                        f"was found: {AUTH_HINT}") from None
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise JobsError(f"cannot reach the Ray dashboard at {url}: {err}") from None
    finally:
        _reload_rays_token_cache()


# --------------------------------------------------------------------------- request


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
