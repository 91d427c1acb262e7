"""Checked file access for the data readers.

Every way a data set can be broken (a missing file, a corrupt JPEG, a mask of the
wrong size or with stray values) surfaces as one exception type whose message
names the offending file. A sweep can then be refused before it starts
(`check_dataset`) and a trial that still hits a bad file fails with a message a
user can act on, instead of a bare PIL or numpy error deep inside a DataLoader.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rrn_core.constants import IGNORE_INDEX
from rrn_core.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class DataError(UserError):
    """A data set problem; the message always names the file (and line) at fault."""


def open_image_file(path: Path) -> Image.Image:
    """Open and fully decode a file, so truncated files fail here and not later."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        img = Image.open(path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: unreadable or corrupt image ({err})") from None
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as err:
        img.close()
        raise DataError(f"{path}: unreadable or corrupt image ({err})") from None
    if not _holds_file(img):   # single-frame files close after load: no copy needed
        return img
    with img:                  # multi-frame formats (GIF) keep the file open: copy the frame, close
        return img.copy()


def _holds_file(img: Image.Image) -> bool:
    """Whether a loaded image still keeps its file open (formats that seek between frames)."""
    handles = (getattr(img, "fp", None), getattr(img, "_fp", None))
    return any(isinstance(f, io.IOBase) and not f.closed for f in handles)


def read_rgb(path: Path) -> Image.Image:
    """Any image mode -> 8-bit RGB; grey, palette, alpha and 16-bit files all occur in the wild."""
    img = open_image_file(path)
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a decoded image to RGB, scaling 16-bit grey to 8 bits instead of clipping it."""
    if img.mode == "RGB":
        return img
    if img.mode in _SIXTEEN_BIT_MODES:
        arr = np.asarray(img, dtype=np.int64)
        arr = np.clip(arr, 0, 65535) // 257
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def check_mask_values(mask: np.ndarray, num_classes: int, path: Path) -> None:
    """Values must be class ids or the ignore index; anything else is a mislabelled file."""
    # one boolean pass over the mask (no copy of the valid values): this runs on
    # every training item, at full Cityscapes size
    outside = (mask < 0) | (mask >= num_classes)
    outside &= mask != IGNORE_INDEX
    if outside.any():
        bad = np.unique(mask[outside])
        shown = ", ".join(str(int(v)) for v in bad[:10])
        more = " ..." if bad.size > 10 else ""
        raise DataError(
            f"{path}: mask values {shown}{more} are outside 0..{num_classes - 1} "
            f"and not the ignore index {IGNORE_INDEX} (num_classes={num_classes})"
        )


def check_same_size(image: Image.Image, mask: np.ndarray, image_path: Path, mask_path: Path) -> None:
    """Image and mask must align pixel for pixel, else the labels are wrong everywhere."""
    h, w = mask.shape[:2]
    if image.size != (w, h):
        raise DataError(
            f"{mask_path}: mask is {w}x{h} but image {image_path} is {image.size[0]}x{image.size[1]}"
        )


def read_split_lines(path: Path) -> list[tuple[int, list[str]]]:
    """Non-empty, non-comment lines of a split file as (line number, tokens)."""
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read split file ({err})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if len(tokens) > 2:
            raise DataError(
                f"{path}:{number}: expected 'id', 'image_path' or 'image_path mask_path', "
                f"got {len(tokens)} fields"
            )
        rows.append((number, tokens))
    return rows
