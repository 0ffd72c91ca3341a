"""A backend has one job: run a preprocessed batch and return (N, D) float32 features.

Batching, padding, preprocessing and normalisation live once, in the Embedder. Backends register
the file extensions they open; the Embedder picks one from the artifact's suffix.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..artifact_files import model_file
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


# the longest any one inference may take before the runtime gives up on it and raises (a chunk is a few crops:
# ~10 ms on a 2-core CPU; the bound is for a backend that hangs, not a slow one). Embedder(timeout=...) changes it.
DEFAULT_TIMEOUT_S = 120.0


class InferenceTimeout(ArtifactError, TimeoutError):
    """A backend call that did not return within its bound: the message names the backend and the artifact."""


# crops x pixels per stream chunk on CPUs: 4 crops at 256x128 was fastest for osnet_x0_25 and osnet_x1_0 alike
# (ONNX Runtime and OpenVINO, 2-core AVX-512 EPYC with 1 MiB L2 per core; benchmarks/results/speed/NOTES.md)
CPU_STREAM_PIXELS = 4 * 256 * 128


def cpu_stream_pixels(meta) -> int:
    """Pixels per CPU stream chunk for an artifact: INT8 activations are a quarter of the bytes, so 4x the crops
    fit the same cache (OpenVINO INT8 osnet_x0_25 at batch 32: chunks of 16 crops 2292/s, of 4 crops 2005/s)."""
    return CPU_STREAM_PIXELS * (4 if meta is not None and meta.precision == "int8" else 1)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers and taskset narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


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
    # CPU "streams": how many run_stream() calls the backend is built to serve at once (one core each); the
    # Embedder splits batches into chunks and runs them concurrently when this is > 1
    streams = 1
    # pixels per stream chunk (crops x H x W): small chunks keep a core's activations in its L2 cache; None splits
    # a batch evenly over the streams (GPU plugins, where bigger is better)
    stream_pixels: int | None = None

    def __init__(self, path, device=None, threads=None, **options):
        self.path = model_file(path)
        self.device = device
        self.threads = threads
        self.meta: ModelMeta | None = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, ...) input in the artifact's input_format -> (N, D) float32 features."""
        raise NotImplementedError

    def run_stream(self, batch: np.ndarray) -> np.ndarray:
        """One chunk on one stream (called concurrently, up to `streams` at a time). Default: run()."""
        return self.run(batch)

    def describe(self) -> str:
        return f"{self.name} ({self.device or 'default device'})"

    def check_input_shape(self, shape, layout: str):
        """Refuse a graph input that no crop batch can feed: not 4-D, a static side that is not the metadata's,
        a non-positive or absurd size. Symbolic (named) sides are legitimate: the metadata's size is fed."""
        if len(shape) != 4:
            raise ArtifactError(f"{self.path}: its input has {len(shape)} dimensions {list(shape)}; an OSNet "
                                f"embedder takes a 4-D batch")
        h, w, c = (shape[1], shape[2], shape[3]) if layout == "nhwc" else (shape[2], shape[3], shape[1])
        want = tuple(self.meta.input_size) if self.meta is not None else None
        for label, dim, expect in (("height", h, want and want[0]), ("width", w, want and want[1]), ("channels", c, 3)):
            if isinstance(dim, int) and dim >= 0 and expect and dim != expect:
                raise ArtifactError(f"{self.path}: its input {label} is {dim} but its metadata says {expect}; "
                                    f"the graph and its metadata disagree (a damaged or hand-edited file)")
            if isinstance(dim, int) and (dim == 0 or dim > 1 << 16 or (dim < 0 and dim != -1)):
                raise ArtifactError(f"{self.path}: its input {label} is {dim}; refused (not a size a crop has)")

    def close(self):
        """Release sessions, engines and device memory."""
