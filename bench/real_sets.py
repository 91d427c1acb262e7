"""Two small real segmentation sets in the VOC layout, built from files shipped in packages.

The method is checked on real data it was not developed on, and nothing may be
downloaded, so the sets are built from image files that public wheels carry:

- **digits** (11 classes, grayscale): scikit-learn's `load_digits`, 1,797 real
  handwritten digits (UCI, 43 writers, 8x8, 17 grey levels), 2-4 per 40x40 canvas at
  2-3.5x scale on a low-contrast background. A pixel's class is the digit whose ink
  covers it (1 + digit; 0 background); the faint rim of each stroke is 255 (ignored),
  as VOC marks object outlines. Train and val canvases draw from disjoint halves of the
  digits, so val digits were written by hands never seen in training.
- **digits_on_photos** (3 classes: background, dark handwriting, bright handwriting;
  grayscale, 36-60 px, so some images are smaller than a 48 crop): the same digits
  written darker or brighter than the photo under them, over crops of the real
  photographs scikit-learn and matplotlib ship (`china.jpg`, `flower.jpg`,
  `grace_hopper.jpg`): the strokes must be told from real clutter and real edges, and
  their class is their contrast with the local background, not their brightness.

    .venv/bin/python bench/real_sets.py OUT_DIR        # writes OUT_DIR/digits, OUT_DIR/digits_on_photos
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from rrn_core.data.palette import save_mask_png

IGNORE = 255
INK = 0.45          # upscaled ink at or above this share of the digit's maximum is the class
RIM = 0.3           # between RIM and INK: the stroke's rim, ignored


def digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's shipped digits: images float [N,8,8] in 0..1 and their labels."""
    from sklearn.datasets import load_digits
    data = load_digits()
    return data.images.astype(np.float32) / 16.0, data.target.astype(np.int64)


def photos() -> list[np.ndarray]:
    """The real photographs shipped with scikit-learn and matplotlib, grey float 0..1."""
    import matplotlib.cbook
    from sklearn.datasets import load_sample_images
    grey = [np.asarray(Image.fromarray(img).convert("L"), np.float32) / 255 for img in load_sample_images().images]
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        grey.append(np.asarray(Image.open(f).convert("L"), np.float32) / 255)
    return grey


