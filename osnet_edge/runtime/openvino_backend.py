"""OpenVINO backend for .xml IR: CPU / GPU / NPU / AUTO, latency or throughput hint, async queue for big batches.

Torch-free. Thread-safe: each call borrows an infer request from a small pool (requests are not
re-entrant, a compiled model is), so threads sharing one Embedder never share a request.
"""
from __future__ import annotations

import queue
import threading

import numpy as np

from ..deps import require
from ..errors import ArtifactError, InputError
from ..metadata import META_KEY, ModelMeta
from .base import Backend

HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT", "cumulative_throughput": "CUMULATIVE_THROUGHPUT"}
# execution precision -> OpenVINO's INFERENCE_PRECISION_HINT, and the capability a device must report for it
_OV_TYPES = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
_CAPABILITY = {"fp32": "FP32", "fp16": "FP16", "bf16": "BF16"}
_FROM_OV = {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}


def precision_config(core, device: str, declared: str, requested: str | None = None) -> dict:
    """The compile property that makes OpenVINO execute at the artifact's declared precision, or at `requested`.

    Left alone, the CPU plugin runs every IR in bfloat16 where the CPU has AVX-512 BF16 or AMX, and the GPU
    plugin in f16: an FP32 artifact would silently lose ~3 decimal digits. FP32 and INT8 artifacts (the
    non-quantized layers) execute f32; an FP16 artifact f16 where the device computes it natively, else f32.
    requested ("fp32", "fp16", "bf16") is an explicit choice and must be supported by the device.
    """
    dev = device.upper()
    caps = _capabilities(core, dev)
    if requested is not None:
        if requested not in _OV_TYPES:
            raise ArtifactError(f"precision must be one of {', '.join(_OV_TYPES)}, got {requested!r}")
        if caps is not None and _CAPABILITY[requested] not in caps:
            raise ArtifactError(f"OpenVINO {dev} cannot execute {requested} (it reports {', '.join(sorted(caps))}); "
                                f"bf16 needs a CPU with AVX-512 BF16 or AMX, fp16 a GPU or an AVX-512 FP16 CPU")
        want = requested
    elif declared == "fp16" and caps is not None and "FP16" in caps:
        want = "fp16"
    else:
        want = "fp32"
    return {"INFERENCE_PRECISION_HINT": _OV_TYPES[want]}


def executed_precision(compiled) -> str:
    """What a compiled model really executes ('fp32', 'fp16', 'bf16'), as the plugin reports it."""
    try:
        t = compiled.get_property("INFERENCE_PRECISION_HINT")
    except Exception:  # devices that do not report it (some AUTO/HETERO setups)
        return "unknown"
    name = t.get_type_name() if hasattr(t, "get_type_name") else str(t)
    return _FROM_OV.get(name, name)


def _capabilities(core, dev: str):
    if dev.split(":")[0].split(".")[0] in ("AUTO", "MULTI", "HETERO"):
        return None  # a virtual device passes the hint on; what ran is read back after compiling
    try:
        return set(core.get_property(dev, "OPTIMIZATION_CAPABILITIES"))
    except Exception:
        return None


