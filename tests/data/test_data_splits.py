"""Seeded splits: reproducible, order-independent, sized as the public splits, hashed, reused."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from rrn_core.data import build_datasets, make_split, split_hash, write_split
from rrn_core.data.splits import labeled_size
from rrn_core.config_sections import DataConfig

IDS = [f"2007_{i:06d}" for i in range(200)]


def test_same_seed_same_split_whatever_the_input_order() -> None:
    shuffled = IDS[:]
    random.Random(3).shuffle(shuffled)
    assert make_split(IDS, ratio=0.125, seed=4) == make_split(shuffled, ratio=0.125, seed=4)
    assert make_split(IDS, ratio=0.125, seed=4)[0] != make_split(IDS, ratio=0.125, seed=5)[0]


def test_split_partitions_and_sizes() -> None:
    labeled, unlabeled = make_split(IDS, count=23, seed=0)
    assert len(labeled) == 23 and len(unlabeled) == 177
    assert sorted(labeled + unlabeled) == IDS and not set(labeled) & set(unlabeled)
    assert len(make_split(IDS, ratio=1 / 16)[0]) == 13  # ceil(200 / 16)
    assert labeled_size(10582, ratio=1 / 16) == 662 and labeled_size(10582, ratio=1 / 8) == 1323
    assert labeled_size(2975, ratio=1 / 16) == 186
    assert labeled_size(10582, count=92) == 92
    with pytest.raises(ValueError, match="larger than"):
        make_split(IDS, count=201)
    with pytest.raises(ValueError, match="duplicate"):
        make_split(IDS + IDS[:1], count=3)


def test_smaller_labeled_sets_nest_in_larger_ones() -> None:
    small = set(make_split(IDS, count=10, seed=2)[0])
    large = set(make_split(IDS, count=50, seed=2)[0])
    assert small < large


def test_write_split_hash_stable_changes_with_content_and_keeps_identical_files(tmp_path: Path) -> None:
    labeled, unlabeled = make_split(IDS, count=10)
    digest = write_split(labeled, unlabeled, tmp_path / "a")
    assert digest == write_split(labeled, unlabeled, tmp_path / "b")
    assert digest == split_hash([tmp_path / "a/labeled.txt", tmp_path / "a/unlabeled.txt"])
    assert len(digest) == 64
    assert (tmp_path / "a/labeled.txt").read_text().splitlines() == labeled
    other = make_split(IDS, count=10, seed=1)
    assert write_split(*other, tmp_path / "c") != digest
    # an identical rewrite leaves the file alone (concurrent trials do this)
    path = tmp_path / "a/labeled.txt"
    os.utime(path, (1, 1))
    write_split(labeled, unlabeled, tmp_path / "a")
    assert path.stat().st_mtime == 1
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.endswith(".tmp")]


def test_build_datasets_derives_writes_and_reuses_split(voc_root: Path) -> None:
    cfg = DataConfig(root=str(voc_root), num_classes=3, crop_size=16, label_ratio=0.5, split_seed=1)
    first = build_datasets(cfg, seed=0)
    assert Path(first.labeled_split) == voc_root / "splits/ratio_0.5_seed_1/labeled.txt"
    assert len(first.labeled) == 3 and len(first.unlabeled) == 3
    train = (voc_root / "ImageSets/Segmentation/train.txt").read_text().split()
    assert sorted(first.labeled.ids + first.unlabeled.ids) == sorted(train)
    second = build_datasets(cfg, seed=9)  # the run seed does not change the split
    assert second.split_hash == first.split_hash and second.labeled.ids == first.labeled.ids
    assert build_datasets(cfg.model_copy(update={"split_seed": 2}), 0).split_hash != first.split_hash
    # a non-default train split gets its own folder, so it never overwrites the default's
    (voc_root / "trainaug.txt").write_text("\n".join(train[:4]) + "\n")
    aug = build_datasets(cfg.model_copy(update={"train_split": "trainaug.txt"}), 0)
    assert Path(aug.labeled_split) == voc_root / "splits/trainaug/ratio_0.5_seed_1/labeled.txt"


def test_explicit_split_files_and_absolute_split_dir(voc_root: Path, tmp_path: Path) -> None:
    cfg = DataConfig(root=str(voc_root), num_classes=3, crop_size=16, label_count=2,
                     split_dir=str(tmp_path / "elsewhere"))
    bundle = build_datasets(cfg, 0)
    assert Path(bundle.labeled_split).parent == tmp_path / "elsewhere/count_2_seed_0"
    explicit = DataConfig(root=str(voc_root), num_classes=3, crop_size=16,
                          labeled_split=bundle.labeled_split, unlabeled_split=bundle.unlabeled_split)
    again = build_datasets(explicit, 0)
    assert again.split_hash == bundle.split_hash and again.labeled.ids == bundle.labeled.ids
