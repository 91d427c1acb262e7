"""VOC-layout reading: split-file forms, mask encodings, image modes, padding, class names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_trees import voc_mask, write_voc
from PIL import Image

from rrn_core.data import DataError, build_datasets, resolve_class_names
from rrn_core.data.palette import save_mask_png, voc_palette
from rrn_core.data.transforms import denormalize
from rrn_core.data.voc import VOC_CLASSES
from rrn_core.config_sections import DataConfig


def cfg_for(root: Path, **kw) -> DataConfig:
    base = {"root": str(root), "num_classes": 3, "crop_size": 16, "scale_range": (1.0, 1.0)}
    return DataConfig(**{**base, **kw})


def test_id_split_files_read_with_exact_masks(voc_root: Path) -> None:
    bundle = build_datasets(cfg_for(voc_root), seed=0)
    assert len(bundle.labeled) == 6 and bundle.unlabeled is None and len(bundle.val) == 2
    item = bundle.val[1]
    assert item["id"] == "2008_000001"
    assert item["image"].shape == (3, 20, 24) and item["image"].dtype == torch.float32
    assert torch.equal(item["mask"], torch.from_numpy(voc_mask(7, (24, 20), 3).astype(np.int64)))
    assert bundle.labeled_split == str(voc_root / "ImageSets/Segmentation/train.txt")


def test_path_pair_split_with_leading_slash_and_image_only_lines(voc_root: Path) -> None:
    (voc_root / "pairs.txt").write_text(
        "/JPEGImages/2007_000001.jpg /SegmentationClass/2007_000001.png\n"
        "JPEGImages/2007_000002.jpg SegmentationClass/2007_000002.png\n")
    # An unlabeled image without any mask on disk: its ground truth is unknown (all 255).
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(voc_root / "JPEGImages" / "extra.jpg")
    (voc_root / "unl.txt").write_text("JPEGImages/2007_000003.jpg\n/JPEGImages/extra.jpg\n")
    bundle = build_datasets(cfg_for(voc_root, labeled_split="pairs.txt", unlabeled_split="unl.txt"), 0)
    assert [s.id for s in bundle.labeled.samples] == ["2007_000001", "2007_000002"]
    assert len(bundle.unlabeled) == 2
    known, unknown = bundle.unlabeled[(0, 1)]["mask"], bundle.unlabeled[(1, 1)]["mask"]
    assert (known != 255).any()  # the mask next to the listed image was found
    assert (unknown == 255).all()


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_grey_and_rgb_coloured_masks_decode_to_ids(voc_root: Path, mode: str) -> None:
    path = voc_root / "SegmentationClass" / "2008_000000.png"
    ids = np.asarray(Image.open(path))
    if mode == "L":
        Image.fromarray(ids, "L").save(path)
    else:
        Image.fromarray(voc_palette()[ids], "RGB").save(path)
    item = build_datasets(cfg_for(voc_root), 0).val[0]
    assert torch.equal(item["mask"], torch.from_numpy(ids.astype(np.int64)))


def test_rgb_mask_with_unknown_colour_names_the_file(voc_root: Path) -> None:
    path = voc_root / "SegmentationClass" / "2008_000000.png"
    rgb = np.full((20, 24, 3), 7, np.uint8)
    Image.fromarray(rgb, "RGB").save(path)
    with pytest.raises(DataError, match=r"2008_000000\.png.*not in the VOC palette"):
        build_datasets(cfg_for(voc_root), 0).val[0]


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16"])
def test_any_image_mode_becomes_rgb(voc_root: Path, mode: str) -> None:
    grey = (np.arange(20 * 24).reshape(20, 24) % 256).astype(np.uint8)
    path = voc_root / "JPEGImages" / "2007_000000.png"  # .png is found when .jpg is missing
    (voc_root / "JPEGImages" / "2007_000000.jpg").unlink()
    if mode == "I;16":
        Image.fromarray(grey.astype(np.uint16) * 257).save(path)
        assert Image.open(path).mode.startswith("I")
    elif mode == "P":
        Image.fromarray(grey, "L").convert("P").save(path)
    else:
        Image.fromarray(grey, "L").convert(mode).save(path)
    (voc_root / "one.txt").write_text("2007_000000\n")
    bundle = build_datasets(cfg_for(voc_root, crop_size=16, val_split="one.txt"), 0)
    assert bundle.labeled[(0, 3)]["image"].shape == (3, 16, 16)
    img = denormalize(bundle.val[0]["image"])
    assert img.shape == (3, 20, 24)
    if mode in ("L", "I;16"):  # grey in, equal channels out, 16-bit scaled rather than clipped
        assert torch.allclose(img[0], img[1], atol=1e-5) and torch.allclose(img[1], img[2], atol=1e-5)
        assert torch.allclose(img[0] * 255, torch.from_numpy(grey).float(), atol=1.0)


def test_image_smaller_than_crop_is_padded_with_ignore(voc_root: Path) -> None:
    bundle = build_datasets(cfg_for(voc_root, crop_size=32, label_count=2), 0)
    labeled = bundle.labeled[(0, 5)]
    unl = bundle.unlabeled[(0, 5)]
    pad = 32 * 32 - 24 * 20
    assert int((unl["ignore"] == 255).sum()) == pad
    assert set(unl["ignore"].unique().tolist()) == {0, 255}
    # mask: padding is 255 on top of the file's own 255 border column (20 pixels)
    assert int((labeled["mask"] == 255).sum()) == pad + 20
    assert (unl["mask"][unl["ignore"] == 255] == 255).all()


def test_class_names_priority(voc_root: Path) -> None:
    assert resolve_class_names(cfg_for(voc_root)) == ["class_0", "class_1", "class_2"]
    assert resolve_class_names(cfg_for(voc_root, num_classes=21)) == VOC_CLASSES
    assert resolve_class_names(cfg_for(voc_root, class_names=["a", "b", "c"])) == ["a", "b", "c"]
    (voc_root / "classes.txt").write_text("bg\ncat\ndog\n")
    assert resolve_class_names(cfg_for(voc_root)) == ["bg", "cat", "dog"]
    with pytest.raises(DataError, match=r"classes\.txt.*3 class names.*num_classes is 4"):
        resolve_class_names(cfg_for(voc_root, num_classes=4))


def test_mask_dir_option_reads_aug_masks(tmp_path: Path) -> None:
    write_voc(tmp_path / "aug", mask_dir="SegmentationClassAug")
    bundle = build_datasets(cfg_for(tmp_path / "aug", mask_dir="SegmentationClassAug"), 0)
    expected = torch.from_numpy(voc_mask(6, (24, 20), 3).astype(np.int64))
    assert torch.equal(bundle.val[0]["mask"], expected)
    with pytest.raises(DataError, match=r"SegmentationClass/2008_000000\.png: file not found"):
        build_datasets(cfg_for(tmp_path / "aug"), 0).val[0]


def test_voc_palette_known_colours(tmp_path: Path) -> None:
    palette = voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert palette[1].tolist() == [128, 0, 0] and palette[15].tolist() == [192, 128, 128]
    assert palette[255].tolist() == [224, 224, 192]  # VOC's border colour
    assert len({tuple(c) for c in palette.tolist()}) == 256
    mask = np.array([[0, 1], [20, 255]], dtype=np.uint8)
    save_mask_png(mask, tmp_path / "m.png")
    img = Image.open(tmp_path / "m.png")
    assert img.mode == "P" and np.array_equal(np.asarray(img), mask)
    assert img.getpalette()[3:6] == [128, 0, 0]
