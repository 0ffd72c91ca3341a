"""OpenVINO backend for .xml IR: CPU / GPU / NPU / AUTO, latency or throughput hint (streams).

Torch-free. Streams run as OpenVINO means them to: one caller thread submits the chunks of a batch to the
requests of an AsyncInferQueue (start_async) and OpenVINO's own stream threads run them, instead of several
Python threads each blocking in InferRequest.infer (the pattern seen to hang forever, once in ~35 runs, in a
process that had used torch). Every wait is bounded (InferRequest.wait_for): a request that does not finish
raises InferenceTimeout naming the backend, and is cancelled. Threads sharing one Embedder take turns per batch.
"""
from __future__ import annotations

import contextlib
import queue
import threading

import numpy as np

from ..artifact_files import check_ir, check_ir_digest
from ..deps import require
from ..errors import ArtifactError, InputError
from ..metadata import META_KEY, ModelMeta
from .base import DEFAULT_TIMEOUT_S, Backend, InferenceTimeout, cpu_stream_pixels

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
                 cache_dir=None, precision=None, **options):
        """hint: 'throughput' (default: several streams; the Embedder splits a batch into chunks and runs them
        on the streams concurrently, which is how it is used: all boxes of a frame at once) or 'latency' (one
        request uses every core; best when crops arrive one at a time).
        streams / threads / config: explicit OpenVINO properties, overriding what the hint picks.
        cache_dir: OpenVINO model cache (faster second start on GPU).
        precision: None executes at the artifact's declared precision (f32 for FP32/INT8 IRs, never the
        plugin's bf16/f16 default); "bf16" / "fp16" / "fp32" is an explicit choice, checked after compiling."""
        super().__init__(path, device, threads)
        ov = require("openvino", "the OpenVINO backend")
        if self.path.suffix.lower() != ".xml":
            raise ArtifactError(f"{self.path}: OpenVINO IR is an .xml file with a .bin beside it")
        check_ir(self.path)  # its .bin inside the folder and of this IR, before OpenVINO reads either
        self.core = ov.Core()
        if cache_dir:
            self.core.set_property({"CACHE_DIR": str(cache_dir)})
        try:
            model = self.core.read_model(str(self.path))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"{self.path} could not be read as OpenVINO IR: it is truncated, or not an IR "
                                f"({first})") from None
        self.meta = (ModelMeta.from_json(_rt_text(model, self.path), str(self.path))
                     if model.has_rt_info([META_KEY]) else None)
        check_ir_digest(self.path, self.meta)
        if len(model.inputs) != 1:
            raise ArtifactError(f"{self.path} has {len(model.inputs)} inputs; an OSNet embedder has one")
        self.input_dtype = np.uint8 if model.inputs[0].get_element_type() == ov.Type.u8 else np.float32
        self.input_format = "uint8_nhwc" if self.input_dtype == np.uint8 else "float_nchw"
        pshape = model.inputs[0].get_partial_shape()
        if pshape.rank.is_dynamic:
            raise ArtifactError(f"{self.path}: its input has no fixed number of dimensions; an OSNet embedder takes a "
                                f"4-D batch")
        self.check_input_shape([d.get_length() if d.is_static else None for d in pshape],
                               "nhwc" if self.input_dtype == np.uint8 else "nchw")
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
        self.device, self.hint = dev, hint
        self.compiled = self._compile(model, dev, props)
        self.execution_precision = executed_precision(self.compiled)
        try:
            self.n_requests = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        except Exception:
            self.n_requests = 1
        # the requests of an AsyncInferQueue: chunks of one batch are submitted to them in turn (run_chunks);
        # a lone run() borrows one. Its own start_async/wait_all wait without a bound, so they are not called.
        self._queue = ov.AsyncInferQueue(self.compiled, self.n_requests)
        self._pool: queue.Queue = queue.Queue()
        for req in self._queue:
            self._pool.put(req)
        self._submit = threading.Lock()  # one batch's chunks at a time own every request
        self._latency: queue.Queue | None = None
        self.latency_compiled = None
        if self.n_requests > 1:
            self.streams = self.n_requests
            # CPU streams are one core each, fed small chunks; a GPU takes one even share of a batch per request
            if dev == "CPU":
                self.stream_pixels = cpu_stream_pixels(self.meta)
                # a lone crop (a batch of one) runs on every core at once instead of one stream's core:
                # osnet_x0_25 256x128 FP32 1.50 -> 1.17 ms, INT8 1.17 -> 1.02 ms on 2 cores
                lat = {k: v for k, v in props.items() if k != "NUM_STREAMS"}
                lat["PERFORMANCE_HINT"] = "LATENCY"
                self.latency_compiled = self._compile(model, dev, lat)
                self._latency = queue.Queue()
                self._latency.put(self.latency_compiled.create_infer_request())

    def _compile(self, model, dev, props):
        try:
            compiled = self.core.compile_model(model, dev, props)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"OpenVINO could not compile {self.path.name} for {dev} ({first})") from None
        wanted = _FROM_OV[props["INFERENCE_PRECISION_HINT"]]
        got = executed_precision(compiled)
        if got not in (wanted, "unknown"):
            raise ArtifactError(f"OpenVINO {dev} compiled {self.path.name} for {got}, not the "
                                f"{wanted} asked for; refusing to hand out embeddings at another precision")
        return compiled

    timeout_s = DEFAULT_TIMEOUT_S

    def run(self, batch: np.ndarray) -> np.ndarray:
        pool = self._latency
        if pool is not None and pool.empty():  # the all-cores request is busy (another thread): use a stream
            pool = None
        return self._infer(batch, pool or self._pool)

    def run_stream(self, batch: np.ndarray) -> np.ndarray:
        return self._infer(batch, self._pool)

    def run_chunks(self, chunks):
        """(span, batch) pairs -> (span, features) as they finish: each chunk is started on the next request as
        soon as it is free, so the caller's preprocessing of chunk k overlaps inference of the ones before."""
        with self._bounded(self._submit, "the stream requests (another thread's batch)"):
            try:
                reqs = [self._pool.get(timeout=self.timeout_s) for _ in range(self.n_requests)]
            except queue.Empty:
                raise InferenceTimeout(f"{self.describe()}: the stream requests stayed busy for {self.timeout_s:g} s "
                                       f"({self.path.name})") from None
            busy: dict = {}  # request index -> (span, batch kept alive while OpenVINO reads it)
            try:
                for k, (span, batch) in enumerate(chunks):
                    self._check(batch)
                    i = k % len(reqs)
                    if i in busy:
                        yield busy[i][0], self._result(reqs[i])
                    reqs[i].start_async({0: batch}, share_inputs=True)
                    busy[i] = (span, batch)
                for i in sorted(busy, key=lambda j: busy[j][0].start):
                    yield busy[i][0], self._result(reqs[i])
                busy.clear()
            finally:
                for i in busy:  # an error in a later chunk: let the started ones finish (bounded) before reuse
                    with contextlib.suppress(Exception):
                        reqs[i].wait_for(int(self.timeout_s * 1000))
                for req in reqs:
                    self._pool.put(req)

    def _infer(self, batch, pool):
        self._check(batch)
        try:
            req = pool.get(timeout=self.timeout_s)
        except queue.Empty:
            raise InferenceTimeout(f"{self.describe()}: no infer request became free within {self.timeout_s:g} s "
                                   f"({self.path.name}); every request is stuck") from None
        try:
            req.start_async({0: batch}, share_inputs=True)
            return self._result(req)
        finally:
            pool.put(req)

    def _check(self, batch):
        if batch.dtype != self.input_dtype:
            raise InputError(f"{self.path.name} expects {np.dtype(self.input_dtype).name} input, got {batch.dtype} "
                             f"(its metadata's input_format does not match the graph)")

    def _result(self, req) -> np.ndarray:
        if not req.wait_for(int(self.timeout_s * 1000)):  # wait_for releases the GIL
            req.cancel()
            raise InferenceTimeout(f"{self.describe()}: an inference of {self.path.name} did not finish within "
                                   f"{self.timeout_s:g} s; it was cancelled")
        return req.get_output_tensor(0).data.copy()

    def _bounded(self, lock, what):
        if not lock.acquire(timeout=self.timeout_s):
            raise InferenceTimeout(f"{self.describe()}: {what} stayed busy for {self.timeout_s:g} s")
        return _Release(lock)

    def describe(self) -> str:
        return (f"openvino {self.device} hint={self.hint} streams={self.streams} "
                f"executes={self.execution_precision}")

    def close(self):
        self._pool = queue.Queue()
        self._latency = None
        self._queue = None
        self.compiled = self.latency_compiled = None


class _Release:
    """`with`: release a lock already acquired (with a timeout) on leaving."""

    def __init__(self, lock):
        self.lock = lock

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.lock.release()


def _rt_text(model, path) -> str:
    try:
        return model.get_rt_info([META_KEY]).astype(str)
    except Exception as exc:  # rt_info that is a nested map, not the JSON string our writer stores
        raise ArtifactError(f"{path}: osnet-edge metadata in rt_info is not a string ({str(exc)[:200]})") from None
