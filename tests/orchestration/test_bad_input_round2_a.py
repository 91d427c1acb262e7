"""Issue 23, part A: inputs that used to lose, overwrite or run something, as table rows.

The same world, the same four checks as test_bad_input.py (exit 2, no traceback, the
file/field named, nothing written or changed anywhere under the world's folder, its
MLflow store included): `rrn predict` over an existing mask, `rrn data split` over a
hand-edited split, `rrn data synth --overwrite` over foreign files, a resume with a
changed config or a broken checkpoint, a split folder that cannot be written (all
tracked: no MLflow run may be created first), a sweep resume whose searcher state is
a hostile pickle, and a sweep whose name another live driver holds. Concurrency and
signals have their own tests (test_sweep_lease.py, test_local_cluster_signals.py).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import time
from pathlib import Path

import pytest
from test_bad_input import GOOD_CONFIG, Row, World, copy_data, space_tree, world, write_file, write_yaml  # noqa: F401
from test_bad_input import test_bad_input_is_refused as refused_as_the_table_checks

pytestmark = pytest.mark.slow


def _predict_over_mask(w: World, case: Path) -> tuple[list[str], list[str]]:
    """--out is the images' own folder, which holds a ground-truth `<name>_mask.png`."""
    image = case / w.image.name
    shutil.copy(w.image, image)
    write_file(case, f"{w.image.stem}_mask.png", b"ground truth")
    return (["predict", str(w.checkpoint), str(image), "-o", str(case)],
            [f"{w.image.stem}_mask.png", "--overwrite"])


def _split_hand_edited(w: World, case: Path) -> tuple[list[str], list[str]]:
    from rrn_core.data.bundle import derived_split_folder, draw_split, layout_for
    from rrn_core.config_sections import DataConfig

    data = copy_data(w, case)
    cfg = DataConfig(root=str(data), num_classes=4)
    layout = layout_for(cfg)
    folder = derived_split_folder(cfg, layout, 0.5, None, 0)
    draw_split(layout.samples(None, "train", need_mask=False), 0.5, None, 0, folder, "train.txt")
    labeled = folder / "labeled.txt"
    labeled.write_text(labeled.read_text().splitlines()[0] + "\n")   # hand-edited: one image kept
    return ["data", "split", str(data), "--ratio", "0.5"], ["labeled.txt", "--overwrite"]


def _synth_overwrite_foreign(w: World, case: Path) -> tuple[list[str], list[str]]:
    from rrn_core.data import generate_synthetic

    out = generate_synthetic(case / "synth", num_classes=3, num_train=2, num_val=1, size=16)
    write_file(out, "best.pt", b"a checkpoint someone put here")
    return (["data", "synth", str(out), "--classes", "3", "--train", "3", "--val", "1", "--size", "16",
             "--overwrite"], ["best.pt", "did not write"])


def _earlier_run(w: World, case: Path) -> Path:
    """A copy of the world's trained run (cps, lr 0.0025, ratio 0.5) in the case folder."""
    run = case / "run"
    if not run.exists():
        shutil.copytree(w.checkpoint, run)
    return run


def _resume_changed(w: World, case: Path) -> tuple[list[str], list[str]]:
    run = _earlier_run(w, case)
    return (["train", str(w.config), "--output-dir", str(run), "--set", "optim.lr=0.5",
             "--set", "data.label_ratio=0.25"],
            ["last.pt", "optim.lr", "data.label_ratio", "0.5", "--fork"])


def _resume_other_method(w: World, case: Path) -> tuple[list[str], list[str]]:
    run = _earlier_run(w, case)
    return (["train", str(w.config), "--output-dir", str(run), "--set", "method.name=supervised"],
            ["last.pt", "method.name", "'cps' in the checkpoint"])


def _resume_zero_byte(w: World, case: Path) -> tuple[list[str], list[str]]:
    last = case / "run" / "checkpoints" / "last.pt"
    last.parent.mkdir(parents=True, exist_ok=True)
    last.write_bytes(b"")
    return (["train", str(w.config), "--output-dir", str(case / "run")],
            ["last.pt", "not a readable checkpoint"])


