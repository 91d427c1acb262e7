"""bench/step_cost.py's before/after row: RRN's step as rrn.py was at a git revision
runs, on the same weights and batch as today's."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from step_cost import Runner, rrn_class_at  # noqa: E402


def in_git_checkout() -> bool:
    return shutil.which("git") is not None and subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True).returncode == 0


@pytest.mark.skipif(not in_git_checkout(), reason="needs a git checkout to read rrn.py at a revision")
def test_rrn_at_a_revision_runs_on_the_same_weights() -> None:
    args = argparse.Namespace(backbone="resnet18", width=8, crop=32, batch=2, classes=3, regions=2)
    device = torch.device("cpu")
    old_class = rrn_class_at("HEAD")
    assert old_class.__module__ == "rrn_at_HEAD"
    now, then = Runner("rrn", args, device), Runner("rrn@HEAD", args, device, old_class)
    assert type(then.method) is old_class
    for a, b in zip(now.method.state_dict().values(), then.method.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for key, stream in now.batch.items():
        for name, value in stream.items():
            assert torch.equal(value, then.batch[key][name])
    assert torch.isfinite(then.method(then.batch, then.ctx).loss)
    assert then.step() > 0
