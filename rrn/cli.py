"""The `rrn` command: one Typer app gathering each area's commands.

Each area owns its own CLI module (so their owners never edit one shared file);
heavy imports (torch, ray, mlflow) stay inside the command bodies so `rrn --help`
answers at once.
"""

from __future__ import annotations

from orchestration import cli_jobs, cli_k8s, cli_report, cli_space, cli_sweep, cli_train
from rrn_core import cli as core_cli
from rrn_core.cli_errors import cli_app
from rrn_core.data import cli as data_cli
from rrn_core.models import cli as weights_cli

app = cli_app("rrn", "Semi-supervised semantic segmentation with Region Relevance Networks: "
              "train, sweep on Ray, track in MLflow, deploy on Kubernetes.")

core_cli.register(app)
cli_train.register(app)  # `rrn train`, tracked in MLflow (replaces rrn_core's untracked one)
app.add_typer(data_cli.app, name="data")
app.add_typer(weights_cli.app, name="weights")
app.add_typer(cli_space.app, name="space")
cli_sweep.register(app)
cli_report.register(app)
cli_jobs.register(app)
app.add_typer(cli_k8s.app, name="k8s")


def main() -> None:
    app()
