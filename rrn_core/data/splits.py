"""Seeded labeled/unlabeled splits, written once as files whose content hash is logged.

Every trial at a given (ratio or count, seed) must train on the very same labeled
images whatever method it runs, or a sweep compares methods on different data.
So a split is a pure function of the sorted id list and the seed, written to
files atomically (concurrent trials write identical bytes; the last os.replace
wins harmlessly), and identified by the sha256 of the files' content.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

LABELED_FILE = "labeled.txt"
UNLABELED_FILE = "unlabeled.txt"


def labeled_size(total: int, ratio: float | None = None, count: int | None = None) -> int:
    """How many of `total` ids are labeled; a ratio rounds up as the public VOC/Cityscapes splits do
    (1/16 of 10,582 -> 662, 1/16 of 2,975 -> 186)."""
    if (ratio is None) == (count is None):
        raise ValueError("give exactly one of ratio or count")
    if ratio is not None:
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
        return max(1, min(total, math.ceil(ratio * total - 1e-9)))
    assert count is not None
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if count > total:
        raise ValueError(f"count {count} is larger than the {total} ids available")
    return count


def make_split(ids: Iterable[str], ratio: float | None = None, count: int | None = None,
               seed: int = 0) -> tuple[list[str], list[str]]:
    """Draw the labeled subset; returns (labeled, unlabeled), both sorted.

    The ids are sorted first, so the result does not depend on the input order,
    and one permutation per seed is cut at the requested size, so with the same
    seed a smaller labeled set is contained in every larger one (label-efficiency
    curves then add labels rather than swap them).
    """
    unique = sorted(ids)
    duplicates = sorted({a for a, b in zip(unique, unique[1:]) if a == b})
    if duplicates:
        raise ValueError(f"duplicate ids in split: {', '.join(duplicates[:5])}")
    if not unique:
        raise ValueError("cannot split an empty id list")
    k = labeled_size(len(unique), ratio, count)
    order = np.random.default_rng(seed).permutation(len(unique))
    chosen = set(order[:k].tolist())
    labeled = [unique[i] for i in range(len(unique)) if i in chosen]
    unlabeled = [unique[i] for i in range(len(unique)) if i not in chosen]
    return labeled, unlabeled


def split_folder_name(ratio: float | None = None, count: int | None = None, seed: int = 0) -> str:
    """`ratio_0.125_seed_0` / `count_92_seed_0`: readable, and one folder per split."""
    if ratio is not None:
        return f"ratio_{ratio:g}_seed_{seed}"
    if count is not None:
        return f"count_{count}_seed_{seed}"
    raise ValueError("give ratio or count")


def split_text(ids: Sequence[str]) -> str:
    return "".join(f"{i}\n" for i in ids)


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temp file + os.replace; leave an identical file untouched.

    Readers never see a half-written split, and concurrent writers of the same
    content cannot corrupt each other.
    """
    data = text.encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_split(labeled: Sequence[str], unlabeled: Sequence[str], folder: str | Path) -> str:
    """Write folder/labeled.txt and folder/unlabeled.txt (one entry per line); return their hash."""
    folder = Path(folder)
    write_text_atomic(folder / LABELED_FILE, split_text(labeled))
    write_text_atomic(folder / UNLABELED_FILE, split_text(unlabeled))
    return split_hash([folder / LABELED_FILE, folder / UNLABELED_FILE])


def split_hash(paths: Sequence[str | Path | None]) -> str:
    """sha256 over the files' bytes in order (None = no file); the split's identity in MLflow."""
    digest = hashlib.sha256()
    for path in paths:
        if path is None:
            digest.update(b"\x00none\x00")
            continue
        data = Path(path).read_bytes()
        digest.update(f"\x00{len(data)}\x00".encode())
        digest.update(data)
    return digest.hexdigest()
