"""Up-front scan of a data set: every problem at once, before a sweep spends hours.

The datasets check each file lazily, so a broken mask would only fail the trial
that happens to draw it, possibly hours in. `check_dataset` opens every file
the config can touch, with the same readers and checks, and lists all problems
(each naming its file) instead of stopping at the first. It also refuses what
reads fine but cannot train or measure: val images that are also training images
(a leak), and train or val masks that are all the ignore index.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rrn_core.constants import IGNORE_INDEX
from rrn_core.data.bundle import layout_for, resolve_class_names
from rrn_core.data.image_files import DataError
from rrn_core.data.layout import Layout, Sample
from rrn_core.data.splits import labeled_size
from rrn_core.config_sections import DataConfig


@dataclass
class _Role:
    """One split the config reads: its samples and whether they need masks."""

    source: str
    subset: str
    need_mask: bool
    samples: list[Sample]


def _gather(cfg: DataConfig, layout: Layout, problems: list[str], val_only: bool = False) -> list[_Role]:
    """Every split the config can use (only the val split with `val_only`, for
    evaluation); split-level problems are appended to `problems`."""
    roles: list[tuple[str | None, str, bool, str]] = []
    if val_only:
        pass
    elif cfg.labeled_split is not None:
        roles.append((cfg.labeled_split, "train", True, "data.labeled_split"))
        if cfg.unlabeled_split is not None:
            roles.append((cfg.unlabeled_split, "train", False, "data.unlabeled_split"))
    else:
        # Any train image may be drawn as labeled, so all of them need masks.
        roles.append((cfg.train_split, "train", True, "data.train_split"))
    roles.append((cfg.val_split, "val", True, "data.val_split"))

    found: list[_Role] = []
    for split, subset, need_mask, field in roles:
        try:
            samples = layout.samples(split, subset, need_mask)
        except DataError as err:
            problems.append(f"{err} ({field})")
            continue
        seen: set[str] = set()
        for s in samples:
            if s.id in seen:
                problems.append(f"{layout.split_source(split, subset)}: lists {s.id!r} more than once")
            seen.add(s.id)
        if field == "data.train_split" and cfg.label_count is not None:
            try:
                labeled_size(len(samples), count=cfg.label_count)
            except ValueError as err:
                problems.append(f"{layout.split_source(split, subset)}: {err} (data.label_count)")
        found.append(_Role(layout.split_source(split, subset), subset, need_mask, samples))
    return found


def _leak(roles: list[_Role]) -> list[str]:
    """Val images that are also training images: val would score what was learnt."""
    train = {s.image.resolve(): role.source for role in roles if role.subset == "train" for s in role.samples}
    problems = []
    for role in (r for r in roles if r.subset == "val"):
        both = [s for s in role.samples if s.image.resolve() in train]
        if both:
            shown = ", ".join(repr(s.id) for s in both[:5]) + (" ..." if len(both) > 5 else "")
            problems.append(f"{role.source}: {len(both)} val image(s) are also in the training split "
                            f"{train[both[0].image.resolve()]}: {shown} (a train/val leak: val would "
                            "measure images the run learnt)")
    return problems


def _nothing_labelled(roles: list[_Role], labelled: set[Path]) -> list[str]:
    """A subset whose masks are all the ignore index: no pixel to learn from (train:
    the loss is 0) or to measure (val: every IoU undefined)."""
    problems = []
    for subset, purpose in (("train", "nothing to learn"), ("val", "nothing to measure")):
        masks = [s.mask for r in roles if r.subset == subset and r.need_mask for s in r.samples
                 if s.mask is not None]
        if masks and not any(m in labelled for m in masks):
            source = next(r.source for r in roles if r.subset == subset and r.need_mask)
            problems.append(f"{source}: every {subset} mask ({len(masks)}) is all {IGNORE_INDEX} "
                            f"(ignore): {purpose}")
    return problems


def check_dataset(cfg: DataConfig, progress: Callable[[int, int], None] | None = None,
                  workers: int | None = None, val_only: bool = False) -> list[str]:
    """All problems of the data set `cfg` describes (empty list: ready to train).

    Reads every image and mask once (in threads: PIL decodes without the GIL);
    `progress(done, total)` is called as files are checked.
    """
    layout = layout_for(cfg)
    problems: list[str] = []
    try:
        resolve_class_names(cfg, layout)
    except DataError as err:
        problems.append(str(err))
    roles = _gather(cfg, layout, problems, val_only)
    problems += _leak(roles)
    samples = list({(s.image, s.mask): s for r in roles for s in r.samples}.values())
    labelled: set[Path] = set()   # masks with at least one class pixel

    def check_one(sample: Sample) -> str | None:
        try:
            _, mask = layout.load(sample)
        except DataError as err:
            return str(err)
        if mask is not None and sample.mask is not None and bool((mask != IGNORE_INDEX).any()):
            labelled.add(sample.mask)
        return None

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, problem in enumerate(pool.map(check_one, samples), start=1):
            if problem is not None:
                problems.append(problem)
            if progress is not None:
                progress(done, len(samples))
    if not problems:
        problems += _nothing_labelled(roles, labelled)
    return problems
