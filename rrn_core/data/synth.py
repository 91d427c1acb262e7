"""A synthetic segmentation data set in the VOC layout, hard enough to need labels.

The point is a data set on which label efficiency is measurable on a laptop: a
tiny net learns it on CPU in a few hundred iterations, yet 1/16 of the labels is
clearly worse than all of them. So each object class has several appearance
*modes* (colour x texture x scale), and classes share colours and textures, only
their combinations tell them apart: a few labeled images miss some modes, the
unlabeled pool holds them. Objects occlude each other on a blotchy, noisy
background, images go through JPEG, and object outlines are marked 255 as VOC's
borders are. Every image has ground truth, so pseudo-label accuracy on the
unlabeled part can be measured. Generation is vectorised numpy: 500 images of
96x96 take a few seconds, and it is deterministic for a seed.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from rrn_core.constants import IGNORE_INDEX
from rrn_core.data.image_files import DataError
from rrn_core.data.palette import save_mask_png

FORMAT_VERSION = 1
META_FILE = "synth.json"
MODES_PER_CLASS = 3
TEXTURES = ("stripes", "checker", "dots", "rings", "waves")
# Eight saturated hues shared by all classes, so colour alone never identifies one.
HUES = np.array([
    [220, 60, 50], [240, 170, 40], [230, 220, 60], [70, 180, 70],
    [50, 170, 200], [60, 80, 210], [160, 70, 200], [230, 110, 170],
], dtype=np.float32)
PERIODS = (5.0, 8.0, 12.0)


@dataclass(frozen=True)
class Mode:
    """One appearance of a class: texture of two colours at a period and angle."""

    texture: int
    hue: int
    period: float
    angle: float
    contrast: float


FAMILIES = ("textures", "shapes")
# The "shapes" family's class-defining outlines (class k >= 1 is SHAPE_KINDS[(k - 1) % 6]),
# the most distinct first so that small class counts stay learnable.
SHAPE_KINDS = ("disc", "cross", "ring", "triangle", "square", "star")


@dataclass(frozen=True)
class SynthSpec:
    num_classes: int
    num_train: int
    num_val: int
    size: int
    seed: int
    grayscale: bool
    version: int = FORMAT_VERSION
    family: str = "textures"


def class_modes(num_classes: int, seed: int) -> list[list[Mode]]:
    """Appearance modes per object class (index 0 = background has none).

    (texture, hue, period) combinations are drawn without replacement while they
    last, so two classes never look identical.
    """
    rng = np.random.default_rng([seed, 7919])
    combos = [(t, h, p) for t in range(len(TEXTURES)) for h in range(len(HUES)) for p in range(len(PERIODS))]
    order = rng.permutation(len(combos))
    modes: list[list[Mode]] = [[]]
    k = 0
    for _cls in range(1, num_classes):
        cls_modes = []
        for _m in range(MODES_PER_CLASS):
            t, h, p = combos[order[k % len(combos)]]
            k += 1
            cls_modes.append(Mode(t, h, PERIODS[p], float(rng.uniform(0, np.pi)), float(rng.uniform(0.5, 0.9))))
        modes.append(cls_modes)
    return modes


def _texture(mode: Mode, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A [0,1] pattern; period and angle jitter per object so modes are not single points."""
    period = mode.period * rng.uniform(0.85, 1.15)
    angle = mode.angle + rng.uniform(-0.3, 0.3)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    name = TEXTURES[mode.texture]
    if name == "stripes":
        return 0.5 + 0.5 * np.sin(2 * np.pi * u / period)
    if name == "checker":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if name == "dots":
        du, dv = np.mod(u, period) - period / 2, np.mod(v, period) - period / 2
        return (du * du + dv * dv < (0.32 * period) ** 2).astype(np.float32)
    if name == "rings":
        cy, cx = rng.uniform(0, yy.shape[0], 2)
        return 0.5 + 0.5 * np.sin(2 * np.pi * np.hypot(yy - cy, xx - cx) / period)
    return 0.5 + 0.5 * np.sin(2 * np.pi * (u + 0.6 * period * np.sin(2 * np.pi * v / (3 * period))) / period)


