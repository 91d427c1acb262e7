"""`build_datasets`: a DataConfig in, the run's three datasets and their provenance out.

The split decision lives here (explicit files > ratio/count drawn from the train
split > all train images labeled) so the loop and the sweep never re-derive it,
and the split files used plus their content hash travel with the datasets into
MLflow.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from rrn_core.data.datasets import LabeledDataset, UnlabeledDataset, ValDataset
from rrn_core.data.image_files import DataError, read_text_lines
from rrn_core.data.layout import Layout, Sample
from rrn_core.data.layouts import make_layout
from rrn_core.data.splits import (LABELED_FILE, UNLABELED_FILE, make_split, split_folder_name, split_hash,
                                  split_text, write_split, write_text_atomic)
from rrn_core.config_sections import DataConfig

CLASSES_FILE = "classes.txt"


@dataclass
class DataBundle:
    labeled: Dataset
    unlabeled: Dataset | None
    val: Dataset
    class_names: list[str]
    split_hash: str
    labeled_split: str
    unlabeled_split: str | None


@dataclass(frozen=True)
class SplitFiles:
    """The split files a run trains on, and their content hash."""

    labeled: Path
    unlabeled: Path | None
    hash: str


def layout_for(cfg: DataConfig) -> Layout:
    return make_layout(cfg.layout, cfg.root, cfg.num_classes, cfg.mask_dir)


def resolve_class_names(cfg: DataConfig, layout: Layout | None = None) -> list[str]:
    """Config names > root/classes.txt > the layout's own names > class_0..class_{n-1}."""
    layout = layout or layout_for(cfg)
    if cfg.class_names is not None:
        names, source = list(cfg.class_names), "data.class_names"
    elif (layout.root / CLASSES_FILE).is_file():
        path = layout.root / CLASSES_FILE
        names = [line for _, line in read_text_lines(path, "class names file") if line]
        source = str(path)
    else:
        names = layout.default_class_names() or [f"class_{i}" for i in range(cfg.num_classes)]
        source = "defaults"
    if len(names) != cfg.num_classes:
        raise DataError(
            f"{source}: lists {len(names)} class names but data.num_classes is {cfg.num_classes}"
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"{source}: class name {twice[0]!r} is listed more than once (every class "
                        "needs its own name: metrics are keyed by name, one would hide the other)")
    return names


def derived_split_folder(cfg: DataConfig, layout: Layout, ratio: float | None,
                         count: int | None, seed: int) -> Path:
    """split_dir/ratio_0.125_seed_0 (under a sub-folder named after a non-default train split,
    so splits drawn from, e.g., train.txt and trainaug.txt never overwrite each other)."""
    base = layout.resolve(cfg.split_dir)
    if cfg.train_split is not None and Path(cfg.train_split).stem != "train":
        base = base / Path(cfg.train_split).stem
    return base / split_folder_name(ratio, count, seed)


def draw_split(train: list[Sample], ratio: float | None, count: int | None, seed: int,
               folder: Path, source: str) -> SplitFiles:
    """Draw a labeled/unlabeled split from the train samples and write it under `folder`."""
    try:
        labeled, unlabeled = make_split([s.line for s in train], ratio=ratio, count=count, seed=seed)
        digest = write_split(labeled, unlabeled, folder)
    except ValueError as err:
        raise DataError(f"{source}: {err}") from None
    except OSError as err:
        raise DataError(
            f"{folder}: cannot write split files ({err}); set data.split_dir to a writable folder"
        ) from None
    return SplitFiles(folder / LABELED_FILE, folder / UNLABELED_FILE, digest)


def changed_split_files(train: list[Sample], ratio: float | None, count: int | None, seed: int,
                        folder: Path) -> list[Path]:
    """The split files already in `folder` whose content differs from the split this
    draw writes (hand-edited, or drawn from another train list): runs that used them
    would no longer be reproducible, so `rrn data split` keeps them unless told."""
    try:
        labeled, unlabeled = make_split([s.line for s in train], ratio=ratio, count=count, seed=seed)
    except ValueError:
        return []    # draw_split reports it, naming the source
    wanted = {folder / LABELED_FILE: split_text(labeled), folder / UNLABELED_FILE: split_text(unlabeled)}
    return [path for path, text in wanted.items()
            if path.is_file() and path.read_bytes() != text.encode("utf-8")]


