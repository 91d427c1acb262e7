"""Pictures of predictions and confusion matrices, for artifacts and reports.

Everything renders off-screen: PIL for masks and overlays, matplotlib's Agg canvas on
a bare Figure (never pyplot) for the confusion matrix, so these run in headless Ray
workers and threads without touching global backend state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from rrn_core.constants import IGNORE_INDEX
from rrn_core.data.palette import voc_palette

__all__ = ["colorize", "confusion_matrix_figure", "overlay", "side_by_side"]


def colorize(mask: np.ndarray) -> Image.Image:
    """Class-id map as a P-mode image with the VOC palette (255 keeps the palette's own colour)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError("mask values must lie in 0..255 for a palette image")
    image = Image.fromarray(mask.astype(np.uint8))
    image.putpalette(voc_palette(256).reshape(-1).tolist())  # turns the L image into P
    return image


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 [H,W,3] from RGB or grayscale input ([H,W] or [H,W,1])."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"image must be [H,W], [H,W,1] or [H,W,3], got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def overlay(image_uint8: np.ndarray, mask: np.ndarray, num_classes: int | None = None,
            alpha: float = 0.5) -> Image.Image:
    """RGB blend of the image and the class colours; ignore pixels (255, or >= num_classes) show the image."""
    rgb = _as_rgb(image_uint8)
    mask = np.asarray(mask).astype(np.int64)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {rgb.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within 0..1, got {alpha}")
    limit = IGNORE_INDEX if num_classes is None else min(num_classes, IGNORE_INDEX)
    labelled = (mask >= 0) & (mask < limit)
    colours = voc_palette(256)[np.clip(mask, 0, 255)].astype(np.float64)
    blended = (1.0 - alpha) * rgb + alpha * colours
    out = np.where(labelled[..., None], np.round(blended), rgb).astype(np.uint8)
    return Image.fromarray(out)


def side_by_side(image: np.ndarray, pred: np.ndarray, gt: np.ndarray, num_classes: int | None = None,
                 gap: int = 4) -> Image.Image:
    """image | prediction overlay | ground-truth overlay, one strip per validation sample."""
    rgb = _as_rgb(image)
    panels = [Image.fromarray(rgb), overlay(rgb, pred, num_classes), overlay(rgb, gt, num_classes)]
    h, w = rgb.shape[:2]
    strip = Image.new("RGB", (3 * w + 2 * gap, h), (255, 255, 255))
    for i, panel in enumerate(panels):
        strip.paste(panel, (i * (w + gap), 0))
    return strip


def confusion_matrix_figure(confusion: np.ndarray, class_names: Sequence[str], path: str | Path) -> None:
    """Row-normalised heat map (each row: where that class's pixels went) written as PNG.

    Rows are normalised so rare classes are as readable as the background; a class
    without ground-truth pixels leaves its row blank. Cell values are printed while
    they fit (up to 15 classes); the figure grows with the class count.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    n = confusion.shape[0]
    if confusion.shape != (n, n) or len(class_names) != n:
        raise ValueError(f"confusion {confusion.shape} and {len(class_names)} class names do not match")
    totals = confusion.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.ma.masked_invalid(confusion / totals)

    side = max(4.0, 0.38 * n + 2.5)
    fontsize = 9 if n <= 12 else 8 if n <= 22 else 7
    fig = Figure(figsize=(side + 1.0, side), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = colormaps["Blues"].with_extremes(bad="#d9d9d9")  # grey: no ground truth
    im = ax.imshow(normalised, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of ground-truth pixels")
    ax.set_xticks(range(n), labels=list(class_names), rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), labels=list(class_names), fontsize=fontsize)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title("Confusion matrix (row-normalised)")
    if n <= 15:
        for i in range(n):
            for j in range(n):
                value = normalised[i, j]
                if value is not np.ma.masked and value >= 0.005:
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=fontsize - 1,
                            color="white" if value > 0.5 else "black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
