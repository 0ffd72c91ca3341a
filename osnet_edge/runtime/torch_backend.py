"""PyTorch backend for .pt/.pth checkpoints: eval mode, inference_mode, CPU or CUDA."""
from __future__ import annotations

import contextlib

import numpy as np

from ..deps import require
from ..errors import ArtifactError
from .base import Backend


class TorchBackend(Backend):
    name = "pytorch"
    thread_safe = True  # inference_mode forward passes do not share mutable state

    def __init__(self, path, device=None, threads=None, arch=None, precision=None, **options):
        super().__init__(path, device, threads)
        torch = require("torch", "the PyTorch backend")
        from ..checkpoint import model_meta
        from ..models import build_model

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = build_model(arch, weights=str(path)).eval().to(self.device)
        self.meta = model_meta(self.model)
        self._torch = torch
        if precision not in (None, "fp32"):
            raise ArtifactError(f"{self.path.name}: the PyTorch backend runs checkpoints in fp32; export the model "
                                f"(osnet-export) for {precision}")
        self.execution_precision = "fp32"
        # run() sets process-wide switches (thread count, cuDNN's TF32) and restores them: one call at a time
        self.thread_safe = not (threads or str(self.device).startswith("cuda"))

    def run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode(), _no_tf32(torch, self.device), torch_threads(torch, self.threads):
            x = self._torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            return self.model(x).float().cpu().numpy()


@contextlib.contextmanager
def torch_threads(torch, threads):
    """torch's thread count is process-wide: set it for this call only, so opening an Embedder with threads=1
    does not slow down (or change the float summation order of) everything else the process runs."""
    if not threads:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@contextlib.contextmanager
def _no_tf32(torch, device):
    """cuDNN computes float32 convolutions in TF32 by default on Ampere and newer: keep fp32 fp32."""
    if not str(device).startswith("cuda"):
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
