"""Visualisation: palette images, overlay colours at known pixels, confusion figure PNGs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rrn_core.data.palette import voc_palette
from rrn_core.visualize import colorize, confusion_matrix_figure, overlay, side_by_side

PALETTE = voc_palette(256)


def test_colorize_keeps_ids_and_palette(tmp_path) -> None:
    mask = np.array([[0, 1, 2], [20, 255, 7]], dtype=np.int64)
    image = colorize(mask)
    assert image.mode == "P" and image.size == (3, 2)
    path = tmp_path / "mask.png"
    image.save(path)
    with Image.open(path) as reread:
        assert reread.mode == "P"
        np.testing.assert_array_equal(np.asarray(reread), mask)
        rgb = np.asarray(reread.convert("RGB"))
    np.testing.assert_array_equal(rgb[1, 1], PALETTE[255])
    np.testing.assert_array_equal(rgb[0, 1], [128, 0, 0])  # VOC "aeroplane" red
    np.testing.assert_array_equal(rgb[1, 0], PALETTE[20])
    with pytest.raises(ValueError, match="0..255"):
        colorize(np.array([[300]]))


def test_overlay_colours_at_known_pixels() -> None:
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    image[:, :, 1] = 200
    mask = np.array([[0, 1, 255], [3, 2, 1]])
    out = np.asarray(overlay(image, mask, alpha=0.5))
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    for y, x in [(0, 0), (0, 1), (1, 1), (1, 2), (1, 0)]:
        expected = np.round(0.5 * image[y, x] + 0.5 * PALETTE[mask[y, x]])
        np.testing.assert_array_equal(out[y, x], expected)
    np.testing.assert_array_equal(out[0, 2], image[0, 2])  # ignore shows the image
    full = np.asarray(overlay(image, mask, num_classes=3, alpha=1.0))
    np.testing.assert_array_equal(full[0, 1], PALETTE[1])
    np.testing.assert_array_equal(full[1, 0], image[1, 0])  # class 3 >= num_classes: left as image


def test_overlay_accepts_grayscale_and_rejects_mismatch() -> None:
    gray = np.full((4, 5), 100, dtype=np.uint8)
    out = np.asarray(overlay(gray, np.full((4, 5), 255), alpha=0.7))
    np.testing.assert_array_equal(out, np.full((4, 5, 3), 100))
    with pytest.raises(ValueError, match="does not match"):
        overlay(gray, np.zeros((5, 4)))


def test_side_by_side_panels(tmp_path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    pred = rng.integers(0, 4, (6, 7))
    gt = pred.copy()
    gt[0] = 255
    strip = side_by_side(image, pred, gt, gap=2)
    assert strip.mode == "RGB" and strip.size == (3 * 7 + 2 * 2, 6)
    arr = np.asarray(strip)
    np.testing.assert_array_equal(arr[:, :7], image)
    np.testing.assert_array_equal(arr[:, 9:16], np.asarray(overlay(image, pred)))
    np.testing.assert_array_equal(arr[:, 18:25], np.asarray(overlay(image, gt)))
    strip.save(tmp_path / "sample.png")
    with Image.open(tmp_path / "sample.png") as reread:
        assert reread.size == strip.size


@pytest.mark.parametrize("num_classes", [2, 30])
def test_confusion_matrix_figure_writes_png(tmp_path, num_classes) -> None:
    rng = np.random.default_rng(num_classes)
    confusion = rng.integers(0, 50, (num_classes, num_classes))
    confusion[-1] = 0  # a class without ground truth leaves a blank row
    names = [f"class {i}" for i in range(num_classes)]
    path = tmp_path / "plots" / "confusion.png"
    confusion_matrix_figure(confusion, names, path)
    with Image.open(path) as png:
        assert png.format == "PNG"
        width, height = png.size
    assert min(width, height) >= 300
    assert height >= 30 * num_classes * 0.5  # grows so 30 names stay readable


def test_confusion_matrix_figure_checks_names(tmp_path) -> None:
    with pytest.raises(ValueError, match="class names"):
        confusion_matrix_figure(np.eye(3), ["a", "b"], tmp_path / "c.png")
