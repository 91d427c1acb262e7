"""What every on-disk layout provides: samples from split files, and checked loading.

A layout (VOC, Cityscapes) only knows where its files live and how its masks
encode class ids. Everything else (split files, augmentation, datasets) works on
`Sample`s, so a new layout is one small subclass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rrn_core.data.image_files import (IMAGE_EXTENSIONS, DataError, check_mask_values, check_same_size,
                                       open_image_file, read_rgb, read_split_lines)


@dataclass(frozen=True)
class Sample:
    """One image (and its mask, None where no ground truth exists).

    `line` is the canonical split-file line for this sample: the id, or the
    original "image mask" pair; derived split files are written from it so they
    read back to the very same files.
    """

    id: str
    image: Path
    mask: Path | None
    line: str


class Layout(ABC):
    """Base of the layout readers: split-file parsing and checked loading live here."""

    name: str = ""

    def __init__(self, root: str | Path, num_classes: int, mask_dir: str = "SegmentationClass") -> None:
        self.root = Path(root).expanduser()
        self.num_classes = num_classes
        self.mask_dir = mask_dir

    # -- what a layout defines -------------------------------------------------
    @abstractmethod
    def default_split_file(self, subset: str) -> Path | None:
        """The split file used when the config names none (None: scan folders)."""

    @abstractmethod
    def scan(self, subset: str) -> list[Sample]:
        """All samples of a subset found on disk, for layouts without split files."""

    @abstractmethod
    def sample_from_id(self, sample_id: str, subset: str, need_mask: bool) -> Sample:
        """Resolve an id line of a split file."""

    @abstractmethod
    def sample_from_paths(self, image: Path, mask: Path | None, line: str,
                          subset: str, need_mask: bool) -> Sample:
        """Resolve a path line ("image" or "image mask") of a split file."""

    @abstractmethod
    def decode_mask(self, img: Image.Image, path: Path) -> np.ndarray:
        """Class ids (int64[H,W]) from a decoded mask file; values are checked afterwards."""

    def default_class_names(self) -> list[str] | None:
        return None

    # -- shared behaviour ---------------------------------------------------------
    def resolve(self, path: str | Path) -> Path:
        """Config paths are relative to the data root unless absolute."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.root / path

    def split_source(self, split_file: str | Path | None, subset: str) -> str:
        """The split file a subset comes from, for messages (or the folder that is scanned)."""
        if split_file is not None:
            return str(self.resolve(split_file))
        default = self.default_split_file(subset)
        return str(default) if default is not None else f"{self.root} ({subset} folder scan)"

    def samples(self, split_file: str | Path | None, subset: str, need_mask: bool) -> list[Sample]:
        """Samples listed by a split file, or the layout's default for `subset`."""
        if not self.root.is_dir():
            raise DataError(f"{self.root}: data root not found (data.root)")
        if split_file is None:
            default = self.default_split_file(subset)
            if default is None:
                found = self.scan(subset)
                if not found:
                    raise DataError(f"{self.root}: no {subset} images found for layout {self.name}")
                return found
            split_file = default
        path = self.resolve(split_file)
        samples = []
        for number, tokens in read_split_lines(path):
            where = f"{path}:{number}"
            samples.append(self._sample_from_tokens(tokens, subset, need_mask, where))
        if not samples:
            raise DataError(f"{path}: split file lists no samples")
        return samples

    def _sample_from_tokens(self, tokens: list[str], subset: str, need_mask: bool, where: str) -> Sample:
        first = tokens[0]
        is_path = len(tokens) == 2 or first.lower().endswith(IMAGE_EXTENSIONS)
        if not is_path:
            return self.sample_from_id(first, subset, need_mask)
        image = self._data_path(first)
        mask = self._data_path(tokens[1]) if len(tokens) == 2 else None
        try:
            return self.sample_from_paths(image, mask, " ".join(tokens), subset, need_mask)
        except DataError as err:
            raise DataError(f"{where}: {err}") from None

    def _data_path(self, text: str) -> Path:
        """Split paths are relative to the root; a leading slash (UniMatch files) is tolerated."""
        relative = self.root / text.lstrip("/")
        if text.startswith("/") and not relative.exists() and Path(text).exists():
            return Path(text)
        return relative

    def load(self, sample: Sample) -> tuple[Image.Image, np.ndarray | None]:
        """RGB image and checked int64 class-id mask (None without ground truth)."""
        image = read_rgb(sample.image)
        if sample.mask is None:
            return image, None
        mask = self.read_mask(sample.mask)
        check_same_size(image, mask, sample.image, sample.mask)
        return image, mask

    def read_mask(self, path: Path) -> np.ndarray:
        mask = self.decode_mask(open_image_file(path), path)
        check_mask_values(mask, self.num_classes, path)
        return mask


def first_existing(stem: Path, extensions: tuple[str, ...]) -> Path:
    """`stem` + the first extension that exists, else + the first one (reported missing later)."""
    for ext in extensions:
        candidate = stem.with_name(stem.name + ext)
        if candidate.exists():
            return candidate
    return stem.with_name(stem.name + extensions[0])
