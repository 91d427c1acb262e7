"""bench/input_pipeline.py's pieces on a tiny generated set: the generated trees read
through the run's own datasets and loaders, and the stage profile adds up."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from input_pipeline import generate_cityscapes, generate_voc, measure_loaders, pipeline_config, profile_stages  # noqa: E402


def test_voc_and_cityscapes_trees_feed_the_training_loaders(tmp_path) -> None:
    voc = generate_voc(tmp_path / "voc", 4, size=(100, 75))
    r = measure_loaders(pipeline_config("voc", voc, 0, crop=32, batch=2), steps=1)
    assert r["images_s"] > 0 and r["processes"] == 3
    stages = profile_stages(pipeline_config("voc", voc, 0, crop=32, batch=2), items=2)
    assert set(stages) == {"decode", "geometry", "strong", "normalize", "cutmix+masks"}
    city = generate_cityscapes(tmp_path / "city", 2, size=(128, 64))
    r = measure_loaders(pipeline_config("cityscapes", city, 0, crop=32, batch=1), steps=1)
    assert r["step_s"] > 0
