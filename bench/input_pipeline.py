"""Images/s of the training input pipeline, before and after, and the GPU step time it can keep fed.

Generated data at the real sizes: VOC-size JPEGs (500x375, palette-free id masks)
and Cityscapes-size PNGs (2048x1024, labelIds masks), read through the run's own
datasets (`build_datasets`) and loaders (`rrn_core.loop.infinite_loader`: the
resumable sampler, one DataLoader per stream) with the configs' crop and batch
sizes. One "step" pulls a labeled batch and two unlabeled batches (weak + strong
views, CutMix boxes), as one rrn/cps iteration does. At 1, 2 and 4 workers per
loader (three loaders, so 3, 6, 12 worker processes) it prints images/s, images/s
per worker process, and seconds per step: a GPU step faster than that waits for
data. A per-stage profile in one process (decode, geometry, strong view,
normalise, CutMix) says where the time goes.

Before/after in one run: `--baseline REV` (default: the revision before the
pipeline was sped up) extracts rrn_core/ as it was at REV (`git archive`) and
measures it with the same generated files, configs and loaders; each setting runs
today's code and REV's in turn, each in a fresh process, so a load that comes and
goes on a shared machine hits both alike. `--baseline none` measures today's only.

    .venv/bin/python bench/input_pipeline.py [--sets voc cityscapes] [--workers 1 2 4] [--steps 6]
        [--baseline 9fdc1b7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
# The rrn_core to measure: this checkout's, or an extracted older revision's (--baseline)
SOURCE_ENV = "RRN_BENCH_SOURCE"
sys.path.insert(0, os.environ.get(SOURCE_ENV, str(REPO)))

import torch  # noqa: E402

from rrn_core.config import RunConfig, load_config  # noqa: E402
from rrn_core.data.bundle import build_datasets  # noqa: E402
from rrn_core.data.datasets import item_rngs  # noqa: E402
from rrn_core.data.transforms import cutmix_mask, mask_tensor, normalize, shared_geometry, strong_view  # noqa: E402
from rrn_core.loop import infinite_loader  # noqa: E402
from rrn_core.distributed import DistInfo

BASELINE = "9fdc1b7"   # the last revision with the PIL strong view and full-image resize
VOC_SIZE = (500, 375)
CITYSCAPES_SIZE = (2048, 1024)
CITYSCAPES_LABEL_IDS = (7, 8, 11, 21, 23, 24, 26)   # road, sidewalk, building, vegetation, sky, person, car


def scene(size: tuple[int, int], ids: tuple[int, ...], rng: np.random.Generator
          ) -> tuple[Image.Image, Image.Image]:
    """A photo-like image (smooth gradient, shapes, mild noise: JPEG/PNG sizes close to
    real photos, unlike pure noise) and its id mask."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([(xx / w) * 255, (yy / h) * 255, ((xx + yy) / (w + h)) * 255], -1)
    img = Image.fromarray(base.astype(np.uint8), "RGB")
    mask = Image.new("L", size, ids[0])
    draw, mdraw = ImageDraw.Draw(img), ImageDraw.Draw(mask)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        x1, y1 = x0 + int(rng.integers(20, w // 3)), y0 + int(rng.integers(20, h // 3))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        label = int(rng.choice(ids[1:]))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
            mdraw.ellipse((x0, y0, x1, y1), fill=label)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
            mdraw.rectangle((x0, y0, x1, y1), fill=label)
    arr = np.asarray(img, dtype=np.int16) + rng.integers(-6, 7, (h, w, 3), dtype=np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB"), mask


def generate_voc(root: Path, count: int, size: tuple[int, int] = VOC_SIZE, seed: int = 0) -> Path:
    """A VOC-layout tree of `count` train (+2 val) JPEGs with grayscale id masks."""
    rng = np.random.default_rng(seed)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "SegmentationClass").mkdir(exist_ok=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    ids = [f"img_{i:05d}" for i in range(count + 2)]
    for name in ids:
        img, mask = scene(size, tuple(range(21)), rng)
        img.save(root / "JPEGImages" / f"{name}.jpg", quality=90)
        mask.save(root / "SegmentationClass" / f"{name}.png")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids[:count]) + "\n")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids[count:]) + "\n")
    return root


def generate_cityscapes(root: Path, count: int, size: tuple[int, int] = CITYSCAPES_SIZE, seed: int = 0) -> Path:
    """A Cityscapes-layout tree of `count` train (+1 val) PNGs with labelIds masks."""
    rng = np.random.default_rng(seed)
    for subset, n in (("train", count), ("val", 1)):
        img_dir = root / "leftImg8bit" / subset / "benchcity"
        mask_dir = root / "gtFine" / subset / "benchcity"
        img_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, mask = scene(size, CITYSCAPES_LABEL_IDS, rng)
            stem = f"benchcity_{i:06d}_000019"
            img.save(img_dir / f"{stem}_leftImg8bit.png", compress_level=6)
            mask.save(mask_dir / f"{stem}_gtFine_labelIds.png")
    return root


