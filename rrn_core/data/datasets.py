"""The three torch Datasets of a run: labeled crops, unlabeled weak/strong pairs, full-size val.

Training items accept `int` or `(index, aug_seed)`. With a seed the item is a pure
function of (run seed, index, aug_seed): the resumable sampler hands out those
pairs, so a resumed run sees byte-identical batches. With a plain int the seed
comes from Python's `random` state, which torch's DataLoader seeds per worker.
Files are read and checked here, lazily, so a broken file fails the item that
uses it with the file named (see `check_dataset` for the up-front scan).
"""

from __future__ import annotations

import operator
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from rrn_core.constants import IGNORE_INDEX
from rrn_core.data.layout import Layout, Sample
from rrn_core.data.transforms import (crop_image, crop_mask, cutmix_mask, mask_tensor, normalize, sample_geometry,
                                      strong_view)
from rrn_core.config_sections import CutMixConfig

Key = int | tuple[int, int] | Sequence[int]


def item_rngs(key: Any, length: int, run_seed: int, streams: int
              ) -> tuple[int, list[np.random.Generator]]:
    """Index and independent generators (one per augmentation stage) for a dataset key.

    Separate streams keep stages from shifting each other's draws: the geometry of
    an item does not change when, say, the CutMix probability does.
    """
    if isinstance(key, (tuple, list)):
        if len(key) != 2:
            raise TypeError(f"dataset key must be an int or (index, aug_seed), got {key!r}")
        index, aug_seed = operator.index(key[0]), operator.index(key[1])
    else:
        index, aug_seed = operator.index(key), random.getrandbits(63)
    if not -length <= index < length:
        raise IndexError(f"index {index} out of range for a dataset of {length} items")
    index %= length
    seq = np.random.SeedSequence([run_seed % 2**63, aug_seed % 2**64, index])
    return index, [np.random.default_rng(child) for child in seq.spawn(streams)]


class _SampleDataset(Dataset):
    def __init__(self, layout: Layout, samples: Sequence[Sample]) -> None:
        self.layout = layout
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.samples]


class LabeledDataset(_SampleDataset):
    """Item: {"image": float[3,S,S] normalised, "mask": long[S,S]}."""

    def __init__(self, layout: Layout, samples: Sequence[Sample], crop_size: int,
                 scale_range: Sequence[float], seed: int = 0) -> None:
        super().__init__(layout, samples)
        self.crop_size, self.scale_range, self.seed = crop_size, tuple(scale_range), seed

    def __getitem__(self, key: Key) -> dict[str, torch.Tensor]:
        index, (geo,) = item_rngs(key, len(self), self.seed, 1)
        image, mask = self.layout.load(self.samples[index])
        g = sample_geometry(image.size, geo, self.crop_size, self.scale_range)
        lab, _ = crop_mask(mask, g)
        return {"image": normalize(crop_image(image, g)), "mask": mask_tensor(lab)}


class UnlabeledDataset(_SampleDataset):
    """Item: weak and strong views of one crop, its padding map, a CutMix box map,
    and the ground truth when the data set has it (all 255 otherwise), so the
    pseudo-label accuracy can be measured without ever training on it."""

    def __init__(self, layout: Layout, samples: Sequence[Sample], crop_size: int,
                 scale_range: Sequence[float], cutmix: CutMixConfig, seed: int = 0) -> None:
        super().__init__(layout, samples)
        self.crop_size, self.scale_range, self.seed = crop_size, tuple(scale_range), seed
        self.cutmix = cutmix

    def __getitem__(self, key: Key) -> dict[str, torch.Tensor]:
        index, (geo, photo, mix) = item_rngs(key, len(self), self.seed, 3)
        image, mask = self.layout.load(self.samples[index])
        g = sample_geometry(image.size, geo, self.crop_size, self.scale_range)
        img = crop_image(image, g)
        lab, ign = crop_mask(mask, g)
        weak = normalize(img)
        strong = strong_view(img, photo)
        return {
            "image_weak": weak,
            # about 1 item in 12 draws no photometric op: its strong view is the weak one
            "image_strong": weak.clone() if strong is img else normalize(strong),
            "ignore": mask_tensor(ign),
            "cutmix_box": mask_tensor(cutmix_mask(self.crop_size, self.cutmix, mix)),
            "mask": mask_tensor(lab),
        }


class ValDataset(_SampleDataset):
    """Item: {"image": float[3,H,W] full size, "mask": long[H,W], "id": str}; no augmentation."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        image, mask = self.layout.load(sample)
        if mask is None:
            mask = np.full((image.size[1], image.size[0]), IGNORE_INDEX, dtype=np.int64)
        return {"image": normalize(image), "mask": mask_tensor(mask), "id": sample.id}
