"""`rrn data` commands: help, synth, split, check, stats; user errors exit with code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rrn.data_commands import app
from rrn_core.data.splits import split_hash

runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["synth"], ["split"], ["check"], ["stats"]])
def test_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_synth_then_check_split_and_stats(tmp_path: Path) -> None:
    root = tmp_path / "synth"
    result = runner.invoke(app, ["synth", str(root), "--classes", "4", "--train", "8", "--val", "3",
                                 "--size", "32", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert len(list((root / "JPEGImages").glob("*.jpg"))) == 11

    result = runner.invoke(app, ["check", str(root)])  # num_classes read from classes.txt
    assert result.exit_code == 0, result.output
    assert "OK" in result.output

    result = runner.invoke(app, ["split", str(root), "--count", "3", "--seed", "2"])
    assert result.exit_code == 0, result.output
    folder = root / "splits/count_3_seed_2"
    digest = split_hash([folder / "labeled.txt", folder / "unlabeled.txt"])
    assert digest in result.output and str(folder / "labeled.txt") in result.output
    assert len((folder / "labeled.txt").read_text().split()) == 3

    result = runner.invoke(app, ["stats", str(root)])
    assert result.exit_code == 0, result.output
    assert "background" in result.output and "object_3" in result.output


def test_check_config_file_reports_problems_with_exit_2(tmp_path: Path, voc_root: Path) -> None:
    (voc_root / "SegmentationClass/2007_000002.png").unlink()
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"data": {"root": str(voc_root), "num_classes": 3}}))
    result = runner.invoke(app, ["check", str(config)])
    assert result.exit_code == 2
    assert "2007_000002.png: file not found" in result.output
    assert "1 problem" in result.output


def test_user_errors_exit_2(tmp_path: Path, voc_root: Path) -> None:
    result = runner.invoke(app, ["split", str(voc_root)])
    assert result.exit_code == 2 and "--ratio or --count" in result.output
    result = runner.invoke(app, ["split", str(voc_root), "--count", "99"])
    assert result.exit_code == 2 and "train.txt" in result.output
    result = runner.invoke(app, ["check", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "nowhere" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {root: x, num_classes: 1}\n")
    result = runner.invoke(app, ["check", str(bad)])
    assert result.exit_code == 2 and "data.num_classes" in result.output
    (tmp_path / "notsynth").mkdir()
    (tmp_path / "notsynth/file").write_text("x")
    result = runner.invoke(app, ["synth", str(tmp_path / "notsynth")])
    assert result.exit_code == 2 and "not a synthetic data set" in result.output
