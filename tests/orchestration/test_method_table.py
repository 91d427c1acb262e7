"""The methods table is the one list of methods: a method added to it reaches the CLI
help, the report's colours and the tests parametrised over methods, with no other edit.

The throwaway method joins the table in this process only (its config model is not in
`RunConfig`'s union, which is built once at import): what is checked here are the
places that read the method list, not a run of the method.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest
import torch.nn.functional as F
from matplotlib.colors import to_hex
from typer.testing import CliRunner

from orchestration.display_names import method_color
from orchestration.report.plots import label_efficiency_figure
from rrn.cli import build_app
from rrn_core.constants import IGNORE_INDEX
from rrn_core.methods.base import Batch, Method, MethodSettings, StepContext, StepOutput
from rrn_core.method_names import METHOD_NAMES
from rrn_core.methods.table import METHODS

from method_lists import all_methods, semi_supervised_methods

NAME = "throwaway"


class ThrowawayConfig(MethodSettings):
    name: Literal["throwaway"] = NAME


class Throwaway(Method):
    """The smallest method: the labeled loss of its one branch."""

    config_model = ThrowawayConfig

    def forward(self, batch: Batch, ctx: StepContext) -> StepOutput:
        labeled = batch["labeled"]
        loss = F.cross_entropy(self.branches[0](labeled["image"]), labeled["mask"],
                               ignore_index=IGNORE_INDEX)
        return StepOutput(loss=loss, scalars={"loss_sup": loss.detach()})


@pytest.fixture
def throwaway() -> Iterator[str]:
    """`Throwaway` added to the table (and its torch-free name list) as a new method's
    one line would add it; both restored afterwards, whatever the test did."""
    METHODS[NAME] = Throwaway
    METHOD_NAMES.append(NAME)
    try:
        yield NAME
    finally:
        del METHODS[NAME]
        METHOD_NAMES.remove(NAME)


def test_the_name_list_is_the_tables_keys() -> None:
    """`rrn --help` and the colours read rrn_core/method_names.py, not the table (which
    imports torch): the two must list the same methods in the same order."""
    assert METHOD_NAMES == list(METHODS)


def test_help_lists_the_methods_without_importing_torch() -> None:
    probe = ("import sys; from rrn.cli import build_app; build_app(); "
             "print(sorted(m for m in ('torch', 'rrn_core.methods') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_a_new_method_reaches_help_colours_and_parametrised_tests(throwaway: str) -> None:
    # the CLI help, as `rrn` builds it
    result = CliRunner().invoke(build_app(), ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"({', '.join(METHOD_NAMES[:-1])} or {throwaway})" in " ".join(result.output.split())

    # the report's colours: a line of its own, in a colour no other method has
    rows = [{"trial_id": f"{m}{seed}", "run_name": m, "method": m, "label_ratio": 0.125,
             "label_count": np.nan, "seed": seed, "objective": 0.5, "miou_best": 0.5,
             "miou_final": 0.5, "collapsed": False, "run_id": f"{m}{seed}"}
            for m in METHODS for seed in (0, 1)]
    fig = label_efficiency_figure(pd.DataFrame(rows))
    colors = {ln.get_label(): to_hex(ln.get_color()) for ln in fig.axes[0].get_lines()
              if not ln.get_label().startswith("_")}   # the legend's lines, not markers or bars
    assert colors[throwaway] == method_color(throwaway)
    assert len(set(colors.values())) == len(METHODS), colors

    # the lists tests parametrise over (tests/method_lists.py)
    assert all_methods()[-1] == throwaway
    assert throwaway in semi_supervised_methods()   # Method.uses_unlabeled defaults to True


def test_the_fixture_leaves_the_table_as_it_was() -> None:
    assert NAME not in METHODS and NAME not in METHOD_NAMES