def _fork_other_network(w: World, case: Path) -> tuple[list[str], list[str]]:
    run = _earlier_run(w, case)
    return (["train", str(w.config), "--output-dir", str(case / "fork"), "--fork", str(run),
             "--set", "model.backbone=resnet34d"], ["--fork", "model.backbone"])


def _split_dir_unwritable(w: World, case: Path) -> tuple[list[str], list[str]]:
    blocker = write_file(case, "blocker", "x")    # (the tests run as root: no chmod-read-only)
    return (["train", str(w.config), "--output-dir", str(case / "run"),
             "--set", f"data.split_dir={blocker}/splits"], ["data.split_dir", "blocker"])


class _Hostile:
    """Unpickling this creates a file: what a shell command would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "ran"))


def _sweep_resume_hostile_state(w: World, case: Path) -> tuple[list[str], list[str]]:
    """A results folder with a finished trial and a searcher state whose unpickling runs code."""
    tree = space_tree(w.root, "hostile")
    tree["base_config"] = str(w.config)
    tree["storage"] = {"path": str(case / "results")}
    space = write_yaml(case / "space.yaml", tree)
    folder = case / "results" / "hostile"
    folder.mkdir(parents=True)
    finished = [json.dumps({"status": "TERMINATED"}), json.dumps({"last_result": {"val/mIoU": 0.5}})]
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": [finished]}))
    (folder / "tuner.pkl").write_bytes(b"")   # what Tune checks for a restorable experiment
    (folder / "searcher-state-2026-01-01_00-00-00.pkl").write_bytes(pickle.dumps(_Hostile(case / "pwned")))
    return ["sweep", str(space), "--resume"], ["searcher-state-", "not signed", "name"]


def _sweep_name_running(w: World, case: Path) -> tuple[list[str], list[str]]:
    """A live driver (this test process, same machine, fresh heartbeat) holds the lease."""
    tree = space_tree(w.root, "busy")
    tree["base_config"] = str(w.config)
    tree["storage"] = {"path": str(case / "results")}
    space = write_yaml(case / "space.yaml", tree)
    lease = {"owner": "someone", "host": socket.gethostname(), "pid": os.getpid(),
             "started": time.time(), "heartbeat": time.time() + 3600}
    (case / "results").mkdir()
    write_file(case / "results", "busy.lease.json", json.dumps(lease))
    return ["sweep", str(space)], ["sweep 'busy' is already running", f"pid {os.getpid()}", "busy.lease.json"]


ROWS_ROUND2_A: list[Row] = [
    Row("predict-existing-mask", _predict_over_mask),
    Row("data-split-hand-edited", _split_hand_edited),
    Row("synth-overwrite-foreign-file", _synth_overwrite_foreign),
    Row("train-resume-changed-config", _resume_changed),
    Row("train-resume-other-method", _resume_other_method),
    Row("train-resume-zero-byte-checkpoint", _resume_zero_byte),
    Row("train-fork-other-network", _fork_other_network),
    Row("train-split-dir-unwritable", _split_dir_unwritable),
    Row("sweep-resume-hostile-searcher-state", _sweep_resume_hostile_state),
    Row("sweep-name-running", _sweep_name_running),
]


@pytest.mark.parametrize("row", ROWS_ROUND2_A, ids=[r.id for r in ROWS_ROUND2_A])
def test_round2_a_bad_input_is_refused(row: Row, world: World, request: pytest.FixtureRequest,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    refused_as_the_table_checks(row, world, request, monkeypatch)
    assert not (world.case_dir(row.id) / "pwned").exists(), "the searcher state's pickle ran"


def test_the_default_output_folder_is_one_per_config() -> None:
    from rrn_core.config import build_config
    from rrn_core.resume_check import default_output_dir

    tree = {k: v for k, v in GOOD_CONFIG.items() if k != "runtime"}
    base = build_config(tree, {"data.root": "/data"})
    assert default_output_dir(base) == default_output_dir(build_config(tree, {"data.root": "/data",
                                                                              "runtime.progress": True}))
    assert default_output_dir(base) != default_output_dir(build_config(tree, {"data.root": "/data",
                                                                              "optim.lr": 0.5}))
    assert default_output_dir(base).startswith("runs/tiny-")
