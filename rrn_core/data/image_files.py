"""Checked file access for the data readers.

Every way a data set can be broken (a missing file, a corrupt JPEG, a mask of the
wrong size or with stray values) surfaces as one exception type whose message
names the offending file. A sweep can then be refused before it starts
(`check_dataset`) and a trial that still hits a bad file fails with a message a
user can act on, instead of a bare PIL or numpy error deep inside a DataLoader.
"""

from __future__ import annotations

import io
import os
import re
import unicodedata
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rrn_core.constants import IGNORE_INDEX
from rrn_core.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")

#: The environment variable that sets the largest image (width x height) any reader
#: decodes; the default is Pillow's own (89,478,485 pixels, about 9459 x 9459).
MAX_PIXELS_ENV = "RRN_MAX_IMAGE_PIXELS"
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485


def max_image_pixels() -> int:
    """The pixel limit: RRN_MAX_IMAGE_PIXELS when set to a positive integer, else the
    default. A PNG of a few KB can declare 30000 x 30000 pixels (a "decompression
    bomb", gigabytes once decoded), so every image is measured from its header first."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise DataError(f"{MAX_PIXELS_ENV}={raw!r}: must be a positive whole number of pixels")
    return value


class DataError(UserError):
    """A data set problem; the message always names the file (and line) at fault."""


def open_image_file(path: Path) -> Image.Image:
    """Open and fully decode a file, so truncated files fail here and not later."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    limit = max_image_pixels()
    try:
        img = _open_within(path, limit)
    except Image.DecompressionBombError as err:
        raise DataError(_too_large(path, _declared_pixels(err), limit)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: unreadable or corrupt image ({err})") from None
    width, height = img.size
    if width * height > limit:
        img.close()
        raise DataError(_too_large(path, img.size, limit))
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as err:
        img.close()
        raise DataError(f"{path}: unreadable or corrupt image ({err})") from None
    if not _holds_file(img):   # single-frame files close after load: no copy needed
        return img
    with img:                  # multi-frame formats (GIF) keep the file open: copy the frame, close
        return img.copy()


def _open_within(path: Path, limit: int) -> Image.Image:
    """Image.open (the header only) with Pillow's own bomb check on our limit: Pillow
    refuses above twice it and warns between (the caller refuses those, so the warning
    is silenced once, below). Pillow reads the limit from a module global, hence per call."""
    Image.MAX_IMAGE_PIXELS = limit
    return Image.open(path)


warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _declared_pixels(err: Exception) -> int | None:
    """The pixel count Pillow's refusal names ("Image size (900000000 pixels) exceeds ...")."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    return int(found.group(1)) if found else None


def _too_large(path: Path, size: tuple[int, int] | int | None, limit: int) -> str:
    if isinstance(size, tuple):
        shown = f"{size[0]} x {size[1]} = {size[0] * size[1]:,} pixels"
    else:
        shown = f"{size:,} pixels" if size else "its declared size"
    return (f"{path}: image too large to decode: {shown} is over the limit of {limit:,} pixels "
            f"(a decompression bomb, or an image to shrink first; the limit is {MAX_PIXELS_ENV})")


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


def read_text_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """(line number, stripped line) of a UTF-8 text file a user wrote (split file,
    classes.txt), refused rather than read as something else: a file in another
    encoding (UTF-16, Latin-1) or one line holding an invisible character (a
    byte-order mark, a zero-width or no-break space, a control character) names the
    file, the line and the character. Such a character makes an id or class name
    that looks right and matches nothing."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: {what} is not UTF-8 text (byte {err.start}: "
                        f"{err.object[err.start:err.start + 1]!r}); save it as UTF-8") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read {what} ({err})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        for char in line:
            if _invisible(char):
                name = unicodedata.name(char, "a control character")
                bom = ", a byte-order mark: save the file as UTF-8 without BOM" if char == "\ufeff" else ""
                raise DataError(f"{path}:{number}: invisible character U+{ord(char):04X} ({name}{bom}) "
                                f"in {line.strip()!r}; {what} entries are plain text")
        rows.append((number, line.strip()))
    return rows


def _invisible(char: str) -> bool:
    """A character a text editor does not show: format and control characters (tab
    aside), and spaces other than the plain one."""
    category = unicodedata.category(char)
    return (category in ("Cf", "Cc", "Co", "Cn") and char != "\t") or (category == "Zs" and char != " ")


def read_split_lines(path: Path) -> list[tuple[int, list[str]]]:
    """Non-empty, non-comment lines of a split file as (line number, tokens)."""
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    rows = []
    for number, line in read_text_lines(path, "split file"):
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
