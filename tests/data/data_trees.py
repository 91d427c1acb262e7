"""Tiny VOC- and Cityscapes-layout trees written by the data tests, with known pixel values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from rrn_core.data.palette import save_mask_png


def voc_mask(index: int, size: tuple[int, int], num_classes: int) -> np.ndarray:
    """A known mask: a class-coloured block on background, a 255 border column."""
    w, h = size
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1 + index % (num_classes - 1)
    mask[:, 0] = 255
    return mask


def voc_image(index: int, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    rng = np.random.default_rng(index)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_voc(root: Path, train: int = 6, val: int = 2, size: tuple[int, int] = (24, 20),
              num_classes: int = 3, mask_dir: str = "SegmentationClass") -> dict[str, list[str]]:
    """A VOC tree: JPEGImages/*.jpg, <mask_dir>/*.png (P mode), ImageSets/Segmentation/*.txt."""
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / mask_dir).mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    ids = {"train": [f"2007_{i:06d}" for i in range(train)],
           "val": [f"2008_{i:06d}" for i in range(val)]}
    for n, sample_id in enumerate(ids["train"] + ids["val"]):
        Image.fromarray(voc_image(n, size)).save(root / "JPEGImages" / f"{sample_id}.jpg", quality=95)
        save_mask_png(voc_mask(n, size, num_classes), root / mask_dir / f"{sample_id}.png")
    for subset, subset_ids in ids.items():
        (root / "ImageSets" / "Segmentation" / f"{subset}.txt").write_text("\n".join(subset_ids) + "\n")
    return ids


# Cityscapes label ids placed in the masks, and the train ids they must become.
CITY_LABEL_IDS = np.array([[7, 8, 26, 33], [0, 1, 24, 23]], dtype=np.uint8)
CITY_TRAIN_IDS = np.array([[0, 1, 13, 18], [255, 255, 11, 10]], dtype=np.int64)


def write_cityscapes(root: Path, train_ids: bool = False) -> dict[str, list[str]]:
    """Two cities in train, one in val; masks tile CITY_LABEL_IDS (or the train-id version)."""
    ids = {"train": ["aachen/aachen_000000_000019", "aachen/aachen_000001_000019",
                     "bremen/bremen_000000_000019"],
           "val": ["frankfurt/frankfurt_000000_000294"]}
    label = np.tile(CITY_LABEL_IDS, (4, 4))  # 8 x 16
    for subset, subset_ids in ids.items():
        for n, sample_id in enumerate(subset_ids):
            img_path = root / "leftImg8bit" / subset / f"{sample_id}_leftImg8bit.png"
            img_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(voc_image(n, (16, 8))).save(img_path)
            gt = root / "gtFine" / subset / sample_id
            gt.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(label, "L").save(f"{gt}_gtFine_labelIds.png")
            if train_ids:
                trainid = np.tile(CITY_TRAIN_IDS, (4, 4))
                # A deliberately different value in the corner shows which file was read.
                trainid[0, 0] = 5
                Image.fromarray(trainid.astype(np.uint8), "L").save(f"{gt}_gtFine_labelTrainIds.png")
    return ids
