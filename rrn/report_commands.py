"""`rrn report` (a sweep's table and plot) and `rrn ui` (the MLflow UI on the same store).

Heavy imports (mlflow, pandas, matplotlib) stay inside the commands so `rrn --help`
answers at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from rrn import console
from rrn.console import escape, fail

TrackingOpt = Annotated[str | None, typer.Option(
    "--tracking-uri", help="MLflow store: sqlite:///path.db, a *.db path or http(s)://server. "
    "Default: $RRN_TRACKING_URI, else $MLFLOW_TRACKING_URI, else sqlite:///$RRN_HOME/mlflow.db.")]


def _env_tracking_uri() -> str | None:
    """The store sweeps use when no space file names one (same order as ResolvedSpace)."""
    from orchestration.names import ENV_TRACKING_URI

    return os.environ.get(ENV_TRACKING_URI) or os.environ.get("MLFLOW_TRACKING_URI") or None


def _store_uri(tracking_uri: str | None) -> str:
    """Resolve the store without creating an empty database as a side effect of reading."""
    from orchestration.tracking.store import resolve_tracking_uri, sqlite_path
    from orchestration.sweep.checks import tracking_scheme_problem

    if tracking_uri is None:
        from orchestration.storage.filesystems import default_tracking_uri

        tracking_uri = _env_tracking_uri() or default_tracking_uri()
    unknown = tracking_scheme_problem(tracking_uri, "--tracking-uri")
    if unknown:
        raise fail(unknown)
    db = sqlite_path(tracking_uri) if "://" in tracking_uri else (
        Path(tracking_uri) if tracking_uri.endswith(".db") else None)
    if db is not None:
        db = db.expanduser().resolve()
        if not db.is_file():
            raise fail(f"no MLflow store at {db} (run a sweep first, or pass --tracking-uri)")
    elif tracking_uri.startswith(("http://", "https://")):
        # MLflow's client retries a dead server for minutes; say so at once instead
        if not wait_http_ok(tracking_uri.rstrip("/") + "/health", 5):
            raise fail(f"no MLflow tracking server answers at {tracking_uri}")
    try:
        return resolve_tracking_uri(tracking_uri)
    except ValueError as err:
        raise fail(str(err)) from None


class Format(str, Enum):
    table = "table"
    csv = "csv"
    markdown = "markdown"
    json = "json"


def report(
    sweep: Annotated[str, typer.Argument(help="Sweep name (the `name:` of its space file).")],
    tracking_uri: TrackingOpt = None,
    experiment: Annotated[str, typer.Option("--experiment", "-e",
                                            help="MLflow experiment of the sweep.")] = "rrn",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Folder for summary.csv, summary.md, summary.html and the plots. "
        "Default: $RRN_HOME/reports/<sweep>/.")] = None,
    fmt: Annotated[Format, typer.Option(
        "--format", "-f", help="table: for reading (fits the terminal); csv, markdown, json: "
        "the same summary on stdout for other tools (file paths then go to stderr).",
    )] = Format.table,
) -> None:
    """Show a sweep: method x label-amount means, every trial (collapsed ones flagged); write
    its CSV, Markdown and HTML summary and the plots."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from orchestration.report.table import SweepNotFound, find_sweep_run, summarize_run
    from orchestration.report.formats import print_report, render
    from orchestration.storage.filesystems import redact_text, rrn_home
    from orchestration.tracking.summary_page import write_summary_files

    uri = _store_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    try:
        parent = find_sweep_run(client, experiment, sweep)
        df = summarize_run(client, parent)
    except SweepNotFound as err:
        raise fail(str(err)) from None
    except MlflowException as err:
        raise fail(f"cannot read {redact_text(uri)}: {err.message}") from None
    if out is None:
        out = rrn_home() / "reports" / sweep
    try:
        files = write_summary_files(df, out)
    except OSError as err:
        raise fail(f"cannot write the report to {out}: {err}") from None

    title = f"sweep {sweep}: {len(df)} trials, run {parent.info.run_id} ({parent.info.status})"
    if fmt is Format.table:
        screen = Console()   # wraps to the terminal: the report is made to fit 80 columns
        print_report(screen, df, title)
        paths = screen
    else:
        sys.stdout.write(render(df, fmt.value, title))
        sys.stdout.flush()
        paths = console.err
    # whole paths, to copy and paste
    for label, key in (("table:", "csv"), ("page: ", "html"), ("plot: ", "png"), ("plot: ", "class_iou")):
        paths.print(f"{label} {escape(str(files[key]))}", soft_wrap=True, highlight=False)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_http_ok(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> bool:
    """Poll `url` until it answers 200; False on timeout or when `proc` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.3)
    return False


def ui_command(uri: str, host: str, port: int, workers: int = 1) -> list[str]:
    """The `mlflow server` command line serving store `uri` and its artifacts."""
    from orchestration.tracking.store import local_artifact_root

    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
           "--host", host, "--port", str(port), "--workers", str(workers)]
    root = local_artifact_root(uri)
    if root is not None:
        # Runs logged by sweeps point at this folder directly (the server reads it);
        # experiments created from the UI get proxied artifacts stored in it as well.
        root.mkdir(parents=True, exist_ok=True)
        cmd += ["--artifacts-destination", str(root.resolve())]
    return cmd


#: Environment of the UI's `mlflow server`: no telemetry, and no GenAI job runner (it
#: starts extra worker processes that a runs browser never needs).
UI_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def _print_links(uri: str, base: str, experiment: str, sweep: str | None) -> None:
    """The direct links to the sweep's runs view and parent run (see ui_links)."""
    from mlflow.exceptions import MlflowException

    from orchestration.tracking.ui_links import find_links

    try:
        links = find_links(uri, experiment, sweep)
    except MlflowException as err:
        typer.echo(f"  (cannot list runs: {err.message})")
        return
    if links is None:
        typer.echo(f"  experiment {experiment!r} has no runs yet")
        return
    if sweep and links.sweep is None:
        typer.echo(f"  no sweep named {sweep!r} in experiment {experiment!r}")
    for line in links.lines(base):
        typer.echo(line)


def ui(
    sweep: Annotated[str | None, typer.Argument(
        help="Sweep whose runs to link (default: the newest sweep of the experiment).")] = None,
    tracking_uri: TrackingOpt = None,
    experiment: Annotated[str, typer.Option("--experiment", "-e",
                                            help="MLflow experiment to link.")] = "rrn",
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535)] = 5000,
    host: Annotated[str, typer.Option("--host", help="Interface to bind; 0.0.0.0 exposes "
                                      "the UI to the network.")] = "127.0.0.1",
    workers: Annotated[int, typer.Option("--workers", min=1)] = 1,
) -> None:
    """Start the MLflow UI on the project's tracking store and print the direct link to a
    sweep's runs and its parent run (Ctrl-C stops it)."""
    tracking_uri = tracking_uri or _env_tracking_uri()
    if tracking_uri is not None and tracking_uri.startswith(("http://", "https://")):
        typer.echo(f"{tracking_uri} is a tracking server already: open it in a browser.")
        _print_links(tracking_uri, tracking_uri, experiment, sweep)
        return
    uri = _store_uri(tracking_uri) if tracking_uri is not None else _default_store_uri()
    if not _port_free(host, port):
        raise fail(f"port {port} on {host} is in use (pick another with --port)")
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
    cmd = ui_command(uri, host, port, workers)
    typer.echo(f"starting the MLflow UI for {uri} ...")
    # Own process group: mlflow spawns uvicorn workers, and stopping us must stop them all.
    proc = subprocess.Popen(cmd, env={**os.environ, **UI_ENV}, start_new_session=True)
    # Ctrl-C (SIGINT) and SIGTERM both stop the server, even where the shell started us
    # with SIGINT ignored (a background job of a script).
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if wait_http_ok(url + "/health", 120, proc):
            typer.echo(f"MLflow UI: {url}  (Ctrl-C to stop)")
            _print_links(uri, url, experiment, sweep)
            sys.stdout.flush()  # a log file must show the links now, not at exit
        code = proc.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_process_group(proc)
    if code != 0:
        raise fail(f"mlflow server exited with code {code}")
    typer.echo("MLflow UI stopped.")


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def stop_process_group(proc: subprocess.Popen, timeout_s: float = 10) -> None:
    """SIGTERM the process group `proc` leads, SIGKILL it if it lingers."""
    if proc.poll() is not None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # stray workers of an exited leader
        except (ProcessLookupError, PermissionError):
            pass
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _default_store_uri() -> str:
    """The default store for the UI; an empty one is fine (it shows no runs yet)."""
    from orchestration.tracking.store import resolve_tracking_uri

    return resolve_tracking_uri(None)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("ui")(ui)
