"""TensorRT backend for .engine/.plan files: device buffers and one CUDA stream through cuda-python, no torch.

A Jetson runtime is then JetPack's TensorRT + cuda-python + numpy + OpenCV, nothing else.

One execution context per backend (TensorRT contexts are not thread-safe: thread_safe=False lets the
Embedder serialise calls). Buffers: pinned host input/output and device input/output, grown on demand
to the largest batch seen so far (never beyond the profile's max) and reused across calls, so a steady
stream of frames allocates nothing. The input shape is set per call (dynamic batch). Splitting above the
engine's max batch and padding below its min are the Embedder's job (base.py's contract), not done here.
"""
from __future__ import annotations

import ctypes
import warnings

import numpy as np

from ..errors import ArtifactError, InputError
from .base import Backend
from .tensorrt_common import (check_engine_compatible, cuda_call, device_index, import_cudart, import_tensorrt,
                              read_sidecar)


class _Pinned:
    """Page-locked host memory viewed as a numpy array (async copies need pinned memory to overlap)."""

    def __init__(self, cudart, nbytes: int):
        self.cudart, self.nbytes = cudart, int(nbytes)
        self.ptr = int(cuda_call(cudart, "cudaMallocHost", self.nbytes))
        self.array = np.frombuffer((ctypes.c_uint8 * self.nbytes).from_address(self.ptr), np.uint8)

    def view(self, dtype, shape) -> np.ndarray:
        count = int(np.prod(shape))
        return self.array[:count * np.dtype(dtype).itemsize].view(dtype).reshape(shape)

    def free(self):
        if self.ptr:
            self.array = None
            self.cudart.cudaFreeHost(self.ptr)
            self.ptr = 0


class _Device:
    def __init__(self, cudart, nbytes: int):
        self.cudart, self.nbytes = cudart, int(nbytes)
        self.ptr = int(cuda_call(cudart, "cudaMalloc", self.nbytes))

    def free(self):
        if self.ptr:
            self.cudart.cudaFree(self.ptr)
            self.ptr = 0


