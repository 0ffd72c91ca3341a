"""Batch samplers for training: shuffled batches, or P identities x K images (metric losses).

Both are deterministic functions of (seed, epoch): resuming at epoch e replays the very batches an
uninterrupted run would have drawn, and every DDP rank computes the same global batch list and
takes its own share (rank r gets batches r, r + world, ...), so no rank needs to talk to another.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..errors import InputError


class _EpochBatchSampler:
    def __init__(self, seed: int = 0, rank: int = 0, world_size: int = 1):
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def _rng(self):
        return np.random.default_rng([self.seed, self.epoch])

    def global_batches(self) -> list:
        raise NotImplementedError

    def __iter__(self):
        batches = self.global_batches()
        usable = len(batches) - len(batches) % self.world_size  # every rank steps the same number of times
        return iter(batches[self.rank:usable:self.world_size])

    def __len__(self):
        return len(self.global_batches()) // self.world_size


class RandomBatchSampler(_EpochBatchSampler):
    """Shuffled fixed-size batches (the cross-entropy recipes); the last incomplete batch is dropped."""

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        super().__init__(seed, rank, world_size)
        if batch_size < 1 or num_samples < batch_size:
            raise InputError(f"batch size {batch_size} needs at least that many training images, got {num_samples}")
        self.num_samples, self.batch_size = num_samples, batch_size

    def global_batches(self):
        perm = self._rng().permutation(self.num_samples)
        n = self.num_samples // self.batch_size
        return [perm[i * self.batch_size:(i + 1) * self.batch_size].tolist() for i in range(n)]

    def __len__(self):
        return (self.num_samples // self.batch_size) // self.world_size


class IdentityBatchSampler(_EpochBatchSampler):
    """P identities x K images per batch (batch_size = P*K), for batch-hard triplet loss.

    Each identity's images are shuffled and cut into groups of K (identities with fewer than K
    images are topped up by drawing with replacement); batches then draw P identities that still
    have groups left, until fewer than P do. torchreid's RandomIdentitySampler, seeded per epoch.
    """

    def __init__(self, pids, batch_size: int, num_instances: int = 4, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        super().__init__(seed, rank, world_size)
        if num_instances < 1 or batch_size % num_instances:
            raise InputError(f"batch size {batch_size} must be a multiple of the images per identity K={num_instances}")
        self.batch_size, self.k = batch_size, num_instances
        self.p = batch_size // num_instances
        self.index = defaultdict(list)
        for i, pid in enumerate(pids):
            self.index[int(pid)].append(i)
        self.pids = sorted(self.index)
        if len(self.pids) < self.p:
            raise InputError(f"P x K sampling needs at least P={self.p} identities (batch {batch_size} / K={self.k}); "
                             f"the training set has {len(self.pids)}")

    def global_batches(self):
        rng = self._rng()
        groups = {}
        for pid in self.pids:
            idxs = np.asarray(self.index[pid])
            if len(idxs) < self.k:
                idxs = rng.choice(idxs, size=self.k, replace=True)
            idxs = rng.permutation(idxs)
            n = len(idxs) // self.k
            groups[pid] = [idxs[j * self.k:(j + 1) * self.k].tolist() for j in range(n)]
        available = [p for p in self.pids if groups[p]]
        batches = []
        while len(available) >= self.p:
            chosen = rng.choice(len(available), size=self.p, replace=False)
            batch = []
            for c in sorted(chosen.tolist()):
                batch += groups[available[c]].pop()
            batches.append(batch)
            available = [p for p in available if groups[p]]
        return batches