def upscaled(digit: np.ndarray, size: int) -> np.ndarray:
    img = Image.fromarray((digit * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
    return np.asarray(img, np.float32) / 255


def slots(h: int, w: int, count: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """(y, x, size) of up to `count` digits in distinct cells of a grid of ~20 px cells,
    so digits touch at most at their rims: a class is read from one digit's shape."""
    rows, cols = max(1, h // 20), max(1, w // 20)
    cells = rng.permutation(rows * cols)[:count]
    out = []
    for cell in cells:
        ch, cw = h // rows, w // cols
        size = int(rng.integers(14, min(ch, cw) + 3))
        y0, x0 = (cell // cols) * ch, (cell % cols) * cw
        out.append((y0 + int(rng.integers(0, max(1, ch - size + 1))), x0 + int(rng.integers(0, max(1, cw - size + 1))), size))
    return out


def paste_digit(canvas: np.ndarray, label: np.ndarray, digit: np.ndarray, cls: int, ink: float,
                where: tuple[int, int, int]) -> None:
    """Blend one digit into `canvas` at `where`; its ink pixels take `cls`, its rim 255."""
    h, w = canvas.shape
    y, x, size = where
    glyph = upscaled(digit, size)
    glyph = glyph / max(glyph.max(), 1e-6)
    g = glyph[: h - y, : w - x]
    region = canvas[y:y + g.shape[0], x:x + g.shape[1]]
    region[:] = region * (1 - g) + ink * g
    lab = label[y:y + g.shape[0], x:x + g.shape[1]]
    lab[(g >= RIM) & (g < INK) & (lab == 0)] = IGNORE
    lab[g >= INK] = cls


def digits_canvas(pool: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = 40
    yy, xx = np.mgrid[0:size, 0:size] / size
    canvas = 0.15 + 0.1 * np.sin(2 * np.pi * (yy * rng.uniform(0.5, 2) + xx * rng.uniform(0.5, 2)))
    label = np.zeros((size, size), np.uint8)
    for where in slots(size, size, int(rng.integers(2, 5)), rng):
        index = int(rng.integers(len(pool)))
        paste_digit(canvas, label, pool[index], 1 + int(targets[index]), float(rng.uniform(0.55, 0.95)), where)
    return canvas + rng.normal(0, 0.04, canvas.shape), label


def photo_canvas(pool: np.ndarray, backgrounds: list[np.ndarray],
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = int(rng.integers(36, 61)), int(rng.integers(36, 61))
    photo = backgrounds[int(rng.integers(len(backgrounds)))]
    scale = rng.uniform(0.15, 0.4)      # shrink the photo so a crop holds real structure
    small = np.asarray(Image.fromarray((photo * 255).astype(np.uint8)).resize(
        (max(w, int(photo.shape[1] * scale)), max(h, int(photo.shape[0] * scale))), Image.BILINEAR), np.float32) / 255
    y, x = int(rng.integers(0, small.shape[0] - h + 1)), int(rng.integers(0, small.shape[1] - w + 1))
    canvas = small[y:y + h, x:x + w].copy()
    label = np.zeros((h, w), np.uint8)
    for where in slots(h, w, int(rng.integers(1, 4)), rng):
        index = int(rng.integers(len(pool)))
        y, x, size = where
        local = float(canvas[y:y + size, x:x + size].mean())
        sign = int(rng.choice([-1, 1])) if 0.25 < local < 0.75 else (1 if local <= 0.25 else -1)
        ink = float(np.clip(local + sign * rng.uniform(0.25, 0.45), 0, 1))
        paste_digit(canvas, label, pool[index], 1 if sign < 0 else 2, ink, where)
    return canvas + rng.normal(0, 0.03, canvas.shape), label


SETS: dict[str, tuple[list[str], int, int]] = {
    # name: (class names, train images, val images)
    "digits": (["background"] + [f"digit_{d}" for d in range(10)], 120, 60),
    "digits_on_photos": (["background", "dark_handwriting", "bright_handwriting"], 160, 60),
}


def build(out: Path, name: str, seed: int = 0) -> Path:
    """Write one set under out/name (VOC layout: JPEGImages, SegmentationClass, splits, classes.txt)."""
    class_names, num_train, num_val = SETS[name]
    images, targets = digits()
    half = len(images) // 2
    backgrounds = photos() if name == "digits_on_photos" else []
    root = out / name
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids: dict[str, list[str]] = {"train": [], "val": []}
    for split, count, pool in (("train", num_train, slice(0, half)), ("val", num_val, slice(half, None))):
        for i in range(count):
            if name == "digits":
                canvas, label = digits_canvas(images[pool], targets[pool], rng)
            else:
                canvas, label = photo_canvas(images[pool], backgrounds, rng)
            sample_id = f"{split}_{i:04d}"
            buf = io.BytesIO()
            Image.fromarray((np.clip(canvas, 0, 1) * 255).astype(np.uint8), "L").save(buf, "JPEG", quality=90)
            (root / "JPEGImages" / f"{sample_id}.jpg").write_bytes(buf.getvalue())
            save_mask_png(label, root / "SegmentationClass" / f"{sample_id}.png")
            ids[split].append(sample_id)
    for split, names in ids.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    (root / "classes.txt").write_text("".join(f"{n}\n" for n in class_names))
    return root


def main(argv: list[str] | None = None, echo: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the sets into (one subfolder each)")
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=sorted(SETS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in args.sets:
        root = build(args.out, name, args.seed)
        echo(f"{name}: {root} ({len(SETS[name][0])} classes, {SETS[name][1]} train / {SETS[name][2]} val)")


if __name__ == "__main__":
    main()
