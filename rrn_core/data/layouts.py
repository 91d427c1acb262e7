"""The data layouts a config can name, in one table.

`layout.py` holds what every reader shares; each reader module imports it. This
module sits above both, so choosing a reader never makes `layout.py` import the
readers (no import cycle), and a new layout is one import plus one table row.
"""

from __future__ import annotations

from pathlib import Path

from rrn_core.data.cityscapes import CityscapesLayout
from rrn_core.data.image_files import DataError
from rrn_core.data.layout import Layout
from rrn_core.data.voc import VocLayout

LAYOUTS: dict[str, type[Layout]] = {"voc": VocLayout, "cityscapes": CityscapesLayout}


def make_layout(layout: str, root: str | Path, num_classes: int, mask_dir: str = "SegmentationClass") -> Layout:
    """The reader for a config's `data.layout`."""
    if layout not in LAYOUTS:
        raise DataError(f"unknown data layout {layout!r} (expected {' or '.join(map(repr, LAYOUTS))})")
    return LAYOUTS[layout](root, num_classes, mask_dir)
