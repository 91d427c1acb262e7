"""`python -m rrn_core train | eval | predict | data ...`: the one-machine commands
without orchestration's, so a Python without Ray, MLflow or Optuna (a lent GPU
machine, see scripts/gpu-check.sh) runs them. `rrn train` is the same run plus
MLflow tracking."""

from __future__ import annotations

from rrn import data_commands, run_commands
from rrn.console import cli_app

app = cli_app("rrn_core", "Train, evaluate and predict on this machine (no Ray, MLflow or Optuna).")
app.command("train")(run_commands.untracked_train_command)
run_commands.register(app)
app.add_typer(data_commands.app, name="data")

if __name__ == "__main__":
    app()
