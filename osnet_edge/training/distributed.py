"""torchrun's environment for the training loop: one process per GPU (or CPU process with gloo), rank 0 writes."""
from __future__ import annotations

import os

import torch


class Dist:
    """torchrun's environment (RANK / WORLD_SIZE / LOCAL_RANK), or a single process."""

    def __init__(self, device_pref=None):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device_pref:
            self.device = torch.device(device_pref)
        else:
            self.device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
        if self.world_size > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", self.local_rank)  # one GPU per torchrun process
        self.enabled = self.world_size > 1
        if self.enabled and not torch.distributed.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.enabled:
            torch.distributed.barrier()

    def all_mean(self, values: list) -> list:
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return (t / self.world_size).tolist()
