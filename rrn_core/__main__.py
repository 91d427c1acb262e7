"""`python -m rrn_core train | eval | predict | data ...`: the one-machine commands
without orchestration's, so a Python without Ray, MLflow or Optuna (a lent GPU
machine, see scripts/gpu-check.sh) runs them. `rrn train` is the same run plus
MLflow tracking."""

from __future__ import annotations

from rrn_core import cli as core_cli
from rrn_core.cli_errors import cli_app
from rrn_core.data import cli as data_cli

app = cli_app("rrn_core", "Train, evaluate and predict on this machine (no Ray, MLflow or Optuna).")
core_cli.register(app)
app.add_typer(data_cli.app, name="data")

if __name__ == "__main__":
    app()
