"""bench/input_pipeline.py's pieces on a tiny generated set: the generated trees read
through the run's own datasets and loaders, the stage profile adds up, and a
baseline revision is measured with its own rrn_core (before/after in one run)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from input_pipeline import (generate_cityscapes, generate_voc, item_ms, measure_in, measure_loaders,  # noqa: E402
                            pipeline_config, profile_stages, source_tree)


def test_voc_and_cityscapes_trees_feed_the_training_loaders(tmp_path) -> None:
    voc = generate_voc(tmp_path / "voc", 4, size=(100, 75))
    r = measure_loaders(pipeline_config("voc", voc, 0, crop=32, batch=2), steps=1)
    assert r["images_s"] > 0 and r["processes"] == 3
    stages = profile_stages(pipeline_config("voc", voc, 0, crop=32, batch=2), items=2)
    assert set(stages) == {"decode", "geometry", "strong", "normalize", "cutmix+masks"}
    assert item_ms(pipeline_config("voc", voc, 0, crop=32, batch=2), items=2)["cpu"] > 0
    city = generate_cityscapes(tmp_path / "city", 2, size=(128, 64))
    r = measure_loaders(pipeline_config("cityscapes", city, 0, crop=32, batch=1), steps=1)
    assert r["step_s"] > 0


def test_a_baseline_revision_runs_with_its_own_rrn_core(tmp_path) -> None:
    old = source_tree("HEAD", tmp_path / "baseline")
    assert (old / "rrn_core" / "data" / "transforms.py").is_file()
    voc = generate_voc(tmp_path / "voc", 2, size=(100, 75))
    # the child refuses to measure if rrn_core came from anywhere but `old`
    r = measure_in(old, "voc", voc, 0, steps=1, items=1, crop=24, batch=1)
    assert r["images_s"] > 0 and r["item_ms"]["cpu"] > 0 and r["item_ms"]["wall"] > 0
    assert measure_in(None, "voc", voc, 0, steps=1, items=1, crop=24, batch=1)["processes"] == 3