def _shape(yy: np.ndarray, xx: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean region of a random ellipse, polygon or blob."""
    cy, cx = rng.uniform(0.1, 0.9, 2) * size
    radius = rng.uniform(0.12, 0.3) * size
    aspect = rng.uniform(0.6, 1.6)
    rot = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    y1 = (-dx * np.sin(rot) + dy * np.cos(rot)) * aspect
    x1 = (dx * np.cos(rot) + dy * np.sin(rot)) / aspect
    r, theta = np.hypot(y1, x1), np.arctan2(y1, x1)
    kind = rng.integers(3)
    if kind == 0:  # ellipse
        return r <= radius
    if kind == 1:  # regular polygon, 3..7 sides
        n = int(rng.integers(3, 8))
        phase = rng.uniform(0, 2 * np.pi / n)
        sector = np.mod(theta - phase, 2 * np.pi / n) - np.pi / n
        return r * np.cos(sector) <= radius * np.cos(np.pi / n)
    harmonics = sum(rng.uniform(0.05, 0.25) * np.sin(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    return r <= radius * (1 + harmonics)


def _smooth_noise(size: int, cells: int, rng: np.random.Generator, channels: int = 3) -> np.ndarray:
    """Low-frequency noise in [0,1]: a coarse random grid, bilinearly upsampled."""
    grid = (rng.random((cells, cells, channels)) * 255).astype(np.uint8)
    img = Image.fromarray(grid if channels == 3 else grid[..., 0]).resize((size, size), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr if channels == 3 else arr[..., None]


def _border(label: np.ndarray) -> np.ndarray:
    """Pixels whose 4-neighbourhood holds another class: VOC-style 255 outlines."""
    edge = np.zeros(label.shape, dtype=bool)
    diff_v = label[1:, :] != label[:-1, :]
    diff_h = label[:, 1:] != label[:, :-1]
    edge[1:, :] |= diff_v
    edge[:-1, :] |= diff_v
    edge[:, 1:] |= diff_h
    edge[:, :-1] |= diff_h
    return edge


def _outline(kind: str, yy: np.ndarray, xx: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean region of one class-defining outline, randomly placed, scaled and rotated.

    The boundary is displaced by low-frequency noise (about 1.5 px), so no class has
    a clean edge; colour says nothing about the class.
    """
    cy, cx = rng.uniform(0.15, 0.85, 2) * size
    radius = rng.uniform(0.18, 0.32) * size
    rot = rng.uniform(0, 2 * np.pi)
    wobble = (_smooth_noise(size, 6, rng, channels=1)[..., 0] - 0.5) * 3.0
    dy, dx = yy - cy + wobble, xx - cx - wobble
    v = (-dx * np.sin(rot) + dy * np.cos(rot)) / radius
    u = (dx * np.cos(rot) + dy * np.sin(rot)) / radius
    r, theta = np.hypot(u, v), np.arctan2(v, u)
    if kind == "disc":
        return r <= 1.0
    if kind == "triangle":
        sector = np.mod(theta, 2 * np.pi / 3) - np.pi / 3
        return r * np.cos(sector) <= 0.55
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.75
    if kind == "cross":
        return ((np.abs(u) <= 0.28) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.28) & (np.abs(u) <= 1.0))
    if kind == "ring":
        return (r <= 1.0) & (r >= 0.55)
    return r <= 0.5 + 0.45 * np.cos(5 * theta) ** 2  # star


def render_shapes_sample(index: int, spec: SynthSpec) -> tuple[np.ndarray, np.ndarray]:
    """The "shapes" family: each class has an outline (disc, cross, ring, ...) and a tint,
    the tints of neighbouring classes overlap, and objects are blended into the
    background at low contrast, with noisy boundaries, blur and sensor noise. Neither
    cue alone is reliable: tints are ambiguous between neighbours and the tiny nets
    learn outlines slowly. A pure function of (seed, index)."""
    rng = np.random.default_rng([spec.seed, index, 31337])
    size = spec.size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = rng.uniform(70, 180, 3).astype(np.float32)
    background = base * (0.7 + 0.6 * _smooth_noise(size, int(rng.integers(3, 8)), rng))
    image = background.copy()
    label = np.zeros((size, size), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, spec.num_classes))
        region = _outline(SHAPE_KINDS[(cls - 1) % len(SHAPE_KINDS)], yy, xx, size, rng)
        if not region.any():
            continue
        # Class tints walk around the hue wheel; the jitter spans about a neighbour's tint.
        hue = (cls - 1) * len(HUES) / max(1, spec.num_classes - 1) + rng.normal(0, 0.6)
        lo = int(np.floor(hue)) % len(HUES)
        frac = hue - np.floor(hue)
        tint = HUES[lo] * (1 - frac) + HUES[(lo + 1) % len(HUES)] * frac
        alpha = rng.uniform(0.5, 0.75)  # low contrast: the object keeps much of the background
        paint = background * (1 - alpha) + (tint + rng.normal(0, 15, 3)).astype(np.float32) * alpha
        image[region] = paint[region]  # opaque: an occluded object does not show through
        label[region] = cls
    blurred = np.asarray(Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 1.2)))), dtype=np.float32)
    blurred += rng.normal(0, rng.uniform(4, 10), blurred.shape)
    label[_border(label)] = IGNORE_INDEX
    return np.clip(blurred, 0, 255).astype(np.uint8), label


