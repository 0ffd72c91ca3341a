"""The training data pipeline: image files -> augmented uint8 crops -> the one preprocessing -> tensors."""
from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import InputError
from ..preprocess import normalize
from .transforms import TrainTransform


class TrainSet(torch.utils.data.Dataset):
    """Samples -> (uint8 BGR crop at the input size, label). Augmentation randomness is a function of
    (seed, epoch, rank, worker): set_epoch() before each epoch makes an epoch reproducible on resume."""

    def __init__(self, samples, input_size, augment=(), augment_options=None, seed: int = 0, rank: int = 0):
        self.samples = list(samples)
        self.input_size = tuple(input_size)
        self.augment, self.augment_options = tuple(augment), dict(augment_options or {})
        self.seed, self.rank = int(seed), int(rank)
        self.set_epoch(0)

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)
        self._rng = None
        # fresh transforms (RandomPatch's pool included) each epoch: a resumed epoch sees the same state
        self.transform = TrainTransform(self.input_size, self.augment, self.augment_options)

    def __len__(self):
        return len(self.samples)

    def _generator(self):
        if self._rng is None:
            info = torch.utils.data.get_worker_info()
            worker = info.id if info is not None else 0
            self._rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker])
        return self._rng

    def __getitem__(self, index):
        import cv2

        s = self.samples[index]
        img = cv2.imread(s.path, cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(f"cannot read training image {s.path} (missing, unreadable or not an image)")
        return self.transform(img, self._generator()), s.pid, s.camid


def collate(batch):
    """Stack crops and apply the one normalisation (preprocess.normalize): NCHW float32 RGB."""
    imgs = np.stack([b[0] for b in batch])
    x = torch.from_numpy(normalize(imgs))
    pids = torch.tensor([b[1] for b in batch], dtype=torch.long)
    cams = torch.tensor([b[2] for b in batch], dtype=torch.long)
    return x, pids, cams


def default_workers(cap: int = 4) -> int:
    """Loader processes for this machine: one per usable core but one, which the training loop keeps
    (torch warns, and decoding stalls, when workers outnumber the cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(cap, cores - 1))


def make_loader(dataset: TrainSet, batch_sampler, workers: int | None = None, pin_memory: bool = False):
    """workers None: default_workers()."""
    workers = default_workers() if workers is None else int(workers)
    return torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers,
                                       collate_fn=collate, pin_memory=pin_memory,
                                       persistent_workers=False)  # workers must see set_epoch()
