"""Endless, resumable, rank-sharded data streams for the phased trainer.

Every dataset a phase draws from becomes a stream: epochs follow one another forever, each one reshuffled by a
generator seeded from (run seed, phase, dataset, epoch), so the order never depends on how many batches were drawn
before or on the global RNG. Each epoch's permutation is cut into *global* batches of `batch_size * world_size`
samples; process `r` takes slice `r` of each global batch, so the processes see disjoint shards, and a run on one
process with `batch_size * world_size` samples per batch sees exactly the same global batches. The position of a
stream is `(epoch, batches consumed in that epoch)`; resuming skips index batches without loading any sample.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader, Sampler

# 64-bit odd constant (golden ratio) spreading consecutive epochs over distinct generator seeds
_EPOCH_MIX = 0x9E3779B97F4A7C15


def stream_seed(seed: int, phase_index: int, dataset: str) -> int:
    """The shuffling seed of one dataset within one phase (stable across Python runs, unlike `hash`)."""
    return (seed * 1_000_003 + phase_index * 7_919 + zlib.crc32(dataset.encode("utf-8"))) % (2**63)


class ShardedEpochBatchSampler(Sampler):
    """Yields this process's index batches of one epoch; `set_position` chooses the epoch and the batches to skip.

    Args:
        num_samples (`int`): dataset length.
        batch_size (`int`): samples per batch on this process.
        num_shards (`int`): number of processes.
        shard_index (`int`): this process's rank.
        seed (`int`): base seed of the per-epoch permutations.
        shuffle (`bool`): permute each epoch (else keep the dataset order).
    """

    def __init__(self, num_samples: int, batch_size: int, num_shards: int = 1, shard_index: int = 0, seed: int = 0,
                 shuffle: bool = True):
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.num_shards = num_shards
        self.shard_index = shard_index
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.num_shards

    def __len__(self) -> int:
        """Batches per epoch (the last global batch is completed by wrapping around the permutation)."""
        return -(-self.num_samples // self.global_batch_size)

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The permutation of sample indices of `epoch`, padded by wrap-around to whole global batches."""
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed((self.seed + _EPOCH_MIX * (epoch + 1)) % (2**63))
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.arange(self.num_samples)
        padded_length = len(self) * self.global_batch_size
        if padded_length > self.num_samples:
            repeats = -(-padded_length // self.num_samples)
            order = order.repeat(repeats)[:padded_length]
        return order

    def __iter__(self) -> Iterator[list[int]]:
        order = self.epoch_order(self.epoch)
        size = self.global_batch_size
        for batch in range(self.start_batch, len(self)):
            first = batch * size + self.shard_index * self.batch_size
            yield order[first:first + self.batch_size].tolist()


class DataStream:
    """An endless iterator over one dataset's batches for this process, with a checkpointable position.

    Args:
        dataset: a map-style dataset.
        sampler (`ShardedEpochBatchSampler`): decides the order and this process's shard.
        collate_fn (`Callable`, *optional*): merges samples into a batch (torch's default when None).
        num_workers (`int`): DataLoader worker processes.
        pin_memory (`bool`): pin host memory (for CUDA).
        to_device (`Callable`, *optional*): moves each batch to the training device.
    """

    def __init__(self, dataset, sampler: ShardedEpochBatchSampler, collate_fn: Callable | None = None,
                 num_workers: int = 0, pin_memory: bool = False, to_device: Callable[[Any], Any] | None = None):
        self.sampler = sampler
        # A private generator: creating an iterator must not draw from the global torch RNG, or a resumed run would
        # consume random numbers at different moments than an uninterrupted one.
        self._generator = torch.Generator()
        self.loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_fn, num_workers=num_workers,
                                 pin_memory=pin_memory, generator=self._generator)
        self.to_device = to_device
        self.epoch = 0
        self.batches = 0
        self._iterator: Iterator | None = None

    @property
    def position(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches": self.batches}

    def restore(self, position: dict[str, int]) -> None:
        """Continue from a position recorded by `position` (the next batch is the one after it)."""
        self.close()
        self.epoch = int(position["epoch"])
        self.batches = int(position["batches"])

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            if self._iterator is None:
                if self.batches >= len(self.sampler):
                    self.epoch, self.batches = self.epoch + 1, 0
                self.sampler.set_position(self.epoch, self.batches)
                # worker seeds follow the epoch, not the number of iterators created so far
                self._generator.manual_seed((self.sampler.seed + 1 + self.epoch) % (2**63))
                self._iterator = iter(self.loader)
            try:
                batch = next(self._iterator)
            except StopIteration:
                self._iterator = None
                self.epoch, self.batches = self.epoch + 1, 0
                continue
            self.batches += 1
            return self.to_device(batch) if self.to_device is not None else batch

    def close(self) -> None:
        """Drop the current iterator (and its worker processes)."""
        self._iterator = None


__all__ = ["ShardedEpochBatchSampler", "DataStream", "stream_seed"]
