"""The DataBundle contract (docs/contracts.md) and the data set fingerprint."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from rrn_core.data import build_datasets, dataset_fingerprint, split_hash
from rrn_core.config_sections import DataConfig


def test_bundle_matches_the_contract(voc_root: Path) -> None:
    cfg = DataConfig(root=str(voc_root), num_classes=3, crop_size=16, label_count=2)
    bundle = build_datasets(cfg, seed=0)
    labeled = bundle.labeled[(0, 0)]
    assert set(labeled) == {"image", "mask"}
    assert labeled["image"].shape == (3, 16, 16) and labeled["image"].dtype == torch.float32
    assert labeled["mask"].shape == (16, 16) and labeled["mask"].dtype == torch.int64
    unl = bundle.unlabeled[(0, 0)]
    assert set(unl) == {"image_weak", "image_strong", "ignore", "cutmix_box", "mask"}
    for key in ("image_weak", "image_strong"):
        assert unl[key].shape == (3, 16, 16) and unl[key].dtype == torch.float32
    for key in ("ignore", "cutmix_box", "mask"):
        assert unl[key].shape == (16, 16) and unl[key].dtype == torch.int64
    assert set(unl["ignore"].unique().tolist()) <= {0, 255}
    assert set(unl["cutmix_box"].unique().tolist()) <= {0, 1}
    val = bundle.val[0]
    assert set(val) == {"image", "mask", "id"} and val["image"].shape == (3, 20, 24)
    assert len(bundle.unlabeled) == 4  # the unlabeled pool: 6 train ids minus 2 labeled
    assert bundle.split_hash == split_hash([bundle.labeled_split, bundle.unlabeled_split])
    assert bundle.class_names == ["class_0", "class_1", "class_2"]
    # batches collate with the default collate_fn
    batch = next(iter(DataLoader(bundle.unlabeled, batch_size=2)))
    assert batch["image_strong"].shape == (2, 3, 16, 16)


def test_all_labeled_when_no_ratio(voc_root: Path) -> None:
    bundle = build_datasets(DataConfig(root=str(voc_root), num_classes=3, crop_size=16), 0)
    assert bundle.unlabeled is None and bundle.unlabeled_split is None and len(bundle.labeled) == 6
    assert bundle.split_hash == split_hash([bundle.labeled_split, None])


def test_fingerprint_is_stable_and_tracks_file_changes(voc_root: Path) -> None:
    cfg = DataConfig(root=str(voc_root), num_classes=3)
    first = dataset_fingerprint(cfg)
    assert first == dataset_fingerprint(cfg) and len(first) == 16
    with (voc_root / "JPEGImages/2007_000003.jpg").open("ab") as f:
        f.write(b"\0")
    assert dataset_fingerprint(cfg) != first
