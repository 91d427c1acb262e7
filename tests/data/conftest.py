"""Fixtures for the data tests: fresh tiny data trees under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_trees import write_cityscapes, write_voc


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    root = tmp_path / "voc"
    write_voc(root)
    return root


@pytest.fixture
def city_root(tmp_path: Path) -> Path:
    root = tmp_path / "cityscapes"
    write_cityscapes(root)
    return root
