"""`rrn submit` and `rrn jobs status|logs|stop|list`: sweeps as Ray Jobs on a cluster.

The space is validated here, on the user's machine, before anything is uploaded:
a typo costs a second, not a cluster slot. Then a check job proves the cluster's
`python` can run rrn before the sweep is submitted. No secret goes into the job's
runtime env (Ray logs it in clear), and output never shows credential values.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Column, Table

from rrn.console import cli_app, err, fail, out

jobs_app = cli_app(None, "Ray Jobs on a cluster: status, logs, stop, list.")

Address = Annotated[Optional[str], typer.Option(
    "--address", help="Ray dashboard URL of the cluster.", show_default="$RAY_ADDRESS or http://127.0.0.1:8265")]
JobId = Annotated[str, typer.Argument(help="Submission id, e.g. rrn-demo-1a2b3c4d5e.")]


def _client(address: str | None):
    from orchestration.cluster.jobs import connect
    from orchestration.cluster.job_request import JobsError

    try:
        return connect(address)
    except JobsError as e:
        raise fail(str(e))


def _when(stamp_ms: int | None) -> str:
    if not stamp_ms:
        return "-"
    return dt.datetime.fromtimestamp(stamp_ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _follow(client: Any, sid: str) -> None:
    """Stream logs to stdout until the job ends; exit 0 only if it succeeded."""
    from orchestration.cluster.jobs import follow_logs
    from orchestration.cluster.job_request import JobsError

    try:
        status = follow_logs(client, sid, lambda chunk: out.out(chunk, end="", highlight=False))
    except JobsError as e:
        raise fail(str(e))
    colour = "green" if str(status) == "SUCCEEDED" else "red"
    err.print(f"job {escape(sid)}: [{colour}]{status}[/]")
    raise typer.Exit(0 if str(status) == "SUCCEEDED" else 1)


def submit_command(
    space_file: Annotated[Path, typer.Argument(help="Search-space YAML inside the working directory.")],
    address: Address = None,
    tracking_uri: Annotated[Optional[str], typer.Option(
        help="MLflow tracking URI for the job (e.g. http://mlflow:5000); overrides the space file.")] = None,
    storage: Annotated[Optional[str], typer.Option(
        help="Ray results path for the job (e.g. s3://bucket/rrn); overrides the space file.")] = None,
    endpoint_url: Annotated[Optional[str], typer.Option(
        help="S3 endpoint for --storage as the cluster sees it (MinIO, Ceph...).")] = None,
    env: Annotated[Optional[list[str]], typer.Option(
        "--env", "-e", help="Extra environment variable for the job, KEY=VALUE (repeatable).")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job's logs until it ends; exit 1 unless it succeeds.")] = False,
    resubmit: Annotated[bool, typer.Option(
        help="Run again if this space+commit already finished (the id gets a -2, -3 ... suffix).")] = False,
    working_dir: Annotated[Optional[Path], typer.Option(
        help="Directory uploaded as the job's working_dir.", show_default="the rrn repository")] = None,
    forward_credentials: Annotated[bool, typer.Option(
        hidden=True, help="Refused: credentials reach a job only through the cluster nodes' "
        "environment.")] = False,
    check: Annotated[bool, typer.Option(
        help="Before submitting, run a short check job proving the cluster's `python` can run rrn.")] = True,
    check_timeout: Annotated[float, typer.Option(
        min=1, help="Seconds the check job may take (the working_dir upload included).")] = 180,  # jobs.CHECK_TIMEOUT_S
    dry_run: Annotated[bool, typer.Option(help="Validate and show the job, submit nothing.")] = False,
    resume: Annotated[bool, typer.Option(
        help="Continue the sweep of a stopped or failed job (`rrn sweep --resume`): finished trials "
             "are kept; implies --resubmit.")] = False,
    entrypoint_num_cpus: Annotated[float, typer.Option(
        help="CPUs the job's driver reserves; 0 keeps it on the head node (a head with no CPUs "
             "for trials).")] = 1,
    entrypoint_command: Annotated[str, typer.Option(hidden=True)] = "sweep",
) -> None:
    """Submit a sweep to a Ray cluster as a Ray Job (idempotent per space + git commit)."""
    from orchestration.cluster.jobs import resolve_address, submit
    from orchestration.cluster.job_request import SECRETS_HINT, JobsError, build_request, parse_env
    from orchestration.space import SpaceError

    if forward_credentials:
        raise fail(f"--forward-credentials: {SECRETS_HINT}; AWS_REGION/AWS_DEFAULT_REGION are forwarded as before")
    try:
        request = build_request(space_file, working_dir=working_dir, tracking_uri=tracking_uri,
                                storage_path=storage, endpoint_url=endpoint_url, env=parse_env(env),
                                command=entrypoint_command, resume=resume,
                                entrypoint_num_cpus=entrypoint_num_cpus)
    except (SpaceError, JobsError) as e:
        raise fail(str(e))
    space = request.space
    env_shown = ", ".join(f"{k}={v}" for k, v in request.printable_env().items())
    out.print(f"space       {space.space.name}: {space.trial_count} trial(s)", highlight=False)
    out.print(f"job id      {escape(request.submission_id)}", highlight=False)
    out.print(f"entrypoint  {escape(request.entrypoint)}", highlight=False)
    out.print(f"working dir {escape(str(request.runtime_env['working_dir']))} (commit {request.metadata['git_commit'][:12]})",
              highlight=False)
    out.print(f"env         {escape(env_shown)}", highlight=False)
    if request.metadata["git_dirty"] == "true":
        err.print("[yellow]note:[/] uncommitted changes are uploaded but not part of the job id; "
                  "commit them (or use --resubmit) to run a changed tree again")
    if not (tracking_uri or space.space.tracking.uri) or not (storage or space.space.storage.path):
        home = request.runtime_env["env_vars"].get("RRN_HOME")
        err.print(f"[yellow]note:[/] tracking or storage is the cluster's local default (RRN_HOME={escape(home)} "
                  "on the head node); pass --tracking-uri / --storage to keep results beyond the cluster's life")
    if dry_run:
        return

    url = resolve_address(address)
    client = _client(address)
    try:
        with err.status(f"uploading {request.runtime_env['working_dir']}, checking and submitting to {url} ..."):
            outcome = submit(client, request, resubmit=resubmit or resume,
                             check_timeout_s=check_timeout if check else None)
    except JobsError as e:
        raise fail(f"{space_file}: not submitted to {url}: {e}")
    colour = "green" if outcome.submitted else "yellow"
    out.print(f"[{colour}]{escape(outcome.message)}[/] (status {outcome.status})", highlight=False)
    out.print(f"follow it:  rrn jobs logs {outcome.submission_id} --follow --address {url}", highlight=False)
    if wait:
        _follow(client, outcome.submission_id)


@jobs_app.command("status")
def status_command(submission_id: JobId, address: Address = None) -> None:
    """Show a job's status, timing, entrypoint and metadata (secrets masked)."""
    from orchestration.storage import filesystems as storage
    from orchestration.cluster.jobs import job_info
    from orchestration.cluster.job_request import JobsError

    client = _client(address)
    try:
        info = job_info(client, submission_id)
    except JobsError as e:
        raise fail(str(e))
    rows = {
        "job id": info.submission_id,
        "status": str(info.status),
        "message": info.message or "-",
        "entrypoint": info.entrypoint,
        "started": _when(info.start_time),
        "ended": _when(info.end_time),
        "exit code": "-" if info.driver_exit_code is None else str(info.driver_exit_code),
        "metadata": ", ".join(f"{k}={v}" for k, v in (info.metadata or {}).items()) or "-",
        "env": ", ".join(f"{k}={v}" for k, v in
                         storage.redact((info.runtime_env or {}).get("env_vars") or {}).items()) or "-",
    }
    for key, value in rows.items():
        out.print(f"{key:<11} {escape(str(value))}", highlight=False)


