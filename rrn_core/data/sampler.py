"""An endless, seeded, rank-sharded stream of (index, aug_seed) pairs.

Training is counted in iterations, not epochs, and must resume exactly: after a
restart at step k the next batch has to be the one an uninterrupted run would have
drawn, with the same augmentation. So the stream is a pure function of
(seed, stream, position): epoch e shuffles with a generator seeded by
(seed, stream, e), each rank takes every world-th element, and every element carries
its own augmentation seed. Resuming is just starting at a position; nothing is
replayed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def _derive_seed(*parts: int) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF


class ResumableSampler(Sampler[tuple[int, int]]):
    """Yields `(dataset_index, aug_seed)` forever, starting at `start` (per rank)."""

    def __init__(self, size: int, seed: int, stream: int = 0, rank: int = 0,
                 world_size: int = 1, start: int = 0) -> None:
        if size <= 0:
            raise ValueError("cannot sample from an empty data set")
        self.size = size
        self.seed = seed
        self.stream = stream
        self.rank = rank
        self.world_size = world_size
        self.start = start
        # Each epoch is padded (by wrapping) so every rank draws the same count.
        self.per_rank = -(-size // world_size)

    def _epoch_order(self, epoch: int) -> list[int]:
        gen = torch.Generator().manual_seed(_derive_seed(self.seed, self.stream, epoch))
        order = torch.randperm(self.size, generator=gen).tolist()
        total = self.per_rank * self.world_size
        order = (order * (-(-total // self.size)))[:total]
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start
        epoch, offset = divmod(position, self.per_rank)
        while True:
            order = self._epoch_order(epoch)
            for index in order[offset:]:
                yield index, _derive_seed(self.seed, self.stream, self.rank, position)
                position += 1
            epoch, offset = epoch + 1, 0
