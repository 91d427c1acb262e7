"""The PASCAL VOC colour palette, and masks stored as palette PNGs.

VOC stores class ids as the pixel values of a "P"-mode PNG whose palette makes
them viewable; writing our masks the same way keeps the synthetic set and the
prediction exports readable by every VOC tool. Some copies of VOC circulate with
the masks saved as plain RGB colours, so the inverse mapping is here too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from rrn_core.data.image_files import DataError


def voc_palette(n: int = 256) -> np.ndarray:
    """The standard VOC palette: the bits of the index interleaved into R, G, B (uint8[n,3])."""
    index = np.arange(n, dtype=np.int64)
    palette = np.zeros((n, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            palette[:, channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
    return palette.astype(np.uint8)


def save_mask_png(mask: np.ndarray, path: str | Path) -> None:
    """Write a class-id map (values 0..255) as a P-mode PNG with the VOC palette."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError("mask values must be within 0..255 to be stored in a palette PNG")
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    img.putpalette(voc_palette(256).reshape(-1).tolist())
    img.save(path, format="PNG")


def rgb_mask_to_ids(rgb: np.ndarray, path: Path) -> np.ndarray:
    """Map VOC palette colours back to class ids; any other colour is an error naming `path`."""
    palette = voc_palette(256).astype(np.int64)
    keys = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
    order = np.argsort(keys)
    sorted_keys = keys[order]
    rgb = rgb[..., :3].astype(np.int64)
    pixels = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    pos = np.clip(np.searchsorted(sorted_keys, pixels), 0, len(sorted_keys) - 1)
    found = sorted_keys[pos] == pixels
    if not found.all():
        r, g, b = rgb[~found][0]
        raise DataError(
            f"{path}: RGB mask has colour ({r}, {g}, {b}) that is not in the VOC palette; "
            "save masks as palette ('P') or greyscale ('L') PNGs holding class ids"
        )
    return order[pos].astype(np.int64)
