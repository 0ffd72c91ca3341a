"""ONNX Runtime backend for .onnx: CUDA / TensorRT execution providers when present, else CPU. Torch-free."""
from __future__ import annotations

import numpy as np

from ..artifact_files import check_onnx
from ..deps import require
from ..errors import ArtifactError, InputError
from ..metadata import META_KEY, ModelMeta
from .base import Backend, cpu_stream_pixels, usable_cores

# device -> execution providers, best first; ORT falls back along the list
_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    # TensorRT EP builds an engine on first run (minutes) and caches it only if told to: ask for it by name
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    thread_safe = True  # InferenceSession.run may be called concurrently (ORT documents it)

    def __init__(self, path, device=None, threads=None, graph_optimization="all", providers=None,
                 trt_cache_dir=None, precision=None, streams=None, **options):
        """streams (CPU): None = one per usable core (or per `threads`): besides the session that runs a whole
        batch on every thread, a single-threaded session that the Embedder calls concurrently, one chunk of
        crops per core. Measured on 2 cores at batch 32, 256x128: +22% (osnet_x0_25) / +21% (osnet_x1_0) over
        one session splitting every operator across the threads. streams=1: one session, as ORT does alone."""
        super().__init__(path, device, threads)
        ort = require("onnxruntime", "the ONNX Runtime backend")
        available = ort.get_available_providers()
        dev = (device or ("cuda" if "CUDAExecutionProvider" in available else "cpu")).lower()
        if providers is None:
            if dev not in _PROVIDERS:
                raise ArtifactError(f"ONNX Runtime device {device!r} unknown; use one of {', '.join(_PROVIDERS)}")
            wanted = _PROVIDERS[dev]
            if wanted[0] not in available:
                raise ArtifactError(f"device {device!r} needs {wanted[0]}, which this onnxruntime build lacks "
                                    f"(available: {', '.join(available)}); install onnxruntime-gpu or use device='cpu'")
            providers = [p for p in wanted if p in available]
            if dev == "tensorrt" and trt_cache_dir:
                providers[0] = (providers[0], {"trt_engine_cache_enable": True,
                                               "trt_engine_cache_path": str(trt_cache_dir)})
            # the CUDA provider computes float32 convolutions in TF32 (10-bit mantissa) by default
            providers = [(p, {"use_tf32": "0"}) if p == "CUDAExecutionProvider" else p for p in providers]
        self.device = dev
        self._ort, self._providers = ort, providers
        levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        if graph_optimization not in levels:
            raise ArtifactError(f"graph_optimization must be one of {', '.join(levels)}, got {graph_optimization!r}")
        self._level = levels[graph_optimization]
        _check_file(self.path)
        check_onnx(self.path)  # external data inside the folder, before ORT reads any of it
        self.session = self._session(threads)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise ArtifactError(f"{self.path} has {len(inputs)} inputs; an OSNet embedder has one")
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        self.input_dtype = np.uint8 if inputs[0].type == "tensor(uint8)" else np.float32
        self.input_format = "uint8_nhwc" if self.input_dtype == np.uint8 else "float_nchw"
        self.input_shape = inputs[0].shape
        props = self.session.get_modelmeta().custom_metadata_map
        self.meta = ModelMeta.from_json(props[META_KEY], str(self.path)) if META_KEY in props else None
        self.check_input_shape(self.input_shape, "nhwc" if self.input_dtype == np.uint8 else "nchw")
        out_shape = outputs[0].shape
        self.feature_dim = out_shape[-1] if isinstance(out_shape[-1], int) else 512
        if isinstance(self.input_shape[0], int) and self.input_shape[0] > 0:  # a static-batch export
            self.min_batch = self.max_batch = self.input_shape[0]
        # ORT runs a graph at the precision it was written in (INT8 graphs: float parts in fp32)
        declared = "fp16" if self.meta is not None and self.meta.precision == "fp16" else "fp32"
        if precision not in (None, declared):
            raise ArtifactError(f"{self.path.name}: ONNX Runtime executes this graph in {declared}, as written; it "
                                f"has no {precision} mode. For bf16 on a CPU use the OpenVINO IR "
                                f"(Embedder('model.xml', precision='bf16'))")
        self.execution_precision = declared
        self.stream_session = None
        on_cpu = self.session.get_providers()[0] == "CPUExecutionProvider"
        n_streams = _stream_count(streams, threads) if on_cpu else 1  # a GPU provider is fed whole batches
        if n_streams > 1 and self.max_batch is None:
            self.stream_session = self._session(1)
            self.streams, self.stream_pixels = n_streams, cpu_stream_pixels(self.meta)

    def _session(self, threads):
        so = self._ort.SessionOptions()
        so.graph_optimization_level = self._level
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        so.log_severity_level = 3  # warnings about unused initializers etc. are not the user's business
        try:
            return self._ort.InferenceSession(str(self.path), sess_options=so, providers=self._providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf types; say which file and why
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"{self.path} could not be loaded by ONNX Runtime: it is truncated, damaged or not "
                                f"an ONNX model it can run ({first})") from None

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._infer(self.session, batch)

    def run_stream(self, batch: np.ndarray) -> np.ndarray:
        return self._infer(self.stream_session or self.session, batch)

    def _infer(self, session, batch):
        if batch.dtype != self.input_dtype:
            raise InputError(f"{self.path.name} expects {np.dtype(self.input_dtype).name} input, got {batch.dtype} "
                             f"(its metadata's input_format does not match the graph)")
        return session.run([self.output_name], {self.input_name: batch})[0]

    def describe(self) -> str:
        return (f"onnxruntime {self.session.get_providers()[0]} streams={self.streams} "
                f"executes={self.execution_precision}")

    def close(self):
        self.session = self.stream_session = None


def _stream_count(streams, threads) -> int:
    if streams is None:
        return int(threads) if threads else usable_cores()
    if int(streams) < 1:
        raise ArtifactError(f"streams must be >= 1, got {streams}")
    return int(streams)


def _check_file(path):
    """Cheap checks before ORT sees the file, so the common mistakes get a plain message."""
    size = path.stat().st_size
    if size == 0:
        raise ArtifactError(f"{path} is empty (an interrupted export or download?)")
    with open(path, "rb") as f:
        head = f.read(64)
    if head.lstrip().startswith((b"<", b"{", b"PK")):
        kind = {"<": "XML/HTML", "{": "JSON", "P": "a zip archive (a PyTorch checkpoint?)"}[chr(head.lstrip()[0])]
        raise ArtifactError(f"{path} is {kind}, not an ONNX model")
