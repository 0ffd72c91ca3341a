"""A backend has one job: run a preprocessed batch and return (N, D) float32 features.

Batching, padding, preprocessing and normalisation live once, in the Embedder. Backends register
the file extensions they open; the Embedder picks one from the artifact's suffix.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ArtifactError
from ..metadata import ModelMeta

# suffix -> "module:Class", imported only when a file of that kind is opened
BACKENDS = {
    ".onnx": "osnet_edge.runtime.onnxruntime_backend:OnnxRuntimeBackend",
    ".xml": "osnet_edge.runtime.openvino_backend:OpenVINOBackend",
    ".engine": "osnet_edge.runtime.tensorrt_backend:TensorRTBackend",
    ".plan": "osnet_edge.runtime.tensorrt_backend:TensorRTBackend",
    ".pt": "osnet_edge.runtime.torch_backend:TorchBackend",
    ".pth": "osnet_edge.runtime.torch_backend:TorchBackend",
}


def backend_class(path):
    """The backend class for a file, by suffix; unknown suffixes list the supported ones."""
    import importlib

    suffix = Path(path).suffix.lower()
    if suffix not in BACKENDS:
        raise ArtifactError(f"{path}: unknown model format {suffix or '(no extension)'!r}; supported: "
                            f"{', '.join(BACKENDS)} (.onnx ONNX Runtime, .xml OpenVINO IR, .engine/.plan TensorRT, "
                            f".pt/.pth PyTorch)")
    module, cls = BACKENDS[suffix].split(":")
    return getattr(importlib.import_module(module), cls)


class Backend:
    """Base class. Subclasses set meta (None if the artifact has no osnet-edge metadata) and implement run()."""

    name = "base"
    # whether run() may be called from several threads at once on one instance
    thread_safe = False
    # batch limits of the artifact (TensorRT profiles); None = any
    min_batch = 1
    max_batch: int | None = None
    # the float precision the backend really computes in ("fp32", "fp16", "bf16"), read from the engine where
    # it can say; None: the artifact's declared precision. Never below what the artifact declares unless asked.
    execution_precision: str | None = None

    def __init__(self, path, device=None, threads=None, **options):
        self.path = Path(path)
        if not self.path.is_file():
            raise ArtifactError(f"model file not found: {self.path}")
        self.device = device
        self.threads = threads
        self.meta: ModelMeta | None = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, ...) input in the artifact's input_format -> (N, D) float32 features."""
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name} ({self.device or 'default device'})"

    def close(self):
        """Release sessions, engines and device memory."""
