"""PyTorch backend for .pt/.pth checkpoints: eval mode, inference_mode, CPU or CUDA."""
from __future__ import annotations

import numpy as np

from ..deps import require
from .base import Backend


class TorchBackend(Backend):
    name = "pytorch"
    thread_safe = True  # inference_mode forward passes do not share mutable state

    def __init__(self, path, device=None, threads=None, arch=None, **options):
        super().__init__(path, device, threads)
        torch = require("torch", "the PyTorch backend")
        from ..checkpoint import model_meta
        from ..models import build_model

        if threads:
            torch.set_num_threads(int(threads))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = build_model(arch, weights=str(path)).eval().to(self.device)
        self.meta = model_meta(self.model)
        self._torch = torch

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            x = self._torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            return self.model(x).float().cpu().numpy()
