"""`rrn train` with tracking: rrn_core's single run, plus an MLflow run and metrics.jsonl.

rrn_core's `train` command stays free of MLflow (data flows one way: orchestration
wraps rrn_core). This module offers the same command with the tracking a sweep
trial gets (orchestration/tracking/train_run.py); `register(app)` after rrn_core's
registers it under the same name, so `rrn train` is tracked unless `--no-track`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rrn.console import console, escape, user_errors
from rrn.run_commands import ForkOpt

Overrides = Annotated[Optional[list[str]], typer.Option(
    "--set", "-s", help="Override a config field, e.g. --set method.w_select=0.5 (repeatable).")]


def train_command(
    config: Annotated[Path, typer.Argument(help="Run config YAML (see configs/).")],
    overrides: Overrides = None,
    output_dir: Annotated[Optional[str], typer.Option(
        help="Where checkpoints and metrics.jsonl go (local path or s3://...).")] = None,
    resume: Annotated[bool, typer.Option(
        help="Continue from output_dir's last checkpoint (and its MLflow run) if there is one.")] = True,
    track: Annotated[bool, typer.Option(
        "--track/--no-track", help="Log the run to MLflow (the sweeps' store) as well as "
        "to metrics.jsonl.")] = True,
    tracking_uri: Annotated[Optional[str], typer.Option(
        "--tracking-uri", help="MLflow store (default: RRN_TRACKING_URI, MLFLOW_TRACKING_URI, "
        "else sqlite in RRN_HOME).")] = None,
    experiment: Annotated[str, typer.Option("--experiment", "-e",
                                            help="MLflow experiment of the run.")] = "rrn",
    fork: ForkOpt = None,
) -> None:
    # The help text is `register`'s: it names the methods, read from the methods table.
    import os

    from orchestration.storage import filesystems as storage
    from orchestration.sweep.checks import tracking_problems
    from orchestration.tracking.train_run import standalone_hooks
    from rrn import run_commands as core
    from rrn_core.loop import TrainHooks, train
    from rrn_core.run_checks import raise_problems

    # The up-front check (rrn_core/run_checks.py): config, data, device, output folder,
    # and what a resume may continue (rrn_core/resume_check.py); all before any tracking.
    cfg, start = core.prepared_training(config, overrides, output_dir, resume, fork)
    if track:  # ... and the MLflow store this run will log to, before anything is written
        uri = (tracking_uri or os.environ.get("RRN_TRACKING_URI")
               or os.environ.get("MLFLOW_TRACKING_URI") or storage.default_tracking_uri())
        field = "--tracking-uri" if tracking_uri else "tracking URI (RRN_TRACKING_URI / MLFLOW_TRACKING_URI / RRN_HOME)"
        with user_errors():
            raise_problems(str(config), tracking_problems(uri, field))

    class PrintEvaluations(TrainHooks):
        def on_evaluation(self, step, result, checkpoint_dir):
            flag = "  COLLAPSED (predicts one class)" if result.collapsed else ""
            console.print(f"step {step}: mIoU {result.miou:.4f}  pixel acc {result.pixel_acc:.4f}"
                          f"  checkpoint {escape(str(checkpoint_dir))}{flag}")

    with user_errors():  # a store that cannot be created (a full disk): one message, no half-made db
        hooks, close, run_id = standalone_hooks(cfg, track=track, tracking_uri=tracking_uri,
                                                experiment=experiment, extra=[PrintEvaluations()])
    if run_id:
        console.print(f"MLflow run {run_id} (experiment {escape(experiment)}); `rrn ui` to browse")
    status = "FAILED"
    try:
        with user_errors():
            result = train(cfg, hooks, resume_from=start)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        close(status)
    if result.final is not None:
        core.print_eval(result.final)


def register(app: typer.Typer) -> None:
    """Register `rrn train` (call after rrn.run_commands.register: the later command wins).

    Its help names every method from rrn_core/method_names.py (torch-free, so
    `rrn --help` stays fast), read when the app is built."""
    from rrn_core.method_names import methods_text

    app.command("train", help=f"Train one run ({methods_text()}) as the config says, "
                "tracked in MLflow.")(train_command)
