"""Augmentations as pure functions of an explicit numpy Generator.

Each training item is drawn from `np.random.default_rng([run seed, aug_seed, index])`
and nothing else, so a resumed run re-creates exactly the batches it would have
seen. Geometry (scale, crop, flip) is drawn once and applied to image, mask and
the padding map alike; the weak view is that geometry only, the strong view adds
photometric noise on top (FixMatch/UniMatch style). Geometry and decoding are
PIL + numpy (the crop is resized from its source box, never the whole image);
the photometric ops are OpenCV's uint8 kernels. No torchvision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from rrn_core.constants import IGNORE_INDEX
from rrn_core.config_sections import CutMixConfig

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


# -- tensors ------------------------------------------------------------------
def _normalize_table() -> np.ndarray:
    """float32[3,256]: the normalised value of each byte per channel, computed exactly
    as the arithmetic form would, so a lookup gives bit-identical tensors."""
    values = np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0)
    mean = np.asarray(MEAN, dtype=np.float32)[:, None]
    std = np.asarray(STD, dtype=np.float32)[:, None]
    return (values - mean) / std


_NORMALIZE_TABLE = _normalize_table()


def normalize(image: Image.Image | np.ndarray) -> torch.Tensor:
    """uint8 RGB [H,W,3] -> float[3,H,W], ImageNet-normalised (what pretrained ResNets expect).

    One table lookup per channel, written straight into channel-first order: no
    float copy of the whole image, no subtract/divide passes, no transpose copy.
    """
    arr = np.asarray(image, dtype=np.uint8)
    out = np.empty((3,) + arr.shape[:2], dtype=np.float32)
    for c in range(3):
        np.take(_NORMALIZE_TABLE[c], arr[..., c], out=out[c])
    return torch.from_numpy(out)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Undo `normalize` for display or the discriminator: [.., 3, H, W] -> values in [0, 1]."""
    shape = [1] * x.dim()
    shape[-3] = 3
    mean = torch.tensor(MEAN, dtype=x.dtype, device=x.device).view(shape)
    std = torch.tensor(STD, dtype=x.dtype, device=x.device).view(shape)
    return (x * std + mean).clamp(0.0, 1.0)


def mask_tensor(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64))


# -- shared geometry ----------------------------------------------------------------
@dataclass(frozen=True)
class Geometry:
    """One draw of scale, crop window and flip, in the coordinates of the scaled image.

    The scaled image is never built: only the `crop` x `crop` window of it that is
    kept, so the cost is the crop's, not the (up to 4x larger) scaled image's.
    """

    width: int          # source size
    height: int
    scaled_w: int       # size after scaling (before padding)
    scaled_h: int
    x: int              # crop window origin in the padded scaled image
    y: int
    crop: int
    flip: bool

    @property
    def valid_w(self) -> int:
        """Columns of the window that fall on the image (the rest is right padding)."""
        return min(self.crop, self.scaled_w - self.x)

    @property
    def valid_h(self) -> int:
        return min(self.crop, self.scaled_h - self.y)


def sample_geometry(size: tuple[int, int], rng: np.random.Generator, crop_size: int,
                    scale_range: Sequence[float]) -> Geometry:
    """Draw scale, crop origin and flip from `rng` (in this order, whatever the inputs),
    from the image size alone: no pixel is touched before the draw is complete."""
    w, h = size
    scale = float(rng.uniform(scale_range[0], scale_range[1]))
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    ph, pw = max(crop_size, nh), max(crop_size, nw)
    y = int(rng.integers(0, ph - crop_size + 1))
    x = int(rng.integers(0, pw - crop_size + 1))
    flip = bool(rng.random() < 0.5)
    return Geometry(w, h, nw, nh, x, y, crop_size, flip)


def crop_image(image: Image.Image, g: Geometry) -> np.ndarray:
    """uint8[S,S,3]: the window of the bilinearly scaled image, padded with 0, flipped.

    PIL's `resize(box=...)` samples the source exactly where a full resize would
    (same centres, same antialiasing support), so this matches resize-then-crop up
    to the rounding of the box coordinates (at most 1 grey level on a few pixels).
    """
    vw, vh = g.valid_w, g.valid_h
    sx, sy = g.scaled_w / g.width, g.scaled_h / g.height
    box = (g.x / sx, g.y / sy, (g.x + vw) / sx, (g.y + vh) / sy)
    region = np.asarray(image.resize((vw, vh), Image.BILINEAR, box=box), dtype=np.uint8)
    return _pad_and_flip(region, g, 0)


