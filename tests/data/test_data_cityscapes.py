"""Cityscapes layout: labelIds -> trainIds, labelTrainIds preferred, id/pair/scanned splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from data_trees import CITY_TRAIN_IDS, write_cityscapes

from rrn_core.data import build_datasets
from rrn_core.data.cityscapes import CITYSCAPES_CLASSES, labels_to_train_ids
from rrn_core.config_sections import DataConfig


def cfg_for(root: Path, **kw) -> DataConfig:
    return DataConfig(**{"root": str(root), "layout": "cityscapes", "num_classes": 19,
                         "crop_size": 16, **kw})


def test_label_ids_map_to_train_ids_on_known_pixels(city_root: Path) -> None:
    bundle = build_datasets(cfg_for(city_root), 0)
    item = bundle.val[0]
    assert item["id"] == "frankfurt/frankfurt_000000_000294"
    assert item["image"].shape == (3, 8, 16)
    assert torch.equal(item["mask"], torch.from_numpy(np.tile(CITY_TRAIN_IDS, (4, 4))))
    assert bundle.class_names == CITYSCAPES_CLASSES
    # scanned train folder, sorted, every city found
    assert bundle.labeled.ids == ["aachen/aachen_000000_000019", "aachen/aachen_000001_000019",
                                  "bremen/bremen_000000_000019"]


def test_full_label_id_table() -> None:
    ids = np.arange(256)
    train = labels_to_train_ids(ids)
    assert (train[[7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]]
            == np.arange(19)).all()
    assert ((train == 255).sum()) == 256 - 19


def test_label_train_ids_file_is_preferred(tmp_path: Path) -> None:
    write_cityscapes(tmp_path, train_ids=True)
    mask = build_datasets(cfg_for(tmp_path), 0).val[0]["mask"]
    assert int(mask[0, 0]) == 5  # the marker only the labelTrainIds file holds
    assert int(mask[0, 2]) == 13


def test_id_and_pair_split_files(city_root: Path) -> None:
    (city_root / "ids.txt").write_text("bremen/bremen_000000_000019\n")
    (city_root / "pairs.txt").write_text(
        "leftImg8bit/train/aachen/aachen_000001_000019_leftImg8bit.png "
        "gtFine/train/aachen/aachen_000001_000019_gtFine_labelIds.png\n")
    # a val-folder id listed in a train split is still found (ids carry no subset)
    (city_root / "mixed.txt").write_text("frankfurt/frankfurt_000000_000294\n")
    bundle = build_datasets(cfg_for(city_root, labeled_split="ids.txt", unlabeled_split="pairs.txt",
                                    val_split="mixed.txt"), 0)
    assert bundle.labeled.ids == ["bremen/bremen_000000_000019"]
    assert bundle.unlabeled.ids == ["aachen/aachen_000001_000019"]
    expected = torch.from_numpy(np.tile(CITY_TRAIN_IDS, (4, 4)))
    assert torch.equal(bundle.val[0]["mask"], expected)
    unl = bundle.unlabeled[(0, 0)]
    assert set(unl["mask"].unique().tolist()) <= {0, 1, 10, 11, 13, 18, 255}


def test_ratio_split_from_scanned_train(city_root: Path) -> None:
    bundle = build_datasets(cfg_for(city_root, label_count=1), 0)
    assert len(bundle.labeled) == 1 and len(bundle.unlabeled) == 2
    assert Path(bundle.labeled_split) == city_root / "splits/count_1_seed_0/labeled.txt"
