"""The `rrn` command: one Typer app gathering each area's commands.

Each area owns its own CLI module (so their owners never edit one shared file);
heavy imports (torch, ray, mlflow) stay inside the command bodies so `rrn --help`
answers at once.
"""

from __future__ import annotations

import typer

from rrn import (data_commands, jobs_commands, k8s_commands, report_commands, run_commands,
                 space_commands, sweep_commands, train_commands, weights_commands)
from rrn.console import cli_app


def build_app() -> typer.Typer:
    """The `rrn` app; help texts that list the methods are read from the table's names now."""
    app = cli_app("rrn", "Semi-supervised semantic segmentation with Region Relevance Networks: "
                  "train, sweep on Ray, track in MLflow, deploy on Kubernetes.")
    run_commands.register(app)
    train_commands.register(app)  # `rrn train`, tracked in MLflow
    app.add_typer(data_commands.app, name="data")
    app.add_typer(weights_commands.app, name="weights")
    app.add_typer(space_commands.app, name="space")
    sweep_commands.register(app)
    report_commands.register(app)
    jobs_commands.register(app)
    app.add_typer(k8s_commands.app, name="k8s")
    return app


app = build_app()


def main() -> None:
    app()