def render_sample(index: int, spec: SynthSpec, modes: list[list[Mode]]) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8[S,S,3]) and its label (uint8[S,S]); a pure function of (seed, index)."""
    if spec.family == "shapes":
        return render_shapes_sample(index, spec)
    rng = np.random.default_rng([spec.seed, index])
    size = spec.size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)

    base = rng.uniform(60, 170, 3).astype(np.float32)
    blotch = _smooth_noise(size, int(rng.integers(3, 7)), rng)
    image = base * (0.6 + 0.8 * blotch)
    if rng.random() < 0.5:  # a faint background texture, so "textured" does not mean "object"
        decoy = Mode(int(rng.integers(len(TEXTURES))), 0, float(rng.choice(PERIODS)), float(rng.uniform(0, np.pi)), 0.0)
        image *= 1 + rng.uniform(0.15, 0.3) * (_texture(decoy, yy, xx, rng)[..., None] - 0.5)
    label = np.zeros((size, size), dtype=np.uint8)

    objects = int(rng.integers(1, 5))
    for _ in range(objects):
        cls = int(rng.integers(1, spec.num_classes))
        mode = modes[cls][int(rng.integers(len(modes[cls])))]
        region = _shape(yy, xx, size, rng)
        if not region.any():
            continue
        colour = HUES[mode.hue] * rng.uniform(0.75, 1.15) + rng.normal(0, 12, 3)
        other = colour * (1 - mode.contrast) + base * 0.3 * mode.contrast
        pattern = _texture(mode, yy, xx, rng)[..., None]
        shading = 0.85 + 0.3 * _smooth_noise(size, 3, rng, channels=1)
        paint = (colour * pattern + other * (1 - pattern)) * shading
        image[region] = paint[region]
        label[region] = cls

    ramp = rng.uniform(-0.25, 0.25, 2)
    image *= 1 + ramp[0] * (xx / size - 0.5)[..., None] + ramp[1] * (yy / size - 0.5)[..., None]
    image += rng.normal(0, rng.uniform(4, 14), image.shape)
    label[_border(label)] = IGNORE_INDEX
    return np.clip(image, 0, 255).astype(np.uint8), label


def _jpeg(image: np.ndarray, grayscale: bool, quality: int) -> bytes:
    img = Image.fromarray(image, "RGB")
    if grayscale:
        img = img.convert("L")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def class_names_for(num_classes: int) -> list[str]:
    return ["background"] + [f"object_{k}" for k in range(1, num_classes)]


def _existing_spec(out: Path) -> SynthSpec | None:
    meta = out / META_FILE
    if not meta.is_file():
        return None
    try:
        return SynthSpec(**json.loads(meta.read_text()))
    except (ValueError, TypeError):
        return None


def generate_synthetic(out: str | Path, num_classes: int = 6, num_train: int = 400, num_val: int = 100,
                       size: int = 96, seed: int = 0, grayscale: bool = False, overwrite: bool = False,
                       progress: Callable[[int, int], None] | None = None, family: str = "textures") -> Path:
    """Write the synthetic set to `out` (VOC layout) and return its path.

    `family` picks the generator: "textures" (classes told apart by combinations of
    colour, texture and scale) or "shapes" (classes told apart by outline only, low
    contrast, noisy boundaries); two generators so no default is tuned to one set.

    An existing set with the same parameters is reused as is (demos and
    concurrent trials may all ask for it); a different synthetic set there is
    replaced only with `overwrite`, and only when everything in the folder is that
    set's own (`own_entries`: what its synth.json says it wrote); a folder holding
    anything else (a checkpoint, split files a run drew, a user's file) is never
    touched: it is refused, naming what is foreign. The set is built in a temporary
    folder and renamed into place, so a reader never sees a half-written one.
    """
    if num_classes < 2 or num_classes > 255:
        raise ValueError(f"num_classes must be in 2..255, got {num_classes}")
    if num_train < 1 or num_val < 1:
        raise ValueError("num_train and num_val must be at least 1")
    if size < 16:
        raise ValueError(f"size must be at least 16, got {size}")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    spec = SynthSpec(num_classes, num_train, num_val, size, seed, grayscale, family=family)
    out = Path(out).expanduser()
    existing = _existing_spec(out)
    if existing == spec:
        return out
    if out.exists() and any(out.iterdir()):
        if existing is None:
            raise DataError(f"{out}: folder exists and is not a synthetic data set; choose another folder")
        if not overwrite:
            raise DataError(
                f"{out}: holds a synthetic set with other parameters ({asdict(existing)}); "
                "pass overwrite=True (--overwrite) to replace it"
            )
        foreign = foreign_entries(out, existing)
        if foreign:
            shown = ", ".join(str(p) for p in foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise DataError(
                f"{out}: holds files the synthetic set did not write ({shown}); --overwrite replaces "
                "only a folder that holds nothing but the set: move them out or choose another folder")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write(tmp, spec, progress)
        if _existing_spec(out) == spec:  # a concurrent writer finished the same set first
            return out
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, out)
        except OSError:
            if _existing_spec(out) != spec:  # lost a race against a different writer
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


#: The folders every synthetic set makes (relative to its root).
OWN_FOLDERS = ("JPEGImages", "SegmentationClass", "ImageSets", "ImageSets/Segmentation")


def own_entries(spec: SynthSpec) -> set[str]:
    """Every file and folder `_write` makes for `spec`, relative to the set's root."""
    ids = [f"img_{i:06d}" for i in range(spec.num_train + spec.num_val)]
    return {*OWN_FOLDERS, "ImageSets/Segmentation/train.txt", "ImageSets/Segmentation/val.txt", "classes.txt",
            META_FILE, *(f"JPEGImages/{i}.jpg" for i in ids),
            *(f"SegmentationClass/{i}.png" for i in ids)}


def foreign_entries(out: Path, spec: SynthSpec) -> list[Path]:
    """What is in `out` that the synthetic set `spec` did not write (sorted; a foreign
    folder is listed once, not its contents)."""
    own = own_entries(spec)
    found: list[Path] = []

    def walk(folder: Path) -> None:
        for path in sorted(folder.iterdir()):
            rel = path.relative_to(out).as_posix()
            if rel not in own or path.is_symlink() or path.is_dir() != (rel in OWN_FOLDERS):
                found.append(path)
            elif path.is_dir():
                walk(path)

    walk(out)
    return found


def _write(root: Path, spec: SynthSpec, progress: Callable[[int, int], None] | None) -> None:
    for sub in OWN_FOLDERS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    modes = class_modes(spec.num_classes, spec.seed)
    total = spec.num_train + spec.num_val
    ids = [f"img_{i:06d}" for i in range(total)]
    quality_rng = np.random.default_rng([spec.seed, 104729])
    for i, sample_id in enumerate(ids):
        image, label = render_sample(i, spec, modes)
        (root / "JPEGImages" / f"{sample_id}.jpg").write_bytes(
            _jpeg(image, spec.grayscale, int(quality_rng.integers(55, 92))))
        save_mask_png(label, root / "SegmentationClass" / f"{sample_id}.png")
        if progress is not None:
            progress(i + 1, total)
    splits = root / "ImageSets" / "Segmentation"
    (splits / "train.txt").write_text("".join(f"{i}\n" for i in ids[: spec.num_train]))
    (splits / "val.txt").write_text("".join(f"{i}\n" for i in ids[spec.num_train:]))
    (root / "classes.txt").write_text("".join(f"{n}\n" for n in class_names_for(spec.num_classes)))
    (root / META_FILE).write_text(json.dumps(asdict(spec), indent=2) + "\n")
