"""Optimisers and learning-rate schedules (torchreid's choices), with state that resumes exactly.

The schedule is a closed-form function of the epoch (warmup, then multistep or cosine), so its
state is one integer plus plain numbers: it loads with torch.load(weights_only=True).
"""
from __future__ import annotations

import math

import torch

from ..errors import InputError

OPTIMIZERS = ("sgd", "amsgrad", "adam", "adamw")
SCHEDULES = ("multistep", "cosine", "constant")


def build_optimizer(params, name: str = "sgd", lr: float = 0.065, weight_decay: float = 5e-4,
                    momentum: float = 0.9, nesterov: bool = False, betas=(0.9, 0.999)):
    name = name.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas), amsgrad=name == "amsgrad")
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas))
    raise InputError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def lr_factor(epoch: float, schedule: str, max_epoch: int, milestones=(), gamma: float = 0.1,
              warmup_epochs: int = 0, warmup_factor: float = 0.01, min_factor: float = 0.0) -> float:
    """Multiplier of the base learning rate at `epoch` (0-based)."""
    if schedule == "multistep":
        f = gamma ** sum(1 for m in milestones if epoch >= m)
    elif schedule == "cosine":
        f = min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(epoch, max_epoch) / max(max_epoch, 1)))
    elif schedule == "constant":
        f = 1.0
    else:
        raise InputError(f"unknown lr schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    if warmup_epochs and epoch < warmup_epochs:  # linear ramp from warmup_factor to the schedule's value
        f *= warmup_factor + (1 - warmup_factor) * epoch / warmup_epochs
    return f


class EpochScheduler(torch.optim.lr_scheduler.LRScheduler):
    """Per-epoch schedule: warmup + multistep/cosine. step() once per epoch, after the epoch."""

    def __init__(self, optimizer, schedule="multistep", max_epoch=350, milestones=(150, 225, 300), gamma=0.1,
                 warmup_epochs=0, warmup_factor=0.01, min_factor=0.0, last_epoch=-1):
        if schedule not in SCHEDULES:
            raise InputError(f"unknown lr schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
        self.schedule, self.max_epoch = schedule, int(max_epoch)
        self.milestones, self.gamma = [int(m) for m in milestones], float(gamma)
        self.warmup_epochs, self.warmup_factor, self.min_factor = int(warmup_epochs), float(warmup_factor), float(min_factor)
        super().__init__(optimizer, last_epoch)

    def factor(self, epoch):
        return lr_factor(epoch, self.schedule, self.max_epoch, self.milestones, self.gamma, self.warmup_epochs,
                         self.warmup_factor, self.min_factor)

    def get_lr(self):
        f = self.factor(max(self.last_epoch, 0))
        return [base * f for base in self.base_lrs]


def set_backbone_trainable(model, open_layers=("classifier",), train_all: bool = False):
    """Fixbase: freeze everything but `open_layers` (frozen BN layers also stop updating their
    statistics, as torchreid's open_specified_layers does by putting them in eval mode)."""
    for name, module in model.named_children():
        open_ = train_all or name in open_layers
        module.train(open_ if model.training else False)
        for p in module.parameters():
            p.requires_grad_(open_)
