"""bench/real_sets.py: the two real sets built from package-shipped files are valid VOC
sets with their own class counts, grayscale images, some smaller than a 48 crop, and
val digits drawn from digits training never sees."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import real_sets  # noqa: E402
from rrn_core.config_sections import DataConfig  # noqa: E402
from rrn_core.data.check import check_dataset  # noqa: E402


@pytest.mark.parametrize("name", sorted(real_sets.SETS))
def test_each_set_is_a_valid_voc_set_of_its_own_classes(tmp_path: Path, name: str) -> None:
    root = real_sets.build(tmp_path, name)
    class_names, num_train, num_val = real_sets.SETS[name]
    assert (root / "classes.txt").read_text().split() == class_names
    problems = check_dataset(DataConfig(root=str(root), num_classes=len(class_names)), workers=1)
    assert problems == []

    ids = (root / "ImageSets/Segmentation/train.txt").read_text().split()
    assert len(ids) == num_train
    assert len((root / "ImageSets/Segmentation/val.txt").read_text().split()) == num_val
    sizes, seen = [], set()
    for sample_id in ids:
        image = Image.open(root / "JPEGImages" / f"{sample_id}.jpg")
        assert image.mode == "L"
        mask = np.asarray(Image.open(root / "SegmentationClass" / f"{sample_id}.png"))
        assert mask.shape == (image.height, image.width)
        seen |= set(np.unique(mask).tolist())
        sizes.append(min(image.size))
    assert seen == set(range(len(class_names))) | {255}, "every class and the ignored rim occur"
    if name == "digits_on_photos":
        assert min(sizes) < 48 <= max(sizes), "some images are smaller than the crop"


def test_builds_are_reproducible_and_seeded(tmp_path: Path) -> None:
    a = real_sets.build(tmp_path / "a", "digits", seed=0)
    b = real_sets.build(tmp_path / "b", "digits", seed=0)
    c = real_sets.build(tmp_path / "c", "digits", seed=1)
    read = lambda root: np.asarray(Image.open(root / "SegmentationClass/train_0000.png"))  # noqa: E731
    assert np.array_equal(read(a), read(b))
    assert not np.array_equal(read(a), read(c))
