"""The second round of bad input (issue 23), the cases a table row cannot hold: a
read-only or full file system (real mounts: a tmpfs of 64 KiB, a read-only bind
mount) and user text that must print as written. The refusals still go through the
table test's own check (test_bad_input.py: exit 2, one message naming the file or
field, no traceback, nothing written); the world is the table's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from test_bad_input import GOOD_CONFIG, Row, World, argv, copy_data, space_tree, world, write_yaml  # noqa: F401
from test_bad_input import test_bad_input_is_refused as refused_like_the_table

pytestmark = pytest.mark.slow

# --------------------------------------------------------------------------- 10: read-only root, full disk


@contextmanager
def mounted(target: Path, *how: str) -> Iterator[Path]:
    """`mount *how target` for the test's length (a tmpfs of a few KB, or a read-only
    bind mount): a real full or read-only file system, not a simulated errno. Needs
    root and a kernel that lets this container mount; skipped with the reason otherwise."""
    target.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip(reason="mounting a tiny or read-only file system needs root")
    done = subprocess.run(["mount", *how, str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(reason=f"this container cannot mount file systems: {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


@contextmanager
def read_only_copy(source: Path, target: Path) -> Iterator[Path]:
    """`target`: a read-only view (bind mount) of `source`."""
    with mounted(target, "--bind", str(source)):
        done = subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(reason=f"this container cannot remount read-only: {done.stderr.strip()}")
        yield target


def _read_only_root(command: str) -> Callable[[World, Path], tuple[list[str], list[str]]]:
    """`rrn train` or `rrn sweep` on a config whose data root (label_ratio 0.5: a split to
    draw) is mounted read-only at case/ro."""
    def setup(w: World, case: Path) -> tuple[list[str], list[str]]:
        tree = yaml.safe_load(yaml.safe_dump(GOOD_CONFIG))
        tree["data"]["root"] = "ro"
        cfg = write_yaml(case / "cfg.yaml", tree)
        names = ["data.split_dir", str(case / "ro"), "not writable", "cannot write split files"]
        if command == "train":
            return ["train", str(cfg), "--no-track"], ["cfg.yaml", *names]
        space = space_tree(w.root)
        space["base_config"] = str(cfg)
        return ["sweep", str(write_yaml(case / "space.yaml", space))], ["space.yaml", *names]
    return setup


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_read_only_data_root_is_refused_before_anything_starts(
        command: str, world: World, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23 #10: the split a run draws cannot be written: said by the up-front
    check (a sweep: before Ray starts), exit 2, nothing written."""
    row = Row(f"{command}-read-only-data-root", _read_only_root(command))
    case = world.case_dir(row.id)
    source = case.parent.parent / f"ro-source-{command}"   # outside the row's folder, same tree
    if not source.exists():
        shutil.copytree(world.data, source, ignore=shutil.ignore_patterns("splits"))
    with read_only_copy(source, case / "ro"):
        refused_like_the_table(row, world, request, monkeypatch)


def test_read_only_root_with_its_split_drawn_is_fine(world: World) -> None:
    """The safe side of the same rule: a read-only root whose split files are already
    there, as drawn, needs no write."""
    from rrn_core.config import build_config
    from rrn_core.data.bundle import layout_for, resolve_splits
    from rrn_core.run_checks import split_files_problem

    source = world.root / "ro-source-drawn"
    if not source.exists():
        shutil.copytree(world.data, source, ignore=shutil.ignore_patterns("splits"))
    cfg = build_config({**GOOD_CONFIG, "data": {**GOOD_CONFIG["data"], "root": str(source)}})
    resolve_splits(cfg.data, layout_for(cfg.data))       # drawn while writable
    view = world.root / "ro-view"
    with read_only_copy(source, view):
        cfg = build_config({**GOOD_CONFIG, "data": {**GOOD_CONFIG["data"], "root": str(view)}})
        assert split_files_problem(cfg) is None
        other = build_config({**GOOD_CONFIG, "data": {**GOOD_CONFIG["data"], "root": str(view),
                                                     "split_seed": 1}})
        assert "not writable" in (split_files_problem(other) or "")


def test_full_disk_under_rrn_home_is_refused(world: World, request: pytest.FixtureRequest,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23 #10: `rrn train` with RRN_HOME on a (64 KiB) full file system: one message
    naming the folder and the space it needs, exit 2, no half-made mlflow.db."""
    row = Row("train-full-rrn-home", argv("train", "{cfg}", "--set", "runtime.output_dir={case}/out",
                                           names=["{case}/home", "MiB free", "mlflow.db", "RRN_HOME"]),
              env={"RRN_HOME": "{case}/home"})
    case = world.case_dir(row.id)
    with mounted(case / "home", "-t", "tmpfs", "-o", "size=64k", "tmpfs"):
        refused_like_the_table(row, world, request, monkeypatch)
        assert not list((case / "home").iterdir())


def test_a_store_made_on_a_full_disk_leaves_no_database(world: World) -> None:
    """Past the free-space check (a disk that fills meanwhile): MLflow's tables are made
    in a scratch file and linked into place whole, so a failure leaves nothing."""
    from orchestration.tracking.store import StoreError, open_client

    home = world.root / "full-home"
    with mounted(home, "-t", "tmpfs", "-o", "size=64k", "tmpfs"):
        with pytest.raises(StoreError, match="mlflow.db: cannot create the MLflow store .*full"):
            open_client(f"sqlite:///{home / 'mlflow.db'}")
        assert not list(home.iterdir())


# --------------------------------------------------------------------------- 11: user text is not markup

#: Class and file names a rich console would read as markup (a closing tag alone is
#: a MarkupError; `[moving]` vanished as an unknown style).
MARKUP_NAMES = ["background", "[/bold]", "vehicle [moving]", "[red]tree[/red]"]


def run_cli(args: list[str], world: World, monkeypatch: pytest.MonkeyPatch) -> Any:
    from typer.testing import CliRunner

    from rrn.cli import app

    monkeypatch.setenv("RRN_HOME", str(world.root / "home"))
    monkeypatch.chdir(world.root)
    return CliRunner().invoke(app, args)


def test_class_names_are_printed_as_written(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """`rrn data stats` and `rrn eval` print every class name verbatim (issue 23 #11)."""
    case = world.case_dir("markup-class-names")
    data = copy_data(world, case)
    (data / "classes.txt").write_text("\n".join(MARKUP_NAMES) + "\n")
    for args in (["data", "stats", str(data)],
                 ["eval", str(world.checkpoint), "--set", f"data.root={data}"]):
        result = run_cli(args, world, monkeypatch)
        assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
        assert "Traceback" not in result.output
        for name in MARKUP_NAMES:
            assert name in result.output, f"{args}: {name!r} not printed:\n{result.output}"


def test_image_names_with_brackets_are_predicted_and_named(world: World,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`rrn predict` on files named like markup: every output written, every name printed."""
    case = world.case_dir("markup-image-names")
    names = ["a[red].jpg", "[bold].jpg", "b [x].jpg", "in[/c.jpg"]   # in[/c: "[/" opens a closing tag
    (case / "in[").mkdir(exist_ok=True)
    for name in names:
        shutil.copyfile(world.image, case / name)
    result = run_cli(["predict", str(world.checkpoint), *(str(case / n) for n in names),
                      "-o", str(case / "pred")], world, monkeypatch)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    for name in names:
        assert f"{case / name} -> {case / 'pred'}" in result.output, result.output
        stem = Path(name).stem
        assert (case / "pred" / f"{stem}_overlay.png").is_file()
        assert (case / "pred" / f"{stem}_mask.png").is_file()