@jobs_app.command("logs")
def logs_command(
    submission_id: JobId,
    address: Address = None,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Stream until the job ends; exit 1 unless it succeeds.")] = False,
) -> None:
    """Print a job's output (driver stdout/stderr)."""
    from orchestration.cluster.jobs import logs
    from orchestration.cluster.job_request import JobsError

    client = _client(address)
    if follow:
        _follow(client, submission_id)
    try:
        text = logs(client, submission_id)
    except JobsError as e:
        raise fail(str(e))
    out.out(text, end="", highlight=False)


@jobs_app.command("stop")
def stop_command(
    submission_id: JobId,
    address: Address = None,
    wait: Annotated[bool, typer.Option(help="Wait until the job has stopped.")] = True,
) -> None:
    """Stop a running job (its trials are torn down; finished checkpoints stay)."""
    from orchestration.cluster.jobs import stop, wait_for
    from orchestration.cluster.job_request import JobsError

    client = _client(address)
    try:
        was_running = stop(client, submission_id)
        if not was_running:
            out.print(f"job {submission_id} was not running", highlight=False)
            return
        out.print(f"stop requested for {submission_id}", highlight=False)
        if wait:
            with err.status("waiting for the job to stop ..."):
                status = wait_for(client, submission_id, timeout=120)
            out.print(f"job {submission_id}: {status}", highlight=False)
    except JobsError as e:
        raise fail(str(e))


@jobs_app.command("list")
def list_command(address: Address = None) -> None:
    """List the cluster's jobs, newest first."""
    from orchestration.cluster.jobs import list_jobs

    client = _client(address)
    jobs = list_jobs(client)
    width = max((len(j.submission_id or j.job_id or "-") for j in jobs), default=6)
    table = Table(Column("job id", min_width=width), "status", Column("space", overflow="fold"),
                  "commit", "started", "ended")
    for job in jobs:
        meta = job.metadata or {}
        table.add_row(escape(job.submission_id or job.job_id or "-"), str(job.status),
                      escape(meta.get("space", "-")), meta.get("git_commit", "-")[:10],
                      _when(job.start_time), _when(job.end_time))
    out.print(table)


def register(app: typer.Typer) -> None:
    """Mount `rrn submit` and the `rrn jobs` group on the main app."""
    app.command("submit")(submit_command)
    app.add_typer(jobs_app, name="jobs")
