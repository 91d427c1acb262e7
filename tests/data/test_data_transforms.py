"""Augmentation: a pure function of (index, aug_seed); weak and strong views share geometry."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rrn_core.data import build_datasets
from rrn_core.data.palette import save_mask_png
from rrn_core.data.transforms import cutmix_boxes, cutmix_mask, denormalize, normalize
from rrn_core.sections import CutMixConfig, DataConfig


def half_black_half_white(root: Path, n: int = 4) -> DataConfig:
    """Images whose right half is white and labelled 1: any geometry shows in image and mask alike."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets/Segmentation").mkdir(parents=True)
    ids = [f"im{i}" for i in range(n)]
    for i in ids:
        img = np.zeros((30, 40, 3), np.uint8)
        img[:, 20:] = 255
        mask = np.zeros((30, 40), np.uint8)
        mask[:, 20:] = 1
        Image.fromarray(img).save(root / "JPEGImages" / f"{i}.png")
        save_mask_png(mask, root / "SegmentationClass" / f"{i}.png")
    for subset in ("train", "val"):
        (root / "ImageSets/Segmentation" / f"{subset}.txt").write_text("\n".join(ids) + "\n")
    return DataConfig(root=str(root), num_classes=2, crop_size=24, scale_range=(0.5, 1.5),
                      label_count=1)


def assert_items_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_item_is_a_pure_function_of_index_and_aug_seed(voc_root: Path) -> None:
    cfg = DataConfig(root=str(voc_root), num_classes=3, crop_size=16, label_count=2)
    bundle = build_datasets(cfg, seed=0)
    for ds in (bundle.labeled, bundle.unlabeled):
        assert_items_equal(ds[(1, 42)], ds[(1, 42)])
        a, b = ds[(1, 42)], ds[(1, 43)]
        assert any(not torch.equal(a[k], b[k]) for k in a)
    # a fresh bundle (as after a resume) reproduces the same items
    assert_items_equal(build_datasets(cfg, seed=0).unlabeled[(2, 7)], bundle.unlabeled[(2, 7)])
    assert_items_equal(bundle.unlabeled[(-1, 7)], bundle.unlabeled[(len(bundle.unlabeled) - 1, 7)])
    with pytest.raises(IndexError):
        bundle.labeled[(5, 0)]


def test_int_keys_follow_the_global_random_state(voc_root: Path) -> None:
    bundle = build_datasets(DataConfig(root=str(voc_root), num_classes=3, crop_size=16), 0)
    random.seed(11)
    first = bundle.labeled[0]
    random.seed(11)
    assert_items_equal(first, bundle.labeled[0])


def test_weak_strong_and_mask_share_geometry(tmp_path: Path) -> None:
    bundle = build_datasets(half_black_half_white(tmp_path / "hw"), seed=0)
    flips, checked, changed = set(), 0, 0
    for aug_seed in range(16):
        item = bundle.unlabeled[(0, aug_seed)]
        weak = denormalize(item["image_weak"]).mean(0)
        strong = denormalize(item["image_strong"]).mean(0)
        white, black = item["mask"] == 1, item["mask"] == 0
        if not (white.any() and black.any()):
            continue  # the crop fell inside one half: nothing to compare
        checked += 1
        # (the bilinear image blends the one column at the edge; the nearest mask cannot)
        assert torch.all(weak[white] > 0.5) and torch.all(weak[black] < 0.5)
        inner = white[:, 1:-1] & white[:, :-2] & white[:, 2:]
        assert torch.all(weak[:, 1:-1][inner] > 0.99)
        # photometric noise keeps white brighter than black where the mask says so
        assert strong[white].mean() > strong[black].mean() + 0.2
        changed += not torch.equal(item["image_weak"], item["image_strong"])
        flips.add(bool(white[:, 0].any()))
        labeled = bundle.labeled[(0, aug_seed)]
        lw = denormalize(labeled["image"]).mean(0)
        assert torch.all(lw[labeled["mask"] == 1] > 0.5) and torch.all(lw[labeled["mask"] == 0] < 0.5)
    assert changed >= checked // 2  # the strong view is usually, not always, altered
    assert checked >= 8 and flips == {True, False}  # both flip outcomes were exercised


def test_normalize_roundtrip() -> None:
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = normalize(img)
    assert x.shape == (3, 5, 7)
    assert torch.allclose(denormalize(x), torch.from_numpy(img).permute(2, 0, 1).float() / 255, atol=1e-6)
    assert torch.allclose(denormalize(x[None])[0], denormalize(x))


@pytest.mark.parametrize("area", [(0.25, 0.5), (0.02, 0.05), (0.9, 1.0)])
def test_cutmix_box_area_within_range(area: tuple[float, float]) -> None:
    size = 64
    rng = np.random.default_rng(0)
    tol = 2.5 * size / size**2  # rounding of each side by at most half a pixel
    for _ in range(200):
        for x, y, w, h in cutmix_boxes(size, 3, area, rng):
            assert area[0] - tol <= w * h / size**2 <= area[1] + tol
            assert 0 <= x and x + w <= size and 0 <= y and y + h <= size


def test_cutmix_mask_values_and_prob() -> None:
    rng = np.random.default_rng(0)
    mask = cutmix_mask(32, CutMixConfig(boxes=1, area=(0.25, 0.25)), rng)
    assert set(np.unique(mask).tolist()) == {0, 1}
    assert abs(mask.sum() / 32**2 - 0.25) < 0.05
    assert not cutmix_mask(32, CutMixConfig(prob=0.0), rng).any()


def test_unlabeled_cutmix_box_in_items(voc_root: Path) -> None:
    cfg = DataConfig(root=str(voc_root), num_classes=3, crop_size=32, label_count=2,
                     cutmix=CutMixConfig(boxes=1, area=(0.3, 0.3)))
    box = build_datasets(cfg, 0).unlabeled[(0, 1)]["cutmix_box"]
    assert box.shape == (32, 32) and box.dtype == torch.int64
    assert abs(box.float().mean().item() - 0.3) < 0.05
