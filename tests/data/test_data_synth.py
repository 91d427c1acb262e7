"""The synthetic data set: deterministic, VOC layout, N classes, varied, reused, never clobbering."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rrn_core.data import DataError, build_datasets, check_dataset, generate_synthetic
from rrn_core.config_sections import DataConfig

SMALL = {"num_classes": 5, "num_train": 24, "num_val": 6, "size": 48}


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = generate_synthetic(tmp_path / "a", seed=3, **SMALL)
    b = generate_synthetic(tmp_path / "b", seed=3, **SMALL)
    c = generate_synthetic(tmp_path / "c", seed=4, **SMALL)
    assert file_bytes(a) == file_bytes(b)
    assert file_bytes(a)["JPEGImages/img_000000.jpg"] != file_bytes(c)["JPEGImages/img_000000.jpg"]


def test_voc_layout_classes_and_palette_masks(tmp_path: Path) -> None:
    root = generate_synthetic(tmp_path / "s", seed=0, **SMALL)
    train = (root / "ImageSets/Segmentation/train.txt").read_text().split()
    val = (root / "ImageSets/Segmentation/val.txt").read_text().split()
    assert len(train) == 24 and len(val) == 6 and not set(train) & set(val)
    assert (root / "classes.txt").read_text().splitlines() == [
        "background", "object_1", "object_2", "object_3", "object_4"]
    seen: set[int] = set()
    class_sets = set()
    for sample_id in train + val:
        mask_img = Image.open(root / "SegmentationClass" / f"{sample_id}.png")
        assert mask_img.mode == "P"
        image = Image.open(root / "JPEGImages" / f"{sample_id}.jpg")
        assert image.mode == "RGB" and image.size == (48, 48)
        mask = np.asarray(mask_img)
        values = set(np.unique(mask).tolist())
        assert values <= {0, 1, 2, 3, 4, 255} and 255 in values  # VOC-style outlines
        seen |= values
        class_sets.add(frozenset(values))
    assert seen == {0, 1, 2, 3, 4, 255}
    assert len(class_sets) >= 5  # images differ in which classes they show
    cfg = DataConfig(root=str(root), num_classes=5, crop_size=32, label_ratio=0.25)
    assert check_dataset(cfg) == []
    bundle = build_datasets(cfg, 0)
    assert bundle.class_names[0] == "background" and len(bundle.unlabeled) == 18


def test_classes_have_several_appearances(tmp_path: Path) -> None:
    """The same class must not always look the same (that is what makes few labels hard)."""
    root = generate_synthetic(tmp_path / "s", seed=0, num_classes=3, num_train=40, num_val=1, size=48)
    colours = []
    for sample_id in (root / "ImageSets/Segmentation/train.txt").read_text().split():
        image = np.asarray(Image.open(root / "JPEGImages" / f"{sample_id}.jpg"), dtype=np.float64)
        mask = np.asarray(Image.open(root / "SegmentationClass" / f"{sample_id}.png"))
        if (mask == 1).sum() > 50:
            colours.append(image[mask == 1].mean(0))
    spread = np.ptp(np.array(colours), axis=0).max()
    assert len(colours) >= 5 and spread > 60


def test_grayscale_option(tmp_path: Path) -> None:
    root = generate_synthetic(tmp_path / "g", seed=0, grayscale=True, **SMALL)
    assert Image.open(root / "JPEGImages/img_000000.jpg").mode == "L"
    item = build_datasets(DataConfig(root=str(root), num_classes=5, crop_size=32), 0).labeled[(0, 0)]
    assert item["image"].shape == (3, 32, 32)


def test_reuse_and_refusal_to_clobber(tmp_path: Path) -> None:
    root = generate_synthetic(tmp_path / "s", seed=0, **SMALL)
    marker = root / "JPEGImages/img_000000.jpg"
    mtime = marker.stat().st_mtime_ns
    assert generate_synthetic(root, seed=0, **SMALL) == root
    assert marker.stat().st_mtime_ns == mtime  # same parameters: reused, not rewritten
    with pytest.raises(DataError, match="other parameters"):
        generate_synthetic(root, seed=1, **SMALL)
    generate_synthetic(root, seed=1, overwrite=True, **SMALL)
    assert '"seed": 1' in (root / "synth.json").read_text()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "precious.txt").write_text("keep")
    with pytest.raises(DataError, match="not a synthetic data set"):
        generate_synthetic(other, overwrite=True, **SMALL)
    assert (other / "precious.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "s"]  # no temp folders left


def test_generation_is_fast(tmp_path: Path) -> None:
    start = time.perf_counter()
    generate_synthetic(tmp_path / "f", num_classes=6, num_train=100, num_val=20, size=96)
    # 500 images of 96x96 take ~2 s on one laptop core; 120 must stay far below 6 s on CI.
    assert time.perf_counter() - start < 6.0


def test_shapes_family_is_a_different_deterministic_set(tmp_path: Path) -> None:
    """The second generator: same layout and reuse rules, classes by outline, its own images."""
    a = generate_synthetic(tmp_path / "a", seed=0, family="shapes", **SMALL)
    b = generate_synthetic(tmp_path / "b", seed=0, family="shapes", **SMALL)
    textures = generate_synthetic(tmp_path / "t", seed=0, **SMALL)
    assert file_bytes(a) == file_bytes(b)
    assert file_bytes(a)["JPEGImages/img_000000.jpg"] != file_bytes(textures)["JPEGImages/img_000000.jpg"]
    seen: set[int] = set()
    for mask_path in sorted((a / "SegmentationClass").glob("*.png")):
        seen |= set(np.unique(np.asarray(Image.open(mask_path))).tolist())
    assert seen == {0, 1, 2, 3, 4, 255}  # every class appears, outlines are ignore
    assert check_dataset(DataConfig(root=str(a), num_classes=5, crop_size=32, label_ratio=0.25)) == []
    with pytest.raises(DataError):  # a set of the other family is not silently reused
        generate_synthetic(a, seed=0, **SMALL)
    with pytest.raises(ValueError, match="family"):
        generate_synthetic(tmp_path / "x", family="stripes", **SMALL)