def crop_mask(mask: np.ndarray | None, g: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """(mask int64[S,S], ignore int64[S,S]) for the window: nearest-neighbour class ids
    (exact for any id range), padding 255 in both; a missing mask is all 255."""
    vw, vh = g.valid_w, g.valid_h
    if mask is None:
        lab = np.full((vh, vw), IGNORE_INDEX, dtype=np.int64)
    else:
        rows = _nearest_index(g.y, vh, g.height, g.scaled_h)
        cols = _nearest_index(g.x, vw, g.width, g.scaled_w)
        lab = np.asarray(mask[rows[:, None], cols[None, :]], dtype=np.int64)
    ign = np.zeros((vh, vw), dtype=np.int64)
    return _pad_and_flip(lab, g, IGNORE_INDEX), _pad_and_flip(ign, g, IGNORE_INDEX)


def _nearest_index(start: int, count: int, source: int, scaled: int) -> np.ndarray:
    """Source rows (or columns) of scaled positions start..start+count-1 under a
    nearest-neighbour resize of `source` to `scaled` pixels."""
    pos = (np.arange(start, start + count) + 0.5) * source / scaled
    return np.minimum(pos, source - 1).astype(np.int64)


def _pad_and_flip(region: np.ndarray, g: Geometry, fill: int) -> np.ndarray:
    """Place the valid part top-left in an S x S array of `fill` (pad right/bottom, as
    the reference code does), then apply the flip."""
    if region.shape[:2] == (g.crop, g.crop):
        out = region
    else:
        out = np.full((g.crop, g.crop) + region.shape[2:], fill, dtype=region.dtype)
        out[: region.shape[0], : region.shape[1]] = region
    if g.flip:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def shared_geometry(image: Image.Image, mask: np.ndarray | None, rng: np.random.Generator,
                    crop_size: int, scale_range: Sequence[float]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random scale, pad-and-crop to `crop_size`, horizontal flip.

    Returns (image uint8[S,S,3], mask int64[S,S], ignore int64[S,S]). Padding is
    image 0, mask 255 and ignore 255 (so losses skip it); a missing mask becomes
    all 255. The generator is consumed the same way whatever the inputs, so two
    views of one draw stay aligned.
    """
    g = sample_geometry(image.size, rng, crop_size, scale_range)
    lab, ign = crop_mask(mask, g)
    return crop_image(image, g), lab, ign


# -- strong (photometric) view ------------------------------------------------------
# OpenCV's uint8 kernels (SIMD, one pass each): the strong view of a 321 crop in
# ~1.4 ms against ~21 ms with PIL's ImageEnhance + HSV round trip and ~15 ms with
# float numpy (bench/input_pipeline.py's profile; README "Measured"). One thread:
# the DataLoader's worker processes are the parallelism, and no pool exists to be
# inherited across fork.
cv2.setNumThreads(1)


def _grey_rgb(img: np.ndarray) -> np.ndarray:
    """uint8[H,W,3] luma (ITU-R 601, as PIL's "L") repeated over three channels."""
    return cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def _shift_hue(img: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the HSV hue of uint8 RGB by `shift` turns (256 steps a turn), keeping S and V."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL)
    hsv[..., 0] += np.uint8(int(round(shift * 256)) % 256)   # uint8 arithmetic wraps: mod 256
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


def color_jitter(img: np.ndarray, rng: np.random.Generator, brightness: float = 0.5,
                 contrast: float = 0.5, saturation: float = 0.5, hue: float = 0.25) -> np.ndarray:
    """torchvision's ColorJitter semantics on uint8 RGB [H,W,3]: factors in [1-x, 1+x],
    hue shift in [-h, h], random order; each op rounds and saturates to 0..255, as
    PIL's ImageEnhance did."""
    factors = [rng.uniform(max(0.0, 1 - brightness), 1 + brightness),
               rng.uniform(max(0.0, 1 - contrast), 1 + contrast),
               rng.uniform(max(0.0, 1 - saturation), 1 + saturation),
               rng.uniform(-hue, hue)]
    for op in rng.permutation(4):
        if op == 0:      # blend with black
            img = cv2.convertScaleAbs(img, alpha=float(factors[0]))
        elif op == 1:    # blend with the mean grey level
            mean = float(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).mean())
            img = cv2.addWeighted(img, float(factors[1]), img, 0.0, (1 - float(factors[1])) * mean)
        elif op == 2:    # blend with the pixel's own grey
            img = cv2.addWeighted(img, float(factors[2]), _grey_rgb(img), 1 - float(factors[2]), 0.0)
        else:
            img = _shift_hue(img, float(factors[3]))
    return img


def strong_view(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour jitter (p=0.8), grayscale (p=0.2), Gaussian blur (p=0.5, sigma 0.1..2) on
    a uint8 RGB crop.

    Returns `image` itself (not a copy) when no op was drawn and `image` is contiguous,
    so the caller can reuse the weak view's work; otherwise a new array (the input is
    never written).
    """
    img = np.ascontiguousarray(image)   # OpenCV refuses flipped (negative-stride) views
    if rng.random() < 0.8:
        img = color_jitter(img, rng)
    if rng.random() < 0.2:
        img = _grey_rgb(img)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=float(rng.uniform(0.1, 2.0)))
    return img


# -- CutMix -----------------------------------------------------------------------
def cutmix_boxes(size: int, boxes: int, area: Sequence[float], rng: np.random.Generator,
                 aspect: tuple[float, float] = (0.3, 1 / 0.3)) -> list[tuple[int, int, int, int]]:
    """`boxes` boxes (x, y, w, h) inside a size x size crop, each covering a fraction of
    the crop drawn from `area`, with a log-uniform aspect ratio (UniMatch's recipe)."""
    result = []
    for _ in range(boxes):
        target = rng.uniform(area[0], area[1]) * size * size
        for _attempt in range(100):
            ratio = math.exp(rng.uniform(math.log(aspect[0]), math.log(aspect[1])))
            w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 1 <= w <= size and 1 <= h <= size:
                break
        else:  # fall back to a square, which always fits when area <= 1
            w = h = max(1, min(size, round(math.sqrt(target))))
        x = int(rng.integers(0, size - w + 1))
        y = int(rng.integers(0, size - h + 1))
        result.append((x, y, w, h))
    return result


def cutmix_mask(size: int, cfg: CutMixConfig, rng: np.random.Generator) -> np.ndarray:
    """int64[S,S], 1 inside the boxes; all 0 when the sample skips CutMix (prob)."""
    mask = np.zeros((size, size), dtype=np.int64)
    if rng.random() >= cfg.prob:
        return mask
    for x, y, w, h in cutmix_boxes(size, cfg.boxes, cfg.area, rng):
        mask[y:y + h, x:x + w] = 1
    return mask