def resolve_splits(cfg: DataConfig, layout: Layout) -> SplitFiles:
    """Which split files this config trains on, writing derived ones when needed."""
    if cfg.labeled_split is not None:
        labeled = layout.resolve(cfg.labeled_split)
        unlabeled = layout.resolve(cfg.unlabeled_split) if cfg.unlabeled_split else None
        for path in (labeled, unlabeled):
            if path is not None and not path.is_file():
                raise DataError(f"{path}: split file not found")
        return SplitFiles(labeled, unlabeled, split_hash([labeled, unlabeled]))
    if cfg.unlabeled_split is not None:
        raise DataError("data.unlabeled_split is set but data.labeled_split is not")
    train = layout.samples(cfg.train_split, "train", need_mask=False)
    source = layout.split_source(cfg.train_split, "train")
    if cfg.label_ratio is not None or cfg.label_count is not None:
        folder = derived_split_folder(cfg, layout, cfg.label_ratio, cfg.label_count, cfg.split_seed)
        return draw_split(train, cfg.label_ratio, cfg.label_count, cfg.split_seed, folder, source)
    # Supervised on all labels: the train split itself is the labeled split.
    if cfg.train_split is not None or layout.default_split_file("train") is not None:
        path = layout.resolve(cfg.train_split) if cfg.train_split else layout.default_split_file("train")
        assert path is not None
        return SplitFiles(path, None, split_hash([path, None]))
    path = layout.resolve(cfg.split_dir) / "all" / LABELED_FILE  # scanned layouts: record the list
    try:
        write_text_atomic(path, split_text(sorted(s.line for s in train)))
    except OSError as err:
        raise DataError(f"{path}: cannot write split file ({err}); set data.split_dir") from None
    return SplitFiles(path, None, split_hash([path, None]))


def build_datasets(cfg: DataConfig, seed: int) -> DataBundle:
    """The labeled, unlabeled and val datasets of a run (see docs/contracts.md).

    `seed` (the run seed) is mixed into every item's augmentation draw; the split
    itself depends only on `cfg.split_seed`, so all runs of a sweep share it.
    """
    layout = layout_for(cfg)
    class_names = resolve_class_names(cfg, layout)
    files = resolve_splits(cfg, layout)
    labeled_samples = layout.samples(files.labeled, "train", need_mask=True)
    unlabeled_samples = (
        layout.samples(files.unlabeled, "train", need_mask=False)
        if files.unlabeled is not None and files.unlabeled.stat().st_size > 0 else []
    )
    val_samples = layout.samples(cfg.val_split, "val", need_mask=True)
    geometry = {"crop_size": cfg.crop_size, "scale_range": cfg.scale_range, "seed": seed}
    return DataBundle(
        labeled=LabeledDataset(layout, labeled_samples, **geometry),
        unlabeled=(UnlabeledDataset(layout, unlabeled_samples, cutmix=cfg.cutmix, **geometry)
                   if unlabeled_samples else None),
        val=ValDataset(layout, val_samples),
        class_names=class_names,
        split_hash=files.hash,
        labeled_split=str(files.labeled),
        unlabeled_split=str(files.unlabeled) if files.unlabeled is not None else None,
    )


def dataset_fingerprint(cfg: DataConfig) -> str:
    """Cheap identity of the data on disk: sha256 of (relative path, size) of every train
    and val file, 16 hex digits. Stats files only, so it costs milliseconds per
    thousand images; logged with every sweep to tell "same data?" at a glance."""
    layout = layout_for(cfg)
    digest = hashlib.sha256()
    for subset, split in (("train", cfg.train_split), ("val", cfg.val_split)):
        digest.update(f"[{subset}]\n".encode())
        for sample in layout.samples(split, subset, need_mask=False):
            for path in (sample.image, sample.mask):
                if path is None:
                    continue
                try:
                    size = path.stat().st_size
                except OSError:
                    size = -1
                rel = path.relative_to(layout.root) if path.is_relative_to(layout.root) else path
                digest.update(f"{rel.as_posix()}\t{size}\n".encode())
    return digest.hexdigest()[:16]