class TensorRTBackend(Backend):
    name = "tensorrt"
    thread_safe = False  # one IExecutionContext: concurrent enqueue on it is undefined

    def __init__(self, path, device=None, threads=None, precision=None, **options):
        super().__init__(path, device, threads)
        # the GPU first: on a CPU box this is the one line users see, whatever is installed
        trt, self.gpu = import_tensorrt("the TensorRT backend", device)
        self._cudart = cudart = import_cudart()
        self._trt = trt
        self._index = device_index(device)
        self.device = f"cuda:{self._index}"
        cuda_call(cudart, "cudaSetDevice", self._index)

        self.meta = read_sidecar(self.path)
        self.execution_precision = _built_precision(self.meta)
        if precision not in (None, self.execution_precision):
            raise ArtifactError(f"{self.path.name}: a TensorRT engine computes in the precision it was built for "
                                f"({self.execution_precision}), not {precision}; build another engine "
                                f"(osnet-export --format trt, --half for fp16)")
        for w in check_engine_compatible(self.meta, trt.__version__, self.gpu, self.path):
            warnings.warn(w, stacklevel=2)

        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            built = ""
            if self.meta is not None and self.meta.extra.get("tensorrt_version"):
                built = (f" (built with TensorRT {self.meta.extra['tensorrt_version']} on "
                         f"{self.meta.extra.get('gpu_name', '?')})")
            raise ArtifactError(f"{self.path}: TensorRT {trt.__version__} on {self.gpu.describe()} could not "
                                f"deserialize this engine{built}; it is corrupt or was built for another "
                                f"TensorRT version or GPU. Rebuild it with osnet-export --format trt")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise ArtifactError(f"{self.path}: TensorRT could not create an execution context (out of GPU memory?)")
        self._bind_io()
        self._stream = cuda_call(cudart, "cudaStreamCreate")
        self._buffers: dict = {}
        self._capacity = 0

    # ----------------------------------------------------------------------------------------- engine I/O
    def _bind_io(self):
        trt, eng = self._trt, self._engine
        names = [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
        inputs = [n for n in names if eng.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if eng.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ArtifactError(f"{self.path}: expected an engine with one input and one output (an OSNet "
                                f"embedder), found inputs {inputs} and outputs {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_dtype = np.dtype(trt.nptype(eng.get_tensor_dtype(self.input_name)))
        self.output_dtype = np.dtype(trt.nptype(eng.get_tensor_dtype(self.output_name)))
        lo, _opt, hi = eng.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        self.sample_shape = tuple(int(d) for d in hi[1:])  # (3, H, W) or (H, W, 3)
        out = tuple(int(d) for d in eng.get_tensor_shape(self.output_name))
        self.feature_dim = out[-1] if out and out[-1] > 0 else (self.meta.feature_dim if self.meta else 512)
        if self.meta is not None:
            if self.feature_dim != self.meta.feature_dim:
                raise ArtifactError(f"{self.path}: engine output {self.output_name} is {self.feature_dim}-D but its "
                                    f"sidecar says {self.meta.feature_dim}-D; the sidecar belongs to another engine")
            fmt = self.meta.input_format
            h, w = self.meta.input_size
            want = (3, h, w) if fmt == "float_nchw" else (h, w, 3)
            if self.sample_shape != want:
                raise ArtifactError(f"{self.path}: engine input {self.input_name} has shape (N, "
                                    f"{', '.join(map(str, self.sample_shape))}) but its sidecar says {fmt} {h}x{w} "
                                    f"(expected (N, {', '.join(map(str, want))})); the sidecar belongs to "
                                    f"another engine")

    def _ensure_capacity(self, n: int):
        """Grow the pinned/device buffers to n samples (powers of two up to max_batch): few reallocations."""
        if n <= self._capacity:
            return
        cap = min(self.max_batch, 1 << (n - 1).bit_length())
        self._free_buffers()
        in_bytes = cap * int(np.prod(self.sample_shape)) * self.input_dtype.itemsize
        out_bytes = cap * self.feature_dim * self.output_dtype.itemsize
        self._buffers = {"h_in": _Pinned(self._cudart, in_bytes), "h_out": _Pinned(self._cudart, out_bytes),
                         "d_in": _Device(self._cudart, in_bytes), "d_out": _Device(self._cudart, out_bytes)}
        self._capacity = cap

    # ----------------------------------------------------------------------------------------- inference
    def run(self, batch: np.ndarray) -> np.ndarray:
        cudart = self._cudart
        batch = np.asarray(batch)
        n = len(batch)
        if batch.shape[1:] != self.sample_shape:
            raise InputError(f"TensorRT engine {self.path.name} takes (N, {', '.join(map(str, self.sample_shape))}) "
                             f"{self.input_dtype}, got {batch.shape}")
        if not self.min_batch <= n <= self.max_batch:
            raise InputError(f"TensorRT engine {self.path.name} serves batches of {self.min_batch} to "
                             f"{self.max_batch}, got {n} (the Embedder splits and pads; call it instead)")
        if self._index:
            cuda_call(cudart, "cudaSetDevice", self._index)  # the current device is per host thread
        self._ensure_capacity(n)
        b = self._buffers
        shape = (n,) + self.sample_shape
        host_in = b["h_in"].view(self.input_dtype, shape)
        np.copyto(host_in, batch, casting="same_kind")  # float64 -> float32 allowed; float -> uint8 refused
        in_bytes = host_in.nbytes
        if not self._context.set_input_shape(self.input_name, shape):
            raise InputError(f"TensorRT rejected input shape {shape} for {self.path.name}")
        out_shape = tuple(self._context.get_tensor_shape(self.output_name))
        host_out = b["h_out"].view(self.output_dtype, (n, self.feature_dim))
        if int(np.prod(out_shape)) != host_out.size:
            raise ArtifactError(f"{self.path.name}: output {self.output_name} has shape {out_shape}, expected "
                                f"({n}, {self.feature_dim})")
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_call(cudart, "cudaMemcpyAsync", b["d_in"].ptr, b["h_in"].ptr, in_bytes, h2d, self._stream)
        self._context.set_tensor_address(self.input_name, b["d_in"].ptr)
        self._context.set_tensor_address(self.output_name, b["d_out"].ptr)
        if not self._context.execute_async_v3(self._stream_handle()):
            raise ArtifactError(f"TensorRT failed to run {self.path.name} at batch {n}")
        cuda_call(cudart, "cudaMemcpyAsync", b["h_out"].ptr, b["d_out"].ptr, host_out.nbytes, d2h, self._stream)
        cuda_call(cudart, "cudaStreamSynchronize", self._stream)
        # copy out: the pinned buffer is overwritten by the next call
        return host_out.astype(np.float32, copy=True)

    def _stream_handle(self) -> int:
        s = self._stream
        try:
            return int(s)
        except TypeError:  # cudaStream_t wrappers expose the handle via getPtr()
            return int(s.getPtr())

    # ----------------------------------------------------------------------------------------- lifecycle
    def describe(self) -> str:
        return (f"{self.name} {self._trt.__version__} ({self.gpu.name}, batch {self.min_batch}-{self.max_batch}) "
                f"executes={self.execution_precision}")

    def _free_buffers(self):
        for buf in self._buffers.values():
            buf.free()
        self._buffers, self._capacity = {}, 0

    def close(self):
        if getattr(self, "_cudart", None) is None:
            return
        self._free_buffers()
        if getattr(self, "_stream", None) is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        # context before engine before runtime: TensorRT's required destruction order
        self._context = self._engine = self._runtime = None
        self._cudart = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _built_precision(meta) -> str | None:
    """The float precision an engine computes in: its own for FP32/FP16; for INT8, the float layers run FP16
    in a weakly typed (TensorRT 10) build, which sets the FP16 fallback flag, and FP32 in a strongly typed one."""
    if meta is None:
        return None
    if meta.precision != "int8":
        return meta.precision
    return "fp32" if meta.extra.get("strongly_typed") else "fp16"
