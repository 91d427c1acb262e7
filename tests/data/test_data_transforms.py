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
from rrn_core.data.transforms import (MEAN, STD, _shift_hue, crop_image, crop_mask, cutmix_boxes, cutmix_mask,
                                      denormalize, normalize, sample_geometry, strong_view)
from rrn_core.config_sections import CutMixConfig, DataConfig


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
        # (the bilinear image blends the one column at the edge, an exact 50/50 tie that
        # may round either way by one grey level; the nearest mask cannot blend)
        tie = 1.5 / 255
        assert torch.all(weak[white] > 0.5 - tie) and torch.all(weak[black] < 0.5 + tie)
        inner = white[:, 1:-1] & white[:, :-2] & white[:, 2:]
        assert torch.all(weak[:, 1:-1][inner] > 0.99)
        # photometric noise keeps white brighter than black where the mask says so
        assert strong[white].mean() > strong[black].mean() + 0.2
        changed += not torch.equal(item["image_weak"], item["image_strong"])
        flips.add(bool(white[:, 0].any()))
        labeled = bundle.labeled[(0, aug_seed)]
        lw = denormalize(labeled["image"]).mean(0)
        assert torch.all(lw[labeled["mask"] == 1] > 0.5 - tie) and torch.all(lw[labeled["mask"] == 0] < 0.5 + tie)
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


def resize_then_crop(image: Image.Image, mask: np.ndarray, crop: int, scale: float, x: int, y: int,
                     flip: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pipeline as it was: scale the whole image (bilinear) and mask (nearest), pad
    right/bottom with 0 / 255, crop, flip; the reference the crop-first path must match."""
    w, h = image.size
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    img = np.asarray(image.resize((nw, nh), Image.BILINEAR)).astype(np.int64)
    rows = np.minimum((np.arange(nh) + 0.5) * h / nh, h - 1).astype(np.int64)
    cols = np.minimum((np.arange(nw) + 0.5) * w / nw, w - 1).astype(np.int64)
    lab = mask[rows[:, None], cols[None, :]]
    ph, pw = max(crop, nh), max(crop, nw)
    img = np.pad(img, ((0, ph - nh), (0, pw - nw), (0, 0)))
    lab = np.pad(lab, ((0, ph - nh), (0, pw - nw)), constant_values=255)
    ign = np.pad(np.zeros((nh, nw), np.int64), ((0, ph - nh), (0, pw - nw)), constant_values=255)
    img, lab, ign = img[y:y + crop, x:x + crop], lab[y:y + crop, x:x + crop], ign[y:y + crop, x:x + crop]
    return (img[:, ::-1], lab[:, ::-1], ign[:, ::-1]) if flip else (img, lab, ign)


@pytest.mark.parametrize("size", [(50, 37), (17, 11), (64, 9)])   # larger and smaller than the crop
def test_crop_first_geometry_matches_resize_then_crop(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    w, h = size
    image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    mask = rng.integers(0, 40, (h, w)).astype(np.int64)   # 40 classes: no VOC-only assumption
    mask[0, :] = 255
    crop = 24
    for draw in range(20):
        g = sample_geometry(image.size, np.random.default_rng(draw), crop, (0.5, 2.0))
        scale = float(np.random.default_rng(draw).uniform(0.5, 2.0))
        ref_img, ref_lab, ref_ign = resize_then_crop(image, mask, crop, scale, g.x, g.y, g.flip)
        lab, ign = crop_mask(mask, g)
        img = crop_image(image, g)
        assert img.shape == (crop, crop, 3) and img.dtype == np.uint8
        assert lab.dtype == np.int64 and ign.dtype == np.int64
        assert np.array_equal(lab, ref_lab)                          # class ids exactly
        assert np.abs(img.astype(np.int64) - ref_img).max() <= 1      # box rounding only
        assert np.array_equal(ign, ref_ign)
        assert np.all(img[ign == 255] == 0)
    none_lab, _ = crop_mask(None, g)
    assert np.all(none_lab == 255)


def test_strong_view_reuses_the_weak_crop_only_when_nothing_was_drawn() -> None:
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    before = img.copy()
    same = grey = 0
    for seed in range(200):
        out = strong_view(img, np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == np.uint8
        if out is img:
            same += 1
        elif np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2]):
            grey += 1
        assert np.array_equal(strong_view(img, np.random.default_rng(seed)), out)   # pure function of the seed
    assert np.array_equal(img, before)             # the weak crop is never written
    assert 4 <= same <= 32                          # p = 0.2 * 0.8 * 0.5 = 0.08 of 200
    assert 20 <= grey <= 70                         # p = 0.2


def test_normalize_table_matches_the_arithmetic() -> None:
    img = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    arr = (img.astype(np.float32) / np.float32(255.0) - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    assert torch.equal(normalize(img), torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))))


def test_strong_view_ops_keep_their_meaning() -> None:
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 200
    # a third of a turn of hue takes red to green, keeping saturation and value
    assert np.abs(_shift_hue(red, 1 / 3).astype(int) - [0, 200, 0]).max() <= 6
    assert np.array_equal(_shift_hue(red, 0.0), red)
    flipped = np.random.default_rng(0).integers(0, 256, (8, 10, 3), dtype=np.uint8)[:, ::-1]
    for seed in range(8):   # a flipped view (negative strides) is accepted, the same as its copy
        assert np.array_equal(strong_view(flipped, np.random.default_rng(seed)),
                              strong_view(flipped.copy(), np.random.default_rng(seed)))
