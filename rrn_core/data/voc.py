"""PASCAL VOC 2012 layout (and any data set stored the same way).

root/JPEGImages/{id}.jpg, root/<mask_dir>/{id}.png with class ids as pixel
values (255 = ignore/border), split files under root/ImageSets/Segmentation/.
The synthetic data set uses this layout too, so everything here is exercised
without the real VOC.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from rrn_core.data.image_files import DataError
from rrn_core.data.layout import Layout, Sample, first_existing
from rrn_core.data.palette import rgb_mask_to_ids

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
]
IMAGE_DIR = "JPEGImages"
SPLIT_DIR = Path("ImageSets") / "Segmentation"
_IMAGE_EXTS = (".jpg", ".jpeg", ".png")


class VocLayout(Layout):
    name = "voc"

    def default_split_file(self, subset: str) -> Path | None:
        return self.root / SPLIT_DIR / f"{subset}.txt"

    def scan(self, subset: str) -> list[Sample]:  # VOC always has split files
        raise DataError(f"{self.root / SPLIT_DIR / f'{subset}.txt'}: split file not found")

    def default_class_names(self) -> list[str] | None:
        return list(VOC_CLASSES) if self.num_classes == len(VOC_CLASSES) else None

    def mask_path(self, sample_id: str) -> Path:
        return self.root / self.mask_dir / f"{sample_id}.png"

    def sample_from_id(self, sample_id: str, subset: str, need_mask: bool) -> Sample:
        image = first_existing(self.root / IMAGE_DIR / sample_id, _IMAGE_EXTS)
        mask = self.mask_path(sample_id)
        if not need_mask and not mask.exists():
            mask = None
        return Sample(sample_id, image, mask, sample_id)

    def sample_from_paths(self, image: Path, mask: Path | None, line: str,
                          subset: str, need_mask: bool) -> Sample:
        sample_id = image.stem
        if mask is None:
            guess = self.mask_path(sample_id)
            mask = guess if (need_mask or guess.exists()) else None
        return Sample(sample_id, image, mask, line)

    def decode_mask(self, img: Image.Image, path: Path) -> np.ndarray:
        if img.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
            return np.asarray(img).astype(np.int64)
        if img.mode == "LA":
            return np.asarray(img)[..., 0].astype(np.int64)
        if img.mode in ("RGB", "RGBA"):
            return rgb_mask_to_ids(np.asarray(img), path)
        raise DataError(f"{path}: unsupported mask image mode {img.mode!r} (expected P, L or RGB)")
