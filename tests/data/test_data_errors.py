"""Every kind of bad input raises DataError naming the file; check_dataset lists them all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rrn_core.data import DataError, build_datasets, check_dataset
from rrn_core.data.palette import save_mask_png
from rrn_core.config_sections import DataConfig


def cfg_for(root: Path, **kw) -> DataConfig:
    return DataConfig(**{"root": str(root), "num_classes": 3, "crop_size": 16, **kw})


def first_val(root: Path) -> None:
    build_datasets(cfg_for(root), 0).val[0]


def break_missing_image(root: Path) -> str:
    (root / "JPEGImages" / "2008_000000.jpg").unlink()
    return r"JPEGImages/2008_000000\.jpg: file not found"


def break_missing_mask(root: Path) -> str:
    (root / "SegmentationClass" / "2008_000000.png").unlink()
    return r"SegmentationClass/2008_000000\.png: file not found"


def break_corrupt_image(root: Path) -> str:
    (root / "JPEGImages" / "2008_000000.jpg").write_bytes(b"this is not a jpeg")
    return r"2008_000000\.jpg: unreadable or corrupt image"


def break_truncated_image(root: Path) -> str:
    path = root / "JPEGImages" / "2008_000000.jpg"
    path.write_bytes(path.read_bytes()[:200])
    return r"2008_000000\.jpg: unreadable or corrupt image"


def break_size_mismatch(root: Path) -> str:
    save_mask_png(np.zeros((10, 10), np.uint8), root / "SegmentationClass" / "2008_000000.png")
    return r"2008_000000\.png: mask is 10x10 but image .*2008_000000\.jpg is 24x20"


def break_mask_values(root: Path) -> str:
    mask = np.zeros((20, 24), np.uint8)
    mask[3, 3], mask[4, 4] = 7, 200
    save_mask_png(mask, root / "SegmentationClass" / "2008_000000.png")
    return r"2008_000000\.png: mask values 7, 200 are outside 0\.\.2"


BREAKERS = [break_missing_image, break_missing_mask, break_corrupt_image, break_truncated_image,
            break_size_mismatch, break_mask_values]


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda f: f.__name__)
def test_bad_file_raises_lazily_naming_it(voc_root: Path, breaker) -> None:
    pattern = breaker(voc_root)
    bundle = build_datasets(cfg_for(voc_root), 0)  # building is cheap and does not open files
    with pytest.raises(DataError, match=pattern):
        bundle.val[0]
    assert isinstance(DataError("x"), ValueError)


def test_missing_split_file_and_bad_line_are_named(voc_root: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.txt: split file not found"):
        build_datasets(cfg_for(voc_root, val_split="nope.txt"), 0)
    (voc_root / "bad.txt").write_text("2008_000000\na b c\n")
    with pytest.raises(DataError, match=r"bad\.txt:2: expected"):
        build_datasets(cfg_for(voc_root, val_split="bad.txt"), 0)
    with pytest.raises(DataError, match=r"data root not found"):
        build_datasets(cfg_for(voc_root / "missing"), 0)


def test_label_count_larger_than_train_split_names_it(voc_root: Path) -> None:
    with pytest.raises(DataError, match=r"train\.txt: count 50 is larger than the 6 ids"):
        build_datasets(cfg_for(voc_root, label_count=50), 0)


def test_check_dataset_reports_every_problem(voc_root: Path) -> None:
    assert check_dataset(cfg_for(voc_root)) == []
    (voc_root / "JPEGImages" / "2007_000001.jpg").write_bytes(b"garbage")
    (voc_root / "SegmentationClass" / "2007_000004.png").unlink()
    break_mask_values(voc_root)
    with (voc_root / "ImageSets/Segmentation/val.txt").open("a") as f:
        f.write("2008_000001\n")
    problems = check_dataset(cfg_for(voc_root))
    text = "\n".join(problems)
    assert len(problems) == 4, text
    assert "2007_000001.jpg: unreadable" in text
    assert "2007_000004.png: file not found" in text
    assert "2008_000000.png: mask values" in text
    assert "val.txt: lists '2008_000001' more than once" in text


def test_check_dataset_flags_class_name_mismatch(voc_root: Path) -> None:
    (voc_root / "classes.txt").write_text("a\nb\n")
    assert any("classes.txt" in p for p in check_dataset(cfg_for(voc_root)))


def test_unsupported_mask_mode_is_named(voc_root: Path) -> None:
    Image.new("CMYK", (24, 20)).save(voc_root / "SegmentationClass" / "2008_000000.tiff")
    (voc_root / "v.txt").write_text("JPEGImages/2008_000000.jpg SegmentationClass/2008_000000.tiff\n")
    with pytest.raises(DataError, match=r"2008_000000\.tiff: unsupported mask image mode 'CMYK'"):
        build_datasets(cfg_for(voc_root, val_split="v.txt"), 0).val[0]


@pytest.mark.parametrize("ext", ["png", "jpg", "gif", "tif"])
def test_opened_images_hold_no_file_and_keep_their_pixels(tmp_path: Path, ext: str) -> None:
    # single-frame files are returned as loaded (no copy); GIF keeps its file open for
    # seeking, so its frame is copied and the file closed
    from rrn_core.data.image_files import _holds_file, open_image_file

    path = tmp_path / f"im.{ext}"
    Image.fromarray(np.full((5, 6, 3), 200, np.uint8)).save(path)
    img = open_image_file(path)
    assert not _holds_file(img)
    assert np.asarray(img).shape[:2] == (5, 6) and img.size == (6, 5)
