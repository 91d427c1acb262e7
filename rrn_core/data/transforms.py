"""Augmentations as pure functions of an explicit numpy Generator.

Each training item is drawn from `np.random.default_rng([run seed, aug_seed, index])`
and nothing else, so a resumed run re-creates exactly the batches it would have
seen. Geometry (scale, crop, flip) is drawn once and applied to image, mask and
the padding map alike; the weak view is that geometry only, the strong view adds
photometric noise on top (FixMatch/UniMatch style). Written with PIL and numpy
because torchvision is unavailable here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

from rrn_core.constants import IGNORE_INDEX
from rrn_core.sections import CutMixConfig

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


# -- tensors ------------------------------------------------------------------
def normalize(image: Image.Image | np.ndarray) -> torch.Tensor:
    """uint8 RGB [H,W,3] -> float[3,H,W], ImageNet-normalised (what pretrained ResNets expect)."""
    arr = np.asarray(image, dtype=np.float32) / 255.0
    mean = np.asarray(MEAN, dtype=np.float32)
    std = np.asarray(STD, dtype=np.float32)
    arr = (arr - mean) / std
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


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
def _resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize in numpy: exact for class ids of any range."""
    h, w = mask.shape
    rows = np.minimum((np.arange(height) + 0.5) * h / height, h - 1).astype(np.int64)
    cols = np.minimum((np.arange(width) + 0.5) * w / width, w - 1).astype(np.int64)
    return mask[rows[:, None], cols[None, :]]


def shared_geometry(image: Image.Image, mask: np.ndarray | None, rng: np.random.Generator,
                    crop_size: int, scale_range: Sequence[float]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random scale, pad-and-crop to `crop_size`, horizontal flip.

    Returns (image uint8[S,S,3], mask int64[S,S], ignore int64[S,S]). Padding is
    image 0, mask 255 and ignore 255 (so losses skip it); a missing mask becomes
    all 255. The generator is consumed the same way whatever the inputs, so two
    views of one draw stay aligned.
    """
    w, h = image.size
    scale = float(rng.uniform(scale_range[0], scale_range[1]))
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    img = np.asarray(image.resize((nw, nh), Image.BILINEAR), dtype=np.uint8)
    if mask is None:
        lab = np.full((nh, nw), IGNORE_INDEX, dtype=np.int64)
    else:
        lab = _resize_nearest(mask, nh, nw)
    ign = np.zeros((nh, nw), dtype=np.int64)

    ph, pw = max(crop_size, nh), max(crop_size, nw)
    if (ph, pw) != (nh, nw):  # pad right/bottom, as the reference code does
        img = np.pad(img, ((0, ph - nh), (0, pw - nw), (0, 0)), constant_values=0)
        lab = np.pad(lab, ((0, ph - nh), (0, pw - nw)), constant_values=IGNORE_INDEX)
        ign = np.pad(ign, ((0, ph - nh), (0, pw - nw)), constant_values=IGNORE_INDEX)

    y = int(rng.integers(0, ph - crop_size + 1))
    x = int(rng.integers(0, pw - crop_size + 1))
    sl = (slice(y, y + crop_size), slice(x, x + crop_size))
    img, lab, ign = img[sl], lab[sl], ign[sl]

    if rng.random() < 0.5:
        img, lab, ign = img[:, ::-1], lab[:, ::-1], ign[:, ::-1]
    return np.ascontiguousarray(img), np.ascontiguousarray(lab), np.ascontiguousarray(ign)


# -- strong (photometric) view ------------------------------------------------------
def _shift_hue(img: Image.Image, shift: float) -> Image.Image:
    h, s, v = img.convert("HSV").split()
    hue = (np.asarray(h, dtype=np.int64) + int(round(shift * 255))) % 256
    return Image.merge("HSV", (Image.fromarray(hue.astype(np.uint8), "L"), s, v)).convert("RGB")


def color_jitter(img: Image.Image, rng: np.random.Generator, brightness: float = 0.5,
                 contrast: float = 0.5, saturation: float = 0.5, hue: float = 0.25) -> Image.Image:
    """torchvision's ColorJitter semantics: factors in [1-x, 1+x], hue shift in [-h, h], random order."""
    factors = [rng.uniform(max(0.0, 1 - brightness), 1 + brightness),
               rng.uniform(max(0.0, 1 - contrast), 1 + contrast),
               rng.uniform(max(0.0, 1 - saturation), 1 + saturation),
               rng.uniform(-hue, hue)]
    for op in rng.permutation(4):
        if op == 0:
            img = ImageEnhance.Brightness(img).enhance(factors[0])
        elif op == 1:
            img = ImageEnhance.Contrast(img).enhance(factors[1])
        elif op == 2:
            img = ImageEnhance.Color(img).enhance(factors[2])
        else:
            img = _shift_hue(img, factors[3])
    return img


def strong_view(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour jitter (p=0.8), grayscale (p=0.2), Gaussian blur (p=0.5) on a uint8 RGB crop."""
    img = Image.fromarray(image, "RGB")
    if rng.random() < 0.8:
        img = color_jitter(img, rng)
    if rng.random() < 0.2:
        img = img.convert("L").convert("RGB")
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.1, 2.0))))
    return np.asarray(img, dtype=np.uint8)


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
