"""Data sets for RRN: VOC/Cityscapes readers, seeded splits, augmentation, synthetic data.

`build_datasets(cfg, seed)` is the entry point the training loop uses;
`check_dataset(cfg)` scans a data set up-front before a sweep is launched.
Names are imported lazily so that `rrn --help` (which imports the data CLI)
does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DataBundle": "rrn_core.data.bundle",
    "build_datasets": "rrn_core.data.bundle",
    "dataset_fingerprint": "rrn_core.data.bundle",
    "resolve_class_names": "rrn_core.data.bundle",
    "check_dataset": "rrn_core.data.check",
    "DataError": "rrn_core.data.image_files",
    "make_split": "rrn_core.data.splits",
    "split_hash": "rrn_core.data.splits",
    "write_split": "rrn_core.data.splits",
    "generate_synthetic": "rrn_core.data.synth",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from rrn_core.data.bundle import DataBundle, build_datasets, dataset_fingerprint, resolve_class_names
    from rrn_core.data.check import check_dataset
    from rrn_core.data.image_files import DataError
    from rrn_core.data.splits import make_split, split_hash, write_split
    from rrn_core.data.synth import generate_synthetic


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rrn_core.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
