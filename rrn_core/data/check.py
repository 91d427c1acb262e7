"""Up-front scan of a data set: every problem at once, before a sweep spends hours.

The datasets check each file lazily, so a broken mask would only fail the trial
that happens to draw it, possibly hours in. `check_dataset` opens every file
the config can touch, with the same readers and checks, and lists all problems
(each naming its file) instead of stopping at the first.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from rrn_core.data.bundle import layout_for, resolve_class_names
from rrn_core.data.image_files import DataError
from rrn_core.data.layout import Layout, Sample
from rrn_core.data.splits import labeled_size
from rrn_core.config_sections import DataConfig


def _gather(cfg: DataConfig, layout: Layout, problems: list[str], val_only: bool = False) -> list[Sample]:
    """Every sample the config can use (only the val split's with `val_only`, for
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

    found: list[Sample] = []
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
        found.extend(samples)
    return found


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
    samples = list({(s.image, s.mask): s for s in _gather(cfg, layout, problems, val_only)}.values())

    def check_one(sample: Sample) -> str | None:
        try:
            layout.load(sample)
        except DataError as err:
            return str(err)
        return None

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, problem in enumerate(pool.map(check_one, samples), start=1):
            if problem is not None:
                problems.append(problem)
            if progress is not None:
                progress(done, len(samples))
    return problems
