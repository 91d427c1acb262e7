"""Cityscapes layout: leftImg8bit/ images, gtFine/ masks, 34 label ids -> 19 train ids.

Ids look like "aachen/aachen_000000_000019" (city/frame). Without split files the
subset folder (train/val) is scanned. `*_gtFine_labelTrainIds.png` (written by the
official scripts) is used when present, else `*_gtFine_labelIds.png` is mapped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from rrn_core.constants import IGNORE_INDEX
from rrn_core.data.image_files import DataError
from rrn_core.data.layout import Layout, Sample

CITYSCAPES_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
]
# label id -> train id for the 19 evaluated classes (cityscapesScripts' labels.py).
_TRAIN_ID_OF_LABEL = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
LABEL_TO_TRAIN_ID = np.full(256, IGNORE_INDEX, dtype=np.int64)
for _label, _train in _TRAIN_ID_OF_LABEL.items():
    LABEL_TO_TRAIN_ID[_label] = _train

IMAGE_DIR = "leftImg8bit"
MASK_DIR = "gtFine"
IMAGE_SUFFIX = "_leftImg8bit.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"


def labels_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map Cityscapes label ids (0..33) to train ids (0..18), everything else to 255."""
    label_ids = np.asarray(label_ids, dtype=np.int64)
    out = np.full(label_ids.shape, IGNORE_INDEX, dtype=np.int64)
    inside = (label_ids >= 0) & (label_ids < LABEL_TO_TRAIN_ID.size)
    out[inside] = LABEL_TO_TRAIN_ID[label_ids[inside]]
    return out


class CityscapesLayout(Layout):
    name = "cityscapes"

    def default_split_file(self, subset: str) -> Path | None:
        return None

    def default_class_names(self) -> list[str] | None:
        return list(CITYSCAPES_CLASSES) if self.num_classes == len(CITYSCAPES_CLASSES) else None

    def scan(self, subset: str) -> list[Sample]:
        folder = self.root / IMAGE_DIR / subset
        if not folder.is_dir():
            raise DataError(f"{folder}: Cityscapes image folder not found")
        samples = []
        for image in sorted(folder.glob(f"*/*{IMAGE_SUFFIX}")):
            sample_id = f"{image.parent.name}/{image.name[: -len(IMAGE_SUFFIX)]}"
            samples.append(Sample(sample_id, image, self._mask_for(subset, sample_id), sample_id))
        return samples

    def _mask_for(self, subset: str, sample_id: str) -> Path:
        base = self.root / MASK_DIR / subset / sample_id
        train_ids = base.with_name(base.name + TRAIN_IDS_SUFFIX)
        return train_ids if train_ids.exists() else base.with_name(base.name + LABEL_IDS_SUFFIX)

    def _find_subset(self, sample_id: str, subset: str) -> str:
        """Ids carry no subset; look in the expected one first, then in the others."""
        base = self.root / IMAGE_DIR
        if (base / subset / f"{sample_id}{IMAGE_SUFFIX}").exists():
            return subset
        others = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        for other in others:
            if (base / other / f"{sample_id}{IMAGE_SUFFIX}").exists():
                return other
        return subset

    def sample_from_id(self, sample_id: str, subset: str, need_mask: bool) -> Sample:
        sample_id = sample_id.removesuffix(IMAGE_SUFFIX)
        found = self._find_subset(sample_id, subset)
        image = self.root / IMAGE_DIR / found / f"{sample_id}{IMAGE_SUFFIX}"
        mask: Path | None = self._mask_for(found, sample_id)
        if not need_mask and not mask.exists():
            mask = None
        return Sample(sample_id, image, mask, sample_id)

    def sample_from_paths(self, image: Path, mask: Path | None, line: str,
                          subset: str, need_mask: bool) -> Sample:
        name = image.name.removesuffix(IMAGE_SUFFIX).removesuffix(image.suffix)
        sample_id = f"{image.parent.name}/{name}"
        if mask is None:
            guess = self._mask_for(image.parent.parent.name, sample_id)
            mask = guess if (need_mask or guess.exists()) else None
        return Sample(sample_id, image, mask, line)

    def decode_mask(self, img: Image.Image, path: Path) -> np.ndarray:
        if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
            raise DataError(f"{path}: unsupported mask image mode {img.mode!r} (expected L or P)")
        raw = np.asarray(img)
        if path.name.endswith(LABEL_IDS_SUFFIX) or (
            "labelIds" in path.name and "TrainIds" not in path.name
        ):
            if raw.dtype == np.uint8:   # 8-bit ids: one table lookup, no int64 copy first
                return LABEL_TO_TRAIN_ID[raw]
            return labels_to_train_ids(raw)
        return raw.astype(np.int64)