class OpenVINOBackend(Backend):
    name = "openvino"
    thread_safe = True

    def __init__(self, path, device=None, threads=None, hint="throughput", streams=None, config=None,
                 async_min_batch=8, cache_dir=None, precision=None, **options):
        """hint: 'throughput' (default: several streams; a batch of at least async_min_batch crops is split
        across them through an AsyncInferQueue, which is how the Embedder is used: all boxes of a frame at once)
        or 'latency' (one request uses every core; best when crops arrive one at a time).
        streams / threads / config: explicit OpenVINO properties, overriding what the hint picks.
        cache_dir: OpenVINO model cache (faster second start on GPU).
        precision: None executes at the artifact's declared precision (f32 for FP32/INT8 IRs, never the
        plugin's bf16/f16 default); "bf16" / "fp16" / "fp32" is an explicit choice, checked after compiling."""
        super().__init__(path, device, threads)
        ov = require("openvino", "the OpenVINO backend")
        if self.path.suffix.lower() != ".xml":
            raise ArtifactError(f"{self.path}: OpenVINO IR is an .xml file with a .bin beside it")
        bin_path = self.path.with_suffix(".bin")
        if not bin_path.is_file():
            raise ArtifactError(f"{self.path}: its weights file {bin_path.name} is missing (an IR is .xml + .bin)")
        self.core = ov.Core()
        if cache_dir:
            self.core.set_property({"CACHE_DIR": str(cache_dir)})
        try:
            model = self.core.read_model(str(self.path))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"{self.path} could not be read as OpenVINO IR: it is truncated, or not an IR "
                                f"({first})") from None
        self.meta = (ModelMeta.from_json(model.get_rt_info([META_KEY]).astype(str), str(self.path))
                     if model.has_rt_info([META_KEY]) else None)
        if len(model.inputs) != 1:
            raise ArtifactError(f"{self.path} has {len(model.inputs)} inputs; an OSNet embedder has one")
        self.input_dtype = np.uint8 if model.inputs[0].get_element_type() == ov.Type.u8 else np.float32
        self.input_format = "uint8_nhwc" if self.input_dtype == np.uint8 else "float_nchw"
        out_shape = model.outputs[0].get_partial_shape()
        self.feature_dim = out_shape[-1].get_length() if out_shape[-1].is_static else 512

        devices = self.core.available_devices
        dev = (device or ("AUTO" if any(d.startswith(("GPU", "NPU")) for d in devices) else "CPU")).upper()
        if dev.split(":")[0].split(".")[0] not in ("AUTO", "MULTI", "HETERO") and dev not in devices \
                and dev.split(".")[0] not in devices:
            raise ArtifactError(f"OpenVINO device {device!r} is not available here (available: "
                                f"{', '.join(devices)}, AUTO)")
        if hint not in HINTS:
            raise ArtifactError(f"hint must be one of {', '.join(HINTS)}, got {hint!r}")
        props = {"PERFORMANCE_HINT": HINTS[hint]}
        props.update(precision_config(self.core, dev, self.meta.precision if self.meta else "fp32", precision))
        if threads and dev == "CPU":
            props["INFERENCE_NUM_THREADS"] = int(threads)
        if streams:
            props["NUM_STREAMS"] = str(streams)
        props.update(config or {})
        try:
            self.compiled = self.core.compile_model(model, dev, props)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"OpenVINO could not compile {self.path.name} for {dev} ({first})") from None
        self.device, self.hint = dev, hint
        self.execution_precision = executed_precision(self.compiled)
        wanted = _FROM_OV[props["INFERENCE_PRECISION_HINT"]]
        if self.execution_precision not in (wanted, "unknown"):
            raise ArtifactError(f"OpenVINO {dev} compiled {self.path.name} for {self.execution_precision}, not the "
                                f"{wanted} asked for; refusing to hand out embeddings at another precision")
        try:
            self.n_requests = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        except Exception:
            self.n_requests = 1
        self.async_min_batch = int(async_min_batch)
        self._pool: queue.Queue = queue.Queue()
        for _ in range(self.n_requests):
            self._pool.put(self.compiled.create_infer_request())
        self._async_queue = None
        self._async_lock = threading.Lock()  # an AsyncInferQueue is not re-entrant: one big batch at a time

    def run(self, batch: np.ndarray) -> np.ndarray:
        if batch.dtype != self.input_dtype:
            raise InputError(f"{self.path.name} expects {np.dtype(self.input_dtype).name} input, got {batch.dtype} "
                             f"(its metadata's input_format does not match the graph)")
        n = len(batch)
        if self.n_requests > 1 and n >= self.async_min_batch:
            return self._run_async(batch)
        req = self._pool.get()
        try:
            req.infer({0: batch}, share_inputs=True)
            return req.get_output_tensor(0).data.copy()
        finally:
            self._pool.put(req)

    def _run_async(self, batch: np.ndarray) -> np.ndarray:
        """Split one big batch across the device's streams and run the parts concurrently."""
        ov = require("openvino")
        parts = np.array_split(np.arange(len(batch)), self.n_requests)
        out = np.empty((len(batch), self.feature_dim), np.float32)

        def done(request, idx):
            out[idx[0]:idx[-1] + 1] = request.get_output_tensor(0).data

        with self._async_lock:
            if self._async_queue is None:
                self._async_queue = ov.AsyncInferQueue(self.compiled, self.n_requests)
            q = self._async_queue
            q.set_callback(done)
            for idx in parts:
                if len(idx):
                    q.start_async({0: np.ascontiguousarray(batch[idx[0]:idx[-1] + 1])}, idx)
            q.wait_all()
        return out

    def describe(self) -> str:
        return (f"openvino {self.device} hint={self.hint} requests={self.n_requests} "
                f"executes={self.execution_precision}")

    def close(self):
        self._async_queue = None
        self._pool = queue.Queue()
        self.compiled = None