def pipeline_config(kind: str, root: Path, workers: int, crop: int | None = None,
                    batch: int | None = None) -> RunConfig:
    """The shipped config of `kind` (voc / cityscapes) pointed at `root`, half the images labeled."""
    overrides = {"data.root": str(root), "data.label_ratio": 0.5, "data.label_count": None,
                 "data.num_workers": workers, "data.mask_dir": "SegmentationClass",
                 "runtime.device": "cpu"}
    if kind == "cityscapes":
        overrides.pop("data.mask_dir")
    if crop:
        overrides["data.crop_size"] = crop
    if batch:
        overrides["data.batch_size"] = batch
        overrides["data.unlabeled_batch_size"] = batch
    return load_config(REPO / "configs" / f"{kind}.yaml", overrides)


def measure_loaders(cfg: RunConfig, steps: int, pin_memory: bool = False) -> dict[str, float]:
    """Steps/s of the three training streams, loaded exactly as rrn_core.loop.train does."""
    dc = cfg.data
    bundle = build_datasets(dc, cfg.runtime.seed)
    info = DistInfo()
    streams = [infinite_loader(bundle.labeled, dc.batch_size, 0, 0, info, 0, dc.num_workers, pin_memory),
               infinite_loader(bundle.unlabeled, dc.unlabeled_batch_size, 0, 1, info, 0, dc.num_workers, pin_memory),
               infinite_loader(bundle.unlabeled, dc.unlabeled_batch_size, 0, 2, info, 0, dc.num_workers, pin_memory)]
    for stream in streams:   # worker start-up and the first batch are not throughput
        next(stream)
    tic = time.perf_counter()
    for _ in range(steps):
        for stream in streams:
            next(stream)
    elapsed = time.perf_counter() - tic
    images = steps * (dc.batch_size + 2 * dc.unlabeled_batch_size)
    for stream in streams:   # persistent workers: stop them now, not at interpreter exit
        shutdown = getattr(stream, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
    processes = 3 * max(1, dc.num_workers)
    return {"images_s": images / elapsed, "per_worker": images / elapsed / processes,
            "step_s": elapsed / steps, "processes": processes}


def profile_stages(cfg: RunConfig, items: int) -> dict[str, float]:
    """Milliseconds per unlabeled item spent in each stage, in this process."""
    bundle = build_datasets(cfg.data, cfg.runtime.seed)
    ds = bundle.unlabeled
    totals = dict.fromkeys(("decode", "geometry", "strong", "normalize", "cutmix+masks"), 0.0)
    for i in range(items):
        index, (geo, photo, mix) = item_rngs((i % len(ds), i), len(ds), ds.seed, 3)
        t0 = time.perf_counter()
        image, mask = ds.layout.load(ds.samples[index])
        t1 = time.perf_counter()
        img, lab, ign = shared_geometry(image, mask, geo, ds.crop_size, ds.scale_range)
        t2 = time.perf_counter()
        strong = strong_view(img, photo)
        t3 = time.perf_counter()
        normalize(img), normalize(strong)
        t4 = time.perf_counter()
        mask_tensor(ign), mask_tensor(cutmix_mask(ds.crop_size, ds.cutmix, mix)), mask_tensor(lab)
        t5 = time.perf_counter()
        for key, dt in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            totals[key] += dt
    return {k: v / items * 1000 for k, v in totals.items()}


def item_ms(cfg: RunConfig, items: int) -> dict[str, float]:
    """Milliseconds per unlabeled item (load, both views, masks) in this process, by the
    wall clock and by this process's CPU time: the per-item cost without loader
    overheads, comparable across revisions; the CPU figure barely moves when other
    jobs share the cores, the wall figure does."""
    ds = build_datasets(cfg.data, cfg.runtime.seed).unlabeled
    ds[(0, 0)]   # first-call costs (imports, tables) are not per item
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(items):
        ds[(i % len(ds), i)]
    return {"wall": (time.perf_counter() - wall) / items * 1000, "cpu": (time.process_time() - cpu) / items * 1000}


def source_tree(rev: str, dest: Path) -> Path:
    """rrn_core/ as it was at git revision `rev`, extracted under `dest` (importable from there)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", rev, "rrn_core"], cwd=REPO, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def measure_in(source: Path | None, kind: str, root: Path, workers: int, steps: int,
               items: int, crop: int | None = None, batch: int | None = None) -> dict[str, float]:
    """`measure_loaders` and `item_ms` in a fresh process importing rrn_core from `source`
    (None: this checkout), so each revision runs with its own code in its workers too."""
    spec = {"kind": kind, "root": str(root), "workers": workers, "steps": steps, "items": items,
            "crop": crop, "batch": batch}
    env = dict(os.environ)
    if source is None:
        env.pop(SOURCE_ENV, None)
    else:
        env[SOURCE_ENV] = str(source)
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--measure-json", json.dumps(spec)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _measure_json(spec: dict) -> None:
    """Child side of `measure_in`: print one JSON line of figures."""
    import rrn_core
    expected = Path(os.environ.get(SOURCE_ENV, REPO)).resolve()
    if not Path(rrn_core.__file__).resolve().is_relative_to(expected):
        raise SystemExit(f"rrn_core imported from {rrn_core.__file__}, expected under {expected}")
    torch.set_num_threads(1)
    cfg = pipeline_config(spec["kind"], Path(spec["root"]), spec["workers"], spec["crop"], spec["batch"])
    result = measure_loaders(cfg, spec["steps"])
    result["item_ms"] = item_ms(pipeline_config(spec["kind"], Path(spec["root"]), 0, spec["crop"],
                                                spec["batch"]), spec["items"])
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["voc", "cityscapes"], choices=["voc", "cityscapes"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per setting")
    parser.add_argument("--images", type=int, default=48, help="generated train images per set")
    parser.add_argument("--profile-items", type=int, default=12)
    parser.add_argument("--baseline", default=BASELINE, help="git revision to compare with ('none': skip)")
    parser.add_argument("--root", default=None, help="where to generate (default: a temp dir)")
    parser.add_argument("--measure-json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_json:
        _measure_json(json.loads(args.measure_json))
        return
    torch.set_num_threads(1)
    compare = args.baseline.lower() != "none"
    print(f"cpu cores {os.cpu_count()}; one step = labeled batch + 2 unlabeled batches; "
          f"{args.steps} timed steps per setting after one warm-up step"
          + (f"; before = rrn_core at {args.baseline}, after = this checkout" if compare else ""))
    with tempfile.TemporaryDirectory(dir=args.root) as tmp:
        old = source_tree(args.baseline, Path(tmp) / "baseline") if compare else None
        for kind in args.sets:
            tic = time.perf_counter()
            if kind == "voc":
                root = generate_voc(Path(tmp) / "voc", args.images)
                what = f"VOC-size JPEGs {VOC_SIZE[0]}x{VOC_SIZE[1]}"
            else:
                root = generate_cityscapes(Path(tmp) / "cityscapes", args.images)
                what = f"Cityscapes-size PNGs {CITYSCAPES_SIZE[0]}x{CITYSCAPES_SIZE[1]}"
            cfg = pipeline_config(kind, root, 0)
            dc = cfg.data
            print(f"\n{kind}: {args.images} {what} (generated in {time.perf_counter() - tic:.0f} s), "
                  f"crop {dc.crop_size}, batch {dc.batch_size} + 2x{dc.unlabeled_batch_size}")
            stages = profile_stages(cfg, args.profile_items)
            print("  one unlabeled item, one process (after): "
                  + ", ".join(f"{k} {v:.1f} ms" for k, v in stages.items())
                  + f" (total {sum(stages.values()):.1f} ms)")
            print(f"  {'workers/loader':>14}{'processes':>11}"
                  + (f"{'before img/s':>14}{'after img/s':>13}{'ratio':>7}" if compare else f"{'images/s':>10}")
                  + f"{'per worker':>12}{'s/step':>9}")
            items = []
            for n, workers in enumerate(args.workers):
                # alternate which revision goes first, so neither always gets the cooler machine
                order = ([None, old] if n % 2 == 0 else [old, None]) if compare else [None]
                runs = {src: measure_in(src, kind, root, workers, args.steps, args.profile_items)
                        for src in order}
                new = runs[None]
                items.append((runs[old]["item_ms"] if compare else None, new["item_ms"]))
                row = f"  {workers:>14}{new['processes']:>11}"
                if compare:
                    before = runs[old]
                    row += (f"{before['images_s']:>14.1f}{new['images_s']:>13.1f}"
                            f"{new['images_s'] / before['images_s']:>6.2f}x")
                else:
                    row += f"{new['images_s']:>10.1f}"
                print(row + f"{new['per_worker']:>12.2f}{new['step_s']:>9.3f}")
            for clock in ("cpu", "wall"):
                after_ms = statistics.median(a[clock] for _, a in items)
                line = f"  per unlabeled item, one process, {clock} time (median of {len(items)}): "
                if compare:
                    before_ms = statistics.median(b[clock] for b, _ in items)
                    line += f"before {before_ms:.1f} ms, after {after_ms:.1f} ms ({before_ms / after_ms:.2f}x)"
                else:
                    line += f"{after_ms:.1f} ms"
                print(line)
    print("\nper worker and s/step are the after pipeline's; s/step is the fastest GPU step it "
          "keeps fed on this machine; per-worker images/s scale it to a host with more cores.")


if __name__ == "__main__":
    main()
