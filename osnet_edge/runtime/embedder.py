"""Embedder: person crops -> (N, 512) L2-normalised float32 embeddings, from any artifact. Torch-free."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout

import numpy as np

from ..errors import ArtifactError, InputError
from ..metadata import ModelMeta
from ..preprocess import as_crops, crop_boxes, to_batch
from .base import DEFAULT_TIMEOUT_S, InferenceTimeout, backend_class

DEFAULT_BATCH = 32
# an explicit lower execution precision is used only if it keeps this min cosine against the declared one
REDUCED_PRECISION_MIN_COS = {"bf16": 0.99, "fp16": 0.999}


class Embedder:
    """Embed person crops with an exported OSNet (or a PyTorch checkpoint).

    >>> emb = Embedder("osnet_x0_25_256x128_fp32.onnx")
    >>> feats = emb.embed(crops)          # (N, 512) float32, rows L2-normalised

    path: .onnx (ONNX Runtime), .xml (OpenVINO IR), .engine/.plan (TensorRT), .pt/.pth (PyTorch).
    device: backend device ("cpu", "cuda", "CPU", "GPU", "AUTO"); None picks the best available.
    batch_size: crops per backend call (large inputs are split); None = 32 or the engine's max batch. With CPU
    streams (below) the chunks are smaller: their size follows the input size, not batch_size.
    threads: CPU threads for the backend; None = the backend's default.
    input_size: (H, W), only for artifacts without osnet-edge metadata.
    precision: None computes at the artifact's declared precision on every backend and CPU (OpenVINO's
    bf16/f16 defaults are overridden); "bf16" (OpenVINO on an AVX-512 BF16/AMX CPU) or "fp16" is an explicit
    choice, shown in repr() as what executes.
    timeout: seconds any one backend call may take before InferenceTimeout is raised (naming the backend): a
    camera box never waits forever. Default 120 s.
    Further keyword options go to the backend (e.g. OpenVINO's hint="throughput").

    CPU streams: where the backend runs several single-core streams (ONNX Runtime and OpenVINO on a CPU with
    2+ cores, by default), a batch is cut into small chunks that run concurrently, one per core, and in embed()
    each chunk is preprocessed by the thread that then runs it, so resizing overlaps inference.

    Thread safety: one Embedder may be shared by threads. Backends that are not safe to call
    concurrently (flag thread_safe False) are serialised by a lock; results are identical either way.
    """

    def __init__(self, path, device=None, batch_size=None, threads=None, input_size=None, precision=None,
                 timeout=None, **backend_options):
        self.timeout = DEFAULT_TIMEOUT_S if timeout is None else float(timeout)
        if precision is not None:
            backend_options["precision"] = precision  # only backends that can honour it accept it
        self._attach(backend_class(path)(path, device=device, threads=threads, **backend_options), batch_size,
                     input_size)

    @classmethod
    def from_backend(cls, backend, batch_size=None, input_size=None) -> "Embedder":
        """An Embedder over a backend already open, e.g. the in-memory PyTorch model the training loop
        evaluates: the same batching, preprocessing and normalisation as for a file."""
        self = cls.__new__(cls)
        self._attach(backend, batch_size, input_size)
        return self

    def _attach(self, backend, batch_size, input_size):
        self.backend = backend
        self.timeout = getattr(self, "timeout", DEFAULT_TIMEOUT_S)
        if hasattr(backend, "timeout_s"):  # backends that bound their own waits use the same bound
            backend.timeout_s = self.timeout
        path = backend.path
        meta = self.backend.meta
        if meta is None:
            if input_size is None:
                raise ArtifactError(
                    f"{path} carries no osnet-edge metadata, so its input size and normalisation are unknown. "
                    f"Re-export it with osnet-export, or pass input_size=(H, W) (ImageNet mean/std and RGB "
                    f"order are then assumed, as in torchreid)")
            # a graph that takes uint8 is fed resized BGR crops as they are (backends report what they see)
            meta = ModelMeta(arch="unknown", width=1.0, input_size=input_size,
                             feature_dim=getattr(self.backend, "feature_dim", 512),
                             input_format=getattr(self.backend, "input_format", "float_nchw"))
        self.meta = meta
        limit = self.backend.max_batch
        self.batch_size = int(batch_size or (min(DEFAULT_BATCH, limit) if limit else DEFAULT_BATCH))
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self._lock = None if self.backend.thread_safe else threading.Lock()
        # streams need a backend free of batch limits (a static-batch engine is fed whole, padded batches)
        n = getattr(self.backend, "streams", 1)
        self._streams = n if n > 1 and self.backend.thread_safe and not self.backend.max_batch else 1
        self._pool = ThreadPoolExecutor(self._streams, thread_name_prefix="osnet-stream") \
            if self._streams > 1 else None

    @property
    def input_size(self):
        return self.meta.input_size

    @property
    def feature_dim(self) -> int:
        return self.meta.feature_dim

    @property
    def streams(self) -> int:
        """Concurrent single-core calls a batch is split into (1: each batch runs as one call)."""
        return self._streams

    @property
    def execution_precision(self) -> str:
        """The float precision the backend computes in (for INT8 artifacts: of the layers left in float)."""
        declared = "fp32" if self.meta.precision == "int8" else self.meta.precision
        return self.backend.execution_precision or declared

    def execution_label(self) -> str:
        """What runs, for people: an INT8 artifact runs its quantized layers in INT8 and the rest in float
        ('int8+fp32'), so that nobody reads it as 'runs in FP32'."""
        ep = self.execution_precision
        return f"int8+{ep}" if self.meta.precision == "int8" else ep

    def preprocess(self, crops) -> np.ndarray:
        """The artifact's input for these crops (the one preprocessing, with the artifact's settings)."""
        m = self.meta
        return to_batch(crops, m.input_size, m.mean, m.std, m.color_order, m.input_format)

    def embed(self, crops) -> np.ndarray:
        """crops: list of HxWx3 uint8 BGR images (any sizes; HxW and HxWx4 converted), an NHWC uint8 array,
        or one image (an HxWx3 array is one crop: the result is (1, D))."""
        crops = as_crops(crops)
        n = len(crops)
        if n == 0:
            return np.zeros((0, self.feature_dim), np.float32)
        out = np.empty((n, self.feature_dim), np.float32)
        if self._pool is not None and n > 1:
            def chunk(span):  # preprocess and run one chunk on one stream
                try:
                    batch = self.preprocess(crops[span])
                except InputError as exc:
                    raise _shift_index(exc, span.start) from None
                out[span] = self.backend.run_stream(batch)

            spans = self._stream_spans(n)
            if hasattr(self.backend, "run_chunks"):  # the backend runs its own streams: submit from this thread
                def batches():
                    for span in spans:
                        try:
                            yield span, self.preprocess(crops[span])
                        except InputError as exc:
                            raise _shift_index(exc, span.start) from None

                for span, feats in self.backend.run_chunks(batches()):
                    out[span] = feats
                return l2_normalize(out)
            self._wait(self._pool.map(chunk, spans, timeout=self.timeout * len(spans)))  # re-raises a chunk's error
            return l2_normalize(out)
        for start in range(0, n, self.batch_size):
            chunk = crops[start:start + self.batch_size]
            try:
                batch = self.preprocess(chunk)
            except InputError as exc:
                raise _shift_index(exc, start) from None
            out[start:start + len(chunk)] = self.run_batch(batch)
        return l2_normalize(out)

    def embed_frame(self, frame, boxes) -> np.ndarray:
        """Embed the boxes of one uint8 BGR frame: (N, 4) xyxy, or a detector's (N, 5+) rows whose first four
        columns are xyxy (score, class ignored). Boxes are clipped to the frame."""
        return self.embed(crop_boxes(frame, boxes))

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """Raw (unnormalised) features of a preprocessed batch, split/padded to the backend's batch limits."""
        n = len(batch)
        if self._pool is not None and n > 1:
            spans = self._stream_spans(n)
            if hasattr(self.backend, "run_chunks"):
                done = dict((s.start, f) for s, f in self.backend.run_chunks((s, batch[s]) for s in spans))
                feats = [done[s.start] for s in spans]
            else:
                feats = self._wait(self._pool.map(lambda s: self.backend.run_stream(batch[s]), spans,
                                                  timeout=self.timeout * len(spans)))
            return np.concatenate([np.asarray(f, np.float32).reshape(s.stop - s.start, -1)
                                   for s, f in zip(spans, feats)])
        limit = self.backend.max_batch or n
        parts = []
        for start in range(0, n, limit):
            part = batch[start:start + limit]
            real = len(part)
            if real < self.backend.min_batch:  # engines with a min batch: pad by repeating the last crop
                pad = np.repeat(part[-1:], self.backend.min_batch - real, axis=0)
                part = np.concatenate([part, pad])
            if self._lock is None:
                feats = self.backend.run(part)
            else:
                if not self._lock.acquire(timeout=self.timeout):
                    raise InferenceTimeout(f"{self.backend.describe()}: another thread's call on {self.backend.path.name} "
                                           f"held the backend for {self.timeout:g} s")
                try:
                    feats = self.backend.run(part)
                finally:
                    self._lock.release()
            parts.append(np.asarray(feats, np.float32).reshape(len(part), -1)[:real])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _wait(self, results) -> list:
        """Collect the stream calls' results within the Embedder's timeout: a stuck backend raises, naming itself
        (its thread stays stuck in the engine, but this caller is never left waiting)."""
        try:
            return list(results)
        except FuturesTimeout:
            raise InferenceTimeout(f"{self.backend.describe()}: a batch on {self._streams} streams did not finish "
                                   f"within its bound ({self.timeout:g} s per chunk) for {self.backend.path.name}") \
                from None

    def _stream_spans(self, n: int) -> list:
        """Slices of a batch of n, one chunk per stream call: as many crops as the backend's stream_pixels hold
        at this input size, but never so many that a stream is left idle."""
        even = -(-n // self._streams)
        px = self.backend.stream_pixels
        size = min(even, max(1, px // (self.input_size[0] * self.input_size[1]))) if px else even
        return [slice(s, min(s + size, n)) for s in range(0, n, size)]

    def check_precision(self, crops) -> float:
        """Min cosine of this Embedder's embeddings against the same artifact at its declared precision, on
        `crops` (use real crops of your cameras). Raises ArtifactError below REDUCED_PRECISION_MIN_COS for the
        executed precision; at the declared precision there is nothing to compare and 1.0 comes back."""
        declared = "fp32" if self.meta.precision == "int8" else self.meta.precision
        if self.execution_precision == declared:
            return 1.0
        with Embedder(self.backend.path, device=self.backend.device, batch_size=self.batch_size) as ref:
            a, b = self.embed(crops), ref.embed(crops)
        worst = float((a * b).sum(1).min())
        need = REDUCED_PRECISION_MIN_COS.get(self.execution_precision, 0.99)
        if worst < need:
            raise ArtifactError(f"{self.backend.path.name} executed in {self.execution_precision}: min cosine "
                                f"{worst:.5f} against {declared} on {len(a)} crops < {need}; keep {declared}")
        return worst

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
            self._streams = 1
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        m = self.meta
        return (f"Embedder({str(self.backend.path)!r}, backend={self.backend.describe()}, arch={m.arch}, "
                f"input={m.input_size[0]}x{m.input_size[1]}, precision={m.precision}, "
                f"executes={self.execution_label()}, batch_size={self.batch_size}, streams={self._streams}, "
                f"provenance={m.provenance_line()!r})")


def l2_normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)  # an all-zero embedding stays zero rather than NaN
    x /= norms
    return x


def _shift_index(exc: InputError, offset: int) -> InputError:
    """Errors from a chunk name the crop's index in the chunk; report it in the caller's list."""
    import re

    if offset == 0:
        return exc
    msg = re.sub(r"^crop (\d+)", lambda m: f"crop {int(m.group(1)) + offset}", str(exc))
    return InputError(msg)
