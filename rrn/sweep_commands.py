"""`rrn sweep` and `rrn demo`: run a search space on Ray Tune, tracked in MLflow.

Heavy imports (ray, torch, mlflow) stay inside the command bodies so `rrn --help`
answers at once. Bad input (space file, data set, existing results) is reported
as one message with exit code 2 before anything is written or started.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from rrn.console import err, fail, out, say

DEMO_SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "demo.yaml"
#: The demo's data set: `rrn data synth`'s defaults, so an existing one is reused.
DEMO_DATA = {"num_classes": 6, "num_train": 400, "num_val": 100, "size": 96, "seed": 0}

AddressOpt = Annotated[Optional[str], typer.Option(
    "--address", help="Ray cluster to join (host:port or ray://...; its nodes need rrn "
    "installed, e.g. deploy/'s image; `rrn submit` uploads the code instead). Default: "
    "RAY_ADDRESS (set inside a Ray Job), else a local Ray sized to this machine.")]
ResumeOpt = Annotated[bool, typer.Option(
    "--resume", help="Continue the sweep of the same name: finished trials are kept, "
    "unfinished ones resume from their last checkpoint, errored ones restart.")]
ConcurrentOpt = Annotated[Optional[int], typer.Option(
    "--max-concurrent", min=1, help="Trials running at once (default: the space's "
    "max_concurrent_trials).")]
class Execution(str, Enum):
    auto = "auto"
    direct = "direct"
    trainer = "trainer"


ExecutionOpt = Annotated[Execution, typer.Option(
    "--execution", help="auto: one worker runs inside the Tune trial (fast start-up), two or "
    "more through a Ray TorchTrainer (DDP); direct / trainer force one of them.")]
VerboseOpt = Annotated[bool, typer.Option(
    "--verbose", "-v", help="Show Ray's worker logs and Tune's own progress tables.")]
PlacementOpt = Annotated[Optional[float], typer.Option(
    "--placement-timeout", min=1.0, help="Seconds trials may wait for cluster resources with none "
    "running before the sweep stops with an error (default 300).")]


def _parse_sets(items: list[str]) -> dict[str, Any]:
    from rrn_core.config import parse_override
    from rrn_core.config_sections import ConfigError

    overrides: dict[str, Any] = {}
    for item in items:
        try:
            key, value = parse_override(item)
        except ConfigError as e:
            raise fail(f"--set: {e}") from None
        overrides[key] = value
    return overrides


def _run(space_file: Path, options: Any, hint: str = "") -> None:
    from orchestration.sweep.prepare import SweepError
    from orchestration.sweep.run import run_sweep

    try:
        outcome = run_sweep(space_file, options, say=say)
    except SweepError as e:
        raise fail(f"{e}{hint}") from None
    except KeyboardInterrupt:
        raise fail("interrupted: run the same command with --resume to continue", 130) from None
    _print_outcome(outcome)
    if outcome.status == "KILLED":
        raise fail(f"sweep {outcome.name} stopped before all trials finished: "
                    "run the same command with --resume to continue", 130)
    if outcome.failed:
        raise fail(f"{len(outcome.failed)} trial(s) failed (their errors are in "
                    f"{outcome.experiment_path}); `--resume` restarts them", 1)


def _print_outcome(outcome: Any) -> None:
    """The trial table at the end: run names as in MLflow, collapsed trials flagged."""
    from rich import box

    from orchestration.names import METHOD_NAME_KEY, RESULT_COLLAPSED, RESULT_STILL_IMPROVING
    from orchestration.display_names import run_name

    table = Table(title=f"sweep {outcome.name}", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("trial", "run", "metric", "status"):
        table.add_column(column, overflow="fold", justify="right" if column == "metric" else "left")
    collapsed = 0
    for t in sorted(outcome.trials, key=lambda t: (t.point, t.trial_id)):
        name = run_name(str(t.grid.get(METHOD_NAME_KEY, "")), t.grid, t.params).strip()
        metric = "-" if t.metric is None else f"{t.metric:.4f}"
        if t.status == "TERMINATED":
            state = "done" if t.fully_trained else "stopped early"
        else:
            state = "error" if t.status == "ERROR" else f"unfinished ({t.status.lower()})"
        # the siblings' verdict where the summary judged one (as `rrn report`), else the trial's own
        improving = outcome.still_improving.get(t.trial_id, t.last.get(RESULT_STILL_IMPROVING) == 1.0)
        if improving:
            state += ", STILL IMPROVING"
        bad = bool(t.last.get(RESULT_COLLAPSED))
        collapsed += bad
        if bad:
            state += ", COLLAPSED"
        table.add_row(*(escape(cell) for cell in (t.trial_id, name, metric, state)),
                      style="red" if bad else "yellow" if "IMPROVING" in state else None)
    out.print(table)
    if collapsed:
        from orchestration.report.formats import collapse_note

        out.print(f"[red]{collapsed} trial(s) {escape(collapse_note())}[/]")
    for index, line in enumerate(outcome.evidence):
        style = "bold red" if line.startswith("BUDGET TOO SMALL") else "bold" if index == 0 else ""
        out.print(f"[{style}]{escape(line)}[/]" if style else escape(line), highlight=False)
    out.print(f"results  {escape(outcome.experiment_path)}")
    if outcome.parent_run_id:
        out.print(f"MLflow   parent run {outcome.parent_run_id}: `rrn ui {outcome.name}` to browse, "
                  f"`rrn report {outcome.name}` for the summary table and plots")


def register(app: typer.Typer) -> None:
    """Add `rrn sweep` and `rrn demo` to the top-level app."""

    @app.command("sweep")
    def sweep_command(
        space_file: Annotated[Path, typer.Argument(help="Search-space YAML, e.g. search_spaces/demo.yaml.")],
        address: AddressOpt = None,
        resume: ResumeOpt = False,
        max_concurrent: ConcurrentOpt = None,
        tracking_uri: Annotated[Optional[str], typer.Option(
            "--tracking-uri", help="MLflow tracking URI (default: the space's tracking.uri, "
            "RRN_TRACKING_URI, MLFLOW_TRACKING_URI, else sqlite in RRN_HOME).")] = None,
        storage: Annotated[Optional[str], typer.Option(
            "--storage", help="Where Ray keeps results and checkpoints: a folder or "
            "s3://bucket/prefix (default: the space's storage.path, else RRN_HOME/results).")] = None,
        execution: ExecutionOpt = Execution.auto,
        set_: Annotated[Optional[list[str]], typer.Option(
            "--set", help="Extra fixed value KEY=VALUE for every trial, e.g. "
            "--set data.root=/data/VOC2012 (repeatable; not for grid or searched keys).")] = None,
        verbose: VerboseOpt = False,
        placement_timeout: PlacementOpt = None,
    ) -> None:
        """Run a search space on Ray Tune: grid x Optuna search, tracked in MLflow.

        The grid (method x label ratio x seed) is crossed with an Optuna search per
        grid point; each trial is an MLflow child run of the sweep's parent run.
        Everything is checked first (space, data set, existing results); on a problem
        the command exits with code 2 and nothing is written.
        """
        from orchestration.sweep.prepare import SweepOptions

        options = SweepOptions(address=address, resume=resume, max_concurrent=max_concurrent,
                               tracking_uri=tracking_uri, storage=storage, execution=execution.value,
                               overrides=_parse_sets(set_ or []), verbose=verbose,
                               placement_timeout=placement_timeout)
        _run(space_file, options)

    @app.command("demo")
    def demo_command(
        address: AddressOpt = None,
        resume: ResumeOpt = False,
        max_concurrent: ConcurrentOpt = None,
        verbose: VerboseOpt = False,
    ) -> None:
        """Run the whole pipeline on a laptop in minutes (synthetic data, small sweep).

        Generates the synthetic data set in RRN_HOME/data/synth (if missing), then
        sweeps search_spaces/demo.yaml: supervised at 1/32 and 1/16 of the labels, rrn
        at 1/32, two seeds each (6 trials, 2 at a time), then prints the verdicts."""
        from rich.progress import Progress

        from orchestration.sweep.prepare import SweepOptions
        from orchestration.storage.filesystems import rrn_home
        from rrn_core.data import DataError, generate_synthetic

        data = rrn_home() / "data" / "synth"
        try:
            with Progress(console=err, transient=True) as bar:
                task = bar.add_task(f"synthetic data set -> {data}", total=None)
                generate_synthetic(data, **DEMO_DATA,
                                   progress=lambda done, total: bar.update(task, completed=done, total=total))
        except (DataError, OSError) as e:
            raise fail(f"cannot prepare the demo data set: {e}") from None
        say(f"data set ready: {data}")
        options = SweepOptions(address=address, resume=resume, max_concurrent=max_concurrent,
                               overrides={"data.root": str(data)}, verbose=verbose)
        _run(DEMO_SPACE, options, hint="\n(demo: `rrn report demo` shows the finished one; "
             "`rrn demo --resume` finishes an interrupted one; RRN_HOME=<new folder> rrn demo "
             "starts over elsewhere)")
        out.print("next: `rrn ui` (MLflow UI on the demo's runs), `rrn report demo` (summary "
                  "table and label-efficiency plot)")
