"""ONNX -> TensorRT engine (FP32 / FP16 / INT8), registered as the 'trt' writer of export_model.

    osnet-export --width 0.25 --format trt                     # FP32, batch 1..32
    osnet-export --width 0.25 --format trt --half              # FP16
    osnet-export --width 0.25 --format trt --int8 --calib crops/        # INT8 (10.x: calibrator; 11.x: Q/DQ)
    osnet-export --width 0.25 --format trt --int8 --calib crops/ --qdq  # INT8 from the QDQ ONNX (explicit)

TensorRT 10.x and 11.x are both served; they differ in how precision is chosen (checked against the real
modules' APIs by tests/test_tensorrt_api.py):
- 10.x builds weakly typed networks: an FP32 ONNX plus FP16 / INT8 builder flags, per-layer precision pins,
  and implicit INT8 calibration through an IInt8 calibrator (deprecated since 10.1, still there);
- 11.x removed all of that (no FP16/INT8 BuilderFlag, no ILayer.precision, no IInt8*Calibrator,
  no config.int8_calibrator): every network is strongly typed and runs in the ONNX graph's own types. So FP16
  engines are built from an FP16 ONNX (InstanceNorm kept FP32 by Casts in the graph) and INT8 engines from a
  Q/DQ ONNX (explicit quantization, export/quantize_onnx.py), whichever way the engine is asked for.

What a practitioner expects from a TensorRT build, and why each is here:
- explicit batch, one optimization profile min / opt / max = min_batch / opt_batch / max_batch (opt defaults
  to half the max, as Ultralytics does): kernels are timed at opt and valid for the whole range;
- a timing cache per (GPU, TensorRT version) reused across builds: rebuilding another width or precision
  skips most kernel timing (minutes on a Jetson);
- FP32 engines with TF32 off, so they are true FP32 (TensorRT enables TF32 by default on Ampere+, which
  would cost FP32 its parity);
- 10.x FP16 and INT8 builds keep FP16 enabled, so layers that are slow or unsupported in INT8 fall back to
  FP16, not FP32;
- InstanceNorm (IBN / AIN variants): the parser's native InstanceNorm, and those layers kept in FP32 in
  reduced-precision builds (FP16 variance of large activations is where IN loses accuracy);
- INT8 by calibration (10.x: entropy or min-max, the cache written next to the engine and reusable) from a
  calibration set of osnet_edge.calibration, preprocessed by THE preprocessing; or explicit quantization
  from the QDQ ONNX (the only INT8 path of 11.x);
- the JSON sidecar (osnet_edge.metadata schema + TensorRT version, GPU, compute capability, profile):
  an engine only runs on the TensorRT version and GPU architecture that built it, and the runtime says so.
"""
from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from osnet_edge.errors import ArtifactError, ModelConfigError
from osnet_edge.metadata import ModelMeta
from osnet_edge.runtime.tensorrt_common import (GPU, cuda_call, engine_facts, import_cudart, import_tensorrt, write_sidecar)

CALIB_METHODS = ("entropy", "minmax")
DEFAULT_CALIB_BATCH = 32
CALIB_SUFFIX = ".calib"   # osnet_x0_25_256x128_int8.engine.calib


# ------------------------------------------------------------------------------------------- pure decisions

def profile_shapes(sample_shape, max_batch: int = 32, opt_batch: int | None = None, min_batch: int = 1) -> dict:
    """The optimization profile of the batch axis: {"min": [...], "opt": [...], "max": [...]}."""
    max_batch, min_batch = int(max_batch), int(min_batch)
    opt_batch = max(min_batch, max_batch // 2) if opt_batch is None else int(opt_batch)
    if min_batch < 1 or not min_batch <= opt_batch <= max_batch:
        raise ModelConfigError(f"TensorRT profile needs 1 <= min_batch <= opt_batch <= max_batch, got "
                               f"{min_batch} / {opt_batch} / {max_batch}")
    tail = [int(d) for d in sample_shape]
    return {"min": [min_batch] + tail, "opt": [opt_batch] + tail, "max": [max_batch] + tail}


def strongly_typed_only(trt) -> bool:
    """True for TensorRT 11+: weak typing is gone (no FP16/INT8 builder flags, no per-layer precision, no INT8
    calibrators); every network is strongly typed, so the ONNX's own types are the engine's precision."""
    return not hasattr(trt.BuilderFlag, "FP16")


def builder_flags(precision: str, explicit_quantization: bool = False, instance_norm_fp32: bool = False,
                  strongly_typed: bool = False) -> dict:
    """BuilderFlag names to set and to clear for a precision (names, so this is testable without TensorRT).

    strongly_typed (TensorRT 11): precision comes from the graph, so no precision flag is set (11 has none)."""
    if precision not in ("fp32", "fp16", "int8"):
        raise ModelConfigError(f"TensorRT precision must be fp32, fp16 or int8, got {precision!r}")
    if precision == "fp32":
        return {"set": [], "clear": ["TF32"]}  # true FP32: parity with PyTorch at 1e-5
    if strongly_typed:
        return {"set": [], "clear": []}
    flags = ["FP16"] if precision == "fp16" else ["INT8", "FP16"]  # INT8 keeps an FP16 fallback, not FP32
    if instance_norm_fp32:
        # PREFER, not OBEY: a layer with no FP32 tactic still builds (with a warning) rather than failing
        flags.append("PREFER_PRECISION_CONSTRAINTS")
    return {"set": flags, "clear": []}


def is_fp32_pinned_layer(layer_type_name: str, layer_name: str) -> bool:
    """Layers kept in FP32 in FP16/INT8 builds: InstanceNorm, whether parsed natively (NORMALIZATION), as the
    InstanceNormalization_TRT plugin, or (older parsers) as the ops it was decomposed into, named after the node."""
    return (layer_type_name.endswith("NORMALIZATION") or "InstanceNorm" in layer_name
            or "instance_norm" in layer_name.lower())


def calibration_index_batches(n: int, batch_size: int) -> list:
    """Index batches covering range(n), every batch full: TensorRT calibrates at one fixed batch shape, so
    the last batch is completed from the start of the set (every crop is seen; a few twice) rather than
    dropped (crops lost) or padded with copies of one crop (a skewed histogram)."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"need n >= 1 and batch_size >= 1, got {n}, {batch_size}")
    count = -(-n // batch_size)
    idx = np.arange(count * batch_size) % n
    return [idx[i * batch_size:(i + 1) * batch_size] for i in range(count)]


def default_cache_dir() -> Path:
    root = os.environ.get("OSNET_EDGE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "osnet_edge")
    return Path(root) / "tensorrt"


def timing_cache_file(gpu: GPU, trt_version: str, directory=None) -> Path:
    """One timing cache per GPU model and TensorRT version: entries are only valid for both."""
    slug = "".join(c if c.isalnum() else "-" for c in gpu.name).strip("-").lower() or "gpu"
    return Path(directory or default_cache_dir()) / f"{slug}_sm{gpu.major}{gpu.minor}_trt{trt_version}.timing"


def onnx_facts(onnx_path) -> dict:
    """What the build needs to know about the ONNX graph: InstanceNorm present, explicit Q/DQ present."""
    from osnet_edge.deps import require

    onnx = require("onnx", "reading the ONNX graph before the TensorRT build")
    proto = onnx.load(str(onnx_path), load_external_data=False)
    ops = {n.op_type for n in proto.graph.node}
    return {"instance_norm": "InstanceNormalization" in ops,
            "qdq": "QuantizeLinear" in ops and "DequantizeLinear" in ops,
            "fp16": any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer),
            "input_name": proto.graph.input[0].name if proto.graph.input else None}


def instance_norm_fp32(proto) -> int:
    """Keep InstanceNormalization in FP32 inside an FP16 graph with Casts around it (the strongly typed
    counterpart of pinning the layer's precision, which TensorRT 11 removed). Returns how many were wrapped."""
    from onnx import TensorProto, helper

    nodes, wrapped = [], 0
    for node in proto.graph.node:
        if node.op_type != "InstanceNormalization":
            nodes.append(node)
            continue
        ins = []
        for i, name in enumerate(node.input):
            ins.append(f"{node.name or name}_fp32_in{i}")
            nodes.append(helper.make_node("Cast", [name], [ins[-1]], to=TensorProto.FLOAT, name=ins[-1]))
        out = node.output[0]
        inner = f"{node.name or out}_fp32_out"
        node.input[:] = ins
        node.output[0] = inner
        nodes.append(node)
        nodes.append(helper.make_node("Cast", [inner], [out], to=TensorProto.FLOAT16, name=inner + "_to_fp16"))
        wrapped += 1
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    return wrapped


def strongly_typed_onnx(onnx_path, out_path, precision: str, facts: dict, *, calib=None, meta=None,
                        keep_instance_norm_fp32: bool = True, progress: bool = True) -> tuple:
    """The ONNX a strongly typed build (TensorRT 11) needs for `precision`, written to out_path when it differs
    from onnx_path: FP16 weights and compute for fp16, Q/DQ for int8. Returns (path to parse, InstanceNorm
    nodes kept in FP32)."""
    from osnet_edge.deps import require

    if precision == "fp32" or (precision == "int8" and facts["qdq"]):
        return Path(onnx_path), 0
    onnx = require("onnx", "preparing the ONNX for a strongly typed TensorRT build")
    if precision == "fp16":
        if facts["fp16"]:
            return Path(onnx_path), 0
        from osnet_edge.export.onnx_writer import onnx_to_fp16

        proto = onnx_to_fp16(onnx.load(str(onnx_path)))
        pinned = instance_norm_fp32(proto) if keep_instance_norm_fp32 and facts["instance_norm"] else 0
        onnx.save(proto, str(out_path))
        return Path(out_path), pinned
    # int8 without Q/DQ nodes: quantize the FP32 ONNX here (explicit quantization, symmetric INT8)
    if calib is None:
        raise ModelConfigError("TensorRT 11 builds INT8 engines from a Q/DQ ONNX (implicit calibration was "
                               "removed): pass calib=SOURCE to quantize this ONNX first, or give an ONNX exported "
                               "with osnet-export --format onnx --int8")
    from osnet_edge.calibration import load_source
    from osnet_edge.export.quantize_onnx import quantize_onnx_file

    quantize_onnx_file(onnx_path, out_path, load_source(calib, progress=progress), meta)  # a CropSet passes through
    return Path(out_path), 0


# ------------------------------------------------------------------------------------------- calibration

class CalibrationFeeder:
    """Fixed-size preprocessed batches of a calibration set (osnet_edge.calibration CropSet), made by the
    artifact's own preprocessing, so calibration sees exactly what the deployed engine will see."""

    def __init__(self, cropset, meta: ModelMeta, batch_size: int = DEFAULT_CALIB_BATCH):
        self.cropset, self.meta = cropset, meta
        self.batch_size = int(min(batch_size, len(cropset))) if len(cropset) else int(batch_size)
        self.index_batches = calibration_index_batches(len(cropset), self.batch_size)

    def __len__(self):
        return len(self.index_batches)

    def __iter__(self):
        crops = self.cropset.crops
        for idx in self.index_batches:
            yield np.ascontiguousarray(self.cropset.preprocess([crops[i] for i in idx], self.meta))


def load_calibration(calib, meta: ModelMeta, batch_size: int = DEFAULT_CALIB_BATCH, progress: bool = True):
    """A CalibrationFeeder from a --calib SOURCE (folder, market1501:ROOT, mot:..., a CropSet or a crop list)."""
    if calib is None:
        raise ModelConfigError("INT8 TensorRT engines need calibration crops: --calib SOURCE (a folder of person "
                               "crops, market1501:ROOT, mot:VIDEO,BOXES.txt), or a --calib-cache from an earlier build")
    try:
        from osnet_edge.calibration import load_source
    except ImportError:
        from osnet_edge.calibration.sources import load_source
    cropset = load_source(calib, progress=progress)
    cropset.check_size(min(batch_size, DEFAULT_CALIB_BATCH))
    return CalibrationFeeder(cropset, meta, batch_size)


def make_calibrator(trt, cudart, feeder, method: str = "entropy", cache_out=None, cache_in=None,
                    progress: bool = True):
    """An IInt8 calibrator over `feeder` (entropy = IInt8EntropyCalibrator2, TensorRT's recommended one;
    minmax = IInt8MinMaxCalibrator, better when the tails of activations matter). The cache is written to
    cache_out; cache_in (an earlier build's cache) skips calibration altogether."""
    if method not in CALIB_METHODS:
        raise ModelConfigError(f"calibration method must be one of {', '.join(CALIB_METHODS)}, got {method!r}")
    base = trt.IInt8EntropyCalibrator2 if method == "entropy" else trt.IInt8MinMaxCalibrator

    class Calibrator(base):
        def __init__(self):
            base.__init__(self)  # pybind11 trampolines need the base initialised explicitly
            self.method, self.error = method, None
            self._batches = iter(feeder) if feeder is not None else iter(())
            self._nbytes = 0
            self._device = 0
            self._bar = None
            if progress and feeder is not None:
                from tqdm import tqdm

                self._bar = tqdm(total=len(feeder), desc=f"INT8 calibration ({method})", unit="batch",
                                 file=sys.stderr, leave=False)

        def get_batch_size(self):
            return feeder.batch_size if feeder is not None else 1

        def get_batch(self, names, *args):
            # an exception must not cross into TensorRT's C++: keep it and end calibration; raised after the build
            try:
                batch = next(self._batches, None)
                if batch is None:
                    return None
                if batch.nbytes > self._nbytes:
                    self.free()
                    self._device = int(cuda_call(cudart, "cudaMalloc", batch.nbytes))
                    self._nbytes = batch.nbytes
                cuda_call(cudart, "cudaMemcpy", self._device, batch.ctypes.data, batch.nbytes,
                          cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
                if self._bar is not None:
                    self._bar.update(1)
                return [self._device]
            except Exception as exc:
                self.error = exc
                return None

        def read_calibration_cache(self, *args):
            if cache_in is not None and Path(cache_in).is_file():
                return Path(cache_in).read_bytes()
            return None

        def write_calibration_cache(self, cache, *args):
            if cache_out is not None:
                Path(cache_out).write_bytes(bytes(cache))

        def free(self):
            if self._device:
                cudart.cudaFree(self._device)
                self._device, self._nbytes = 0, 0

        def close(self):
            self.free()
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    return Calibrator()


def _progress_monitor(trt):
    """tqdm bars over TensorRT's build phases (IProgressMonitor, TensorRT >= 10); None on older versions."""
    if not hasattr(trt, "IProgressMonitor"):
        return None
    from tqdm import tqdm

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self._bars, self._lock = {}, threading.Lock()  # TensorRT may call from several threads

        def phase_start(self, phase_name, parent_phase, num_steps):
            try:
                with self._lock:
                    depth = len(self._bars)
                    self._bars[phase_name] = tqdm(total=num_steps, desc=f"TensorRT: {phase_name}", position=depth,
                                                  leave=False, file=sys.stderr, unit="step")
            except Exception:
                pass

        def step_complete(self, phase_name, step):
            try:
                with self._lock:
                    bar = self._bars.get(phase_name)
                    if bar is not None:
                        bar.n = step + 1
                        bar.refresh()
            except Exception:
                pass
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            try:
                with self._lock:
                    bar = self._bars.pop(phase_name, None)
                    if bar is not None:
                        bar.close()
            except Exception:
                pass

    return Monitor()


# ------------------------------------------------------------------------------------------- the build

def _network_flags(trt) -> int:
    """No creation flags: explicit batch is the only mode since 10 (EXPLICIT_BATCH is a deprecated no-op
    there and gone in 11), and 11 is strongly typed whatever STRONGLY_TYPED says (a deprecated no-op too).
    10.x stays weakly typed here, so its FP16/INT8 builder flags apply."""
    return 0


def _parse(trt, network, logger, onnx_path):
    parser = trt.OnnxParser(network, logger)
    if hasattr(trt, "OnnxParserFlag") and hasattr(trt.OnnxParserFlag, "NATIVE_INSTANCENORM"):
        # TensorRT's own normalization layer rather than the InstanceNormalization plugin (which lacks
        # dynamic-shape and FP16 robustness on older releases)
        parser.set_flag(trt.OnnxParserFlag.NATIVE_INSTANCENORM)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ArtifactError(f"TensorRT {trt.__version__} could not parse {onnx_path}: " + "; ".join(errors[:5]))
    return parser


def _parser_error(err) -> str:
    """'node /conv1/Conv (Conv): <what>' where the binding offers it, else the error's own text."""
    try:
        name = err.node_name() if hasattr(err, "node_name") else err.node()
        op = err.node_operator() if hasattr(err, "node_operator") else ""
        return f"node {name} ({op}): {err.desc()}" if op else f"node {name}: {err.desc()}"
    except Exception:
        return str(err)


def _pin_fp32(trt, network) -> int:
    """Pin InstanceNorm layers to FP32 compute and output; returns how many were pinned."""
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if is_fp32_pinned_layer(str(layer.type), layer.name):
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                if layer.get_output(j).dtype in (trt.float32, trt.float16):
                    layer.set_output_type(j, trt.float32)
            pinned += 1
    return pinned


def _atomic_write(path: Path, data: bytes):
    from osnet_edge.atomic import write_bytes

    write_bytes(path, data)


def build_engine(onnx_path, engine_path, meta: ModelMeta, *, max_batch: int = 32, opt_batch: int | None = None,
                 min_batch: int = 1, workspace: float | None = None, timing_cache=None, calib=None,
                 calib_method: str = "entropy", calib_batch: int = DEFAULT_CALIB_BATCH, calib_cache=None,
                 fp32_instance_norm: bool = True, device=None, dla_core: int | None = None,
                 opt_level: int | None = None, verbose: bool = False, quiet: bool = False) -> list:
    """Build a TensorRT engine from an ONNX file; writes engine_path, its JSON sidecar (and, for calibrated
    INT8, the calibration cache engine_path + '.calib'). Returns those paths, the engine first.

    meta.precision picks FP32 / FP16 / INT8. For INT8 the ONNX either carries Q/DQ nodes (explicit
    quantization: no calibrator) or calib gives a calibration source: TensorRT 10 calibrates with it
    (implicit), TensorRT 11 quantizes the ONNX with it first (explicit; 11 has no calibrator). On 11 an FP16
    engine is built from an FP16 copy of the ONNX (11 has no FP16 flag).
    workspace: GiB cap of TensorRT's scratch memory (None: TensorRT's default, the device's memory).
    timing_cache: a file, False to disable, None for ~/.cache/osnet_edge/tensorrt/<gpu>_<sm>_trt<ver>.timing.
    calib_cache: an earlier build's calibration cache to reuse (skips calibration: same model only!).
    dla_core: build for a Jetson DLA core (GPU fallback on) instead of the GPU.
    """
    trt, gpu = import_tensorrt("building TensorRT engines", device)
    cudart = import_cudart()
    cuda_call(cudart, "cudaSetDevice", gpu.index)
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    facts = onnx_facts(onnx_path)
    precision = meta.precision
    strong = strongly_typed_only(trt)
    if strong and calib_cache is not None:
        raise ModelConfigError(f"TensorRT {trt.__version__} has no INT8 calibrator, so no calibration cache: drop "
                               f"--calib-cache (INT8 comes from a Q/DQ ONNX, quantized from --calib)")
    with tempfile.TemporaryDirectory(prefix="osnet_trt_") as work:
        typed_pins = 0
        if strong:  # the precision must be in the graph itself
            onnx_path, typed_pins = strongly_typed_onnx(
                onnx_path, Path(work) / f"{precision}.onnx", precision, facts, calib=calib, meta=meta,
                keep_instance_norm_fp32=fp32_instance_norm, progress=not quiet)
            if onnx_path.parent == Path(work):
                facts, calib = onnx_facts(onnx_path), None
        return _build(trt, gpu, cudart, onnx_path, engine_path, meta, facts, strong, typed_pins,
                      max_batch=max_batch, opt_batch=opt_batch, min_batch=min_batch, workspace=workspace,
                      timing_cache=timing_cache, calib=calib, calib_method=calib_method, calib_batch=calib_batch,
                      calib_cache=calib_cache, fp32_instance_norm=fp32_instance_norm, dla_core=dla_core,
                      opt_level=opt_level, verbose=verbose, quiet=quiet)


def _build(trt, gpu, cudart, onnx_path, engine_path, meta, facts, strong, typed_pins, *, max_batch, opt_batch,
           min_batch, workspace, timing_cache, calib, calib_method, calib_batch, calib_cache, fp32_instance_norm,
           dla_core, opt_level, verbose, quiet) -> list:
    precision = meta.precision
    explicit = precision == "int8" and facts["qdq"]
    pin_in = fp32_instance_norm and precision != "fp32" and facts["instance_norm"] and not strong
    flags = builder_flags(precision, explicit, pin_in, strongly_typed=strong)
    if precision == "int8" and not explicit and calib is None and not (calib_cache and Path(calib_cache).is_file()):
        load_calibration(None, meta)  # raises the message that says what to pass

    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = _parse(trt, network, logger, onnx_path)  # kept until the build: it owns the parsed weights
    if network.num_inputs != 1 or network.num_outputs != 1:
        raise ArtifactError(f"{onnx_path}: expected one input and one output, found {network.num_inputs} and "
                            f"{network.num_outputs}")
    inp = network.get_input(0)
    sample_shape = tuple(int(d) for d in inp.shape[1:])
    if any(d < 1 for d in sample_shape):
        raise ArtifactError(f"{onnx_path}: input {inp.name} has dynamic non-batch dims {tuple(inp.shape)}; "
                            f"OSNet engines have a fixed input size")
    profile_dims = profile_shapes(sample_shape, max_batch, opt_batch, min_batch)

    config = builder.create_builder_config()
    if hasattr(trt, "ProfilingVerbosity"):  # per-layer precisions readable by the engine inspector afterwards
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if workspace:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(float(workspace) * (1 << 30)))
    for name in flags["set"]:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in flags["clear"]:
        if hasattr(trt.BuilderFlag, name):
            config.clear_flag(getattr(trt.BuilderFlag, name))
    if opt_level is not None:
        config.builder_optimization_level = int(opt_level)
    if dla_core is not None:
        if precision == "fp32":
            raise ModelConfigError("a DLA engine needs --half or --int8 (DLA has no FP32)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, *profile_dims.values())
    config.add_optimization_profile(profile)
    pinned = _pin_fp32(trt, network) if pin_in and not strong else typed_pins  # 11.x: no ILayer.precision

    written = [engine_path]
    calibrator, calib_info = None, {}
    if not strong and precision == "int8" and not explicit:  # 11.x has no calibrator: never gets here
        feeder = load_calibration(calib, meta, min(int(calib_batch), int(max_batch)), progress=not quiet) \
            if calib is not None else None
        cache_out = engine_path.with_name(engine_path.name + CALIB_SUFFIX)
        calibrator = make_calibrator(trt, cudart, feeder, calib_method, cache_out, calib_cache, progress=not quiet)
        config.int8_calibrator = calibrator
        cb = feeder.batch_size if feeder is not None else 1
        cal_profile = builder.create_optimization_profile()  # calibration runs at one fixed shape
        cal_shape = [cb] + list(sample_shape)
        cal_profile.set_shape(inp.name, cal_shape, cal_shape, cal_shape)
        config.set_calibration_profile(cal_profile)
        calib_info = {"calibrator": calib_method, "calibration_source": feeder.cropset.source if feeder else None,
                      "calibration_crops": len(feeder.cropset) if feeder else None,
                      "calibration_cache_reused": str(calib_cache) if calib_cache else None}
    elif explicit:
        calib_info = {"calibrator": "explicit (Q/DQ ONNX)"}
    calib_info["strongly_typed"] = strong

    cache_file, cache_loaded = None, False
    if timing_cache is not False:
        cache_file = Path(timing_cache) if timing_cache else timing_cache_file(gpu, trt.__version__)
        blob = cache_file.read_bytes() if cache_file.is_file() else b""
        cache = config.create_timing_cache(blob)
        cache_loaded = bool(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)

    monitor = None if quiet else _progress_monitor(trt)
    if monitor is not None:
        config.progress_monitor = monitor
    if not quiet:
        print(f"building TensorRT {trt.__version__} {precision} engine on {gpu.describe()}, batch "
              f"{profile_dims['min'][0]}/{profile_dims['opt'][0]}/{profile_dims['max'][0]}"
              + (f", {pinned} InstanceNorm layers in FP32" if pinned else "")
              + (f", timing cache {cache_file}" + (" (reused)" if cache_loaded else " (new)") if cache_file else ""),
              file=sys.stderr)
    t0 = time.perf_counter()
    try:
        plan = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.close()
    seconds = time.perf_counter() - t0
    del parser
    if calibrator is not None and calibrator.error is not None:
        raise calibrator.error
    if plan is None:
        raise ArtifactError(f"TensorRT {trt.__version__} failed to build the {precision} engine from {onnx_path} "
                            f"on {gpu.describe()} (its log above says why; --workspace may be too small)")
    _atomic_write(engine_path, bytes(plan))
    if cache_file is not None:
        _atomic_write(cache_file, bytes(config.get_timing_cache().serialize()))
    if calibrator is not None and engine_path.with_name(engine_path.name + CALIB_SUFFIX).is_file():
        written.append(engine_path.with_name(engine_path.name + CALIB_SUFFIX))

    meta = replace(meta, extra=dict(meta.extra or {}))
    meta.extra.update(engine_facts(
        trt.__version__, gpu, {"input": inp.name, **profile_dims},
        builder_flags=flags["set"], fp32_layers=pinned, workspace_gib=workspace, dla_core=dla_core,
        build_seconds=round(seconds, 1), **calib_info))
    written.insert(1, write_sidecar(engine_path, meta))
    return written


# ------------------------------------------------------------------------------------------- export_model writers

_BUILD_OPTIONS = ("opt_batch", "min_batch", "workspace", "timing_cache", "calib_method", "calib_batch",
                  "calib_cache", "fp32_instance_norm", "device", "dla_core", "opt_level", "verbose", "quiet")


def _build_kwargs(options: dict) -> dict:
    return {k: options[k] for k in _BUILD_OPTIONS if options.get(k) is not None}


def write_trt(model, tmp_path, meta: ModelMeta, *, opset: int = 18, max_batch: int = 32, calib=None,
              qdq: bool = False, **options) -> list:
    """The 'trt' writer (FP32 / FP16; INT8 goes through write_trt_int8): ONNX first, then the engine.

    The intermediate ONNX is FP32 whatever the precision (TensorRT picks FP16/INT8 kernels itself) and is
    deleted after the build: its metadata would claim the engine's precision.
    """
    # the GPU check before the ONNX export: on a CPU box the user gets the one line at once
    trt, _gpu = import_tensorrt("TensorRT export", options.get("device"))
    qdq = qdq or (meta.precision == "int8" and strongly_typed_only(trt))  # 11.x: Q/DQ is the only INT8
    tmp_path = Path(tmp_path)
    onnx_tmp = tmp_path.with_name(tmp_path.stem + ".src.onnx")  # own stem: its by-products are swept below
    try:
        if meta.precision == "int8" and qdq:
            from osnet_edge.export.api import INT8_WRITERS

            if "onnx" not in INT8_WRITERS:
                raise ModelConfigError("--qdq needs the INT8 ONNX (Q/DQ) writer, which this build lacks; "
                                       "drop --qdq to calibrate in TensorRT instead")
            passthrough = {k: v for k, v in options.items() if k not in _BUILD_OPTIONS + ("half", "int8")}
            if options.get("calib_method") in ("minmax", "entropy"):  # the same names in quantize_onnx
                passthrough["method"] = options["calib_method"]
            INT8_WRITERS["onnx"](model, onnx_tmp, replace(meta), opset=opset, calib=calib, max_batch=max_batch,
                                 half=False, int8=True, **passthrough)
            calib = None  # the scales are in the graph
        else:
            from osnet_edge.export.onnx_writer import export_onnx

            export_onnx(model, onnx_tmp, opset=opset, half=False, meta=meta, exporter=options.get("onnx_exporter"))
        return build_engine(onnx_tmp, tmp_path, meta, max_batch=max_batch, calib=calib, **_build_kwargs(options))
    finally:
        for p in tmp_path.parent.glob(tmp_path.stem + ".src*"):
            p.unlink(missing_ok=True)


def write_trt_int8(model, tmp_path, meta: ModelMeta, *, calib=None, calib_size: int | None = None,
                   holdout_size: int | None = None, seed: int = 0, min_cosine: float | None = None,
                   min_top1: float | None = None, quiet: bool = False, **options) -> list:
    """The INT8 'trt' writer: calibration crops and held-out crops split from one --calib source (never
    sharing a crop), the engine calibrated on the first, then the INT8 issue's fidelity report on the second
    (JSON beside the engine). A failing report refuses the engine (FidelityError; nothing is kept)."""
    if options.get("activations", "symmetric") != "symmetric":
        raise ModelConfigError("TensorRT's explicit quantization takes symmetric INT8 activations only; "
                               "drop --int8-activations")
    trt, _gpu = import_tensorrt("TensorRT INT8 export", options.get("device"))
    explicit = bool(options.get("qdq")) or strongly_typed_only(trt)
    from osnet_edge.calibration import sources
    from osnet_edge.export import fidelity as fid

    if calib is None:
        load_calibration(None, meta)  # the message that says what to pass
    split = sources.calibration_split(calib, n_calib=calib_size or sources.DEFAULT_SIZE,
                                      n_holdout=holdout_size or sources.DEFAULT_SIZE, seed=seed, progress=not quiet)
    if not quiet:
        print(f"INT8: calibrating on {len(split.calib)} crops from {split.calib.source}"
              + (" (GENERATED crops: demo only)" if split.calib.generated else "")
              + f"; {len(split.held_out)} held-out crops for the fidelity report", file=sys.stderr)
    files = write_trt(model, tmp_path, meta, calib=split.calib, quiet=quiet, **options)
    engine = Path(files[0])

    def make_report():
        layers = int8_layer_summary(engine)
        report = fid.fidelity_report(
            model, str(engine), split.held_out, split.query, calib=split.calib,
            min_cosine=fid.DEFAULT_MIN_COSINE if min_cosine is None else min_cosine,
            min_top1=fid.DEFAULT_MIN_TOP1 if min_top1 is None else min_top1, artifact=engine.name,
            calibration={"source": split.calib.source, "crops": len(split.calib), "generated": split.calib.generated,
                         "method": "explicit Q/DQ" if explicit else
                         f"TensorRT {options.get('calib_method') or 'entropy'} calibrator"},
            extra=layers)
        return report

    return fid.gate_artifact(files, engine, make_report, quiet=quiet)


def int8_layer_summary(engine_path) -> dict:
    """How much of the engine really runs in INT8, from TensorRT's engine inspector (the build sets detailed
    profiling verbosity): convolutions whose input is INT8, out of all convolutions. Fidelity bought by not
    quantizing shows up here. Best effort: {} when the inspector's format is not understood."""
    import json

    try:
        trt, _gpu = import_tensorrt("inspecting TensorRT engines")
        runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
        engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
        layers = [layer for layer in info.get("Layers", []) if isinstance(layer, dict)]
        convs = [layer for layer in layers if "conv" in str(layer.get("LayerType", "")).lower()]

        def dtype(layer):
            ins = layer.get("Inputs") or [{}]
            return str(ins[0].get("Format/Datatype", "")).lower()

        int8 = [layer for layer in convs if "int8" in dtype(layer)]
        if not convs:
            return {"inspector_error": "no convolution layers in the inspector's output"}
        return {"conv_layers": len(convs), "int8_conv_layers": len(int8),
                "int8_conv_fraction": round(len(int8) / len(convs), 4),
                "fp16_conv_layers": sum("half" in dtype(layer) or "fp16" in dtype(layer) for layer in convs)}
    except Exception as exc:  # a report without this line beats no engine (the key stays absent, not None)
        return {"inspector_error": f"{type(exc).__name__}: {exc}"}


def engine_from_onnx(onnx_path, output=None, *, half: bool = False, int8: bool = False, calib=None,
                     max_batch: int = 32, verify: bool = True, batch_sizes=(1, 31), quiet: bool = False,
                     **options) -> Path:
    """Build an engine from an ONNX exported by osnet-export (its metadata travels into the sidecar), without
    torch: the Jetson path (export the ONNX on a desktop, build the engine on the device it will run on).

    verify compares the engine with the same ONNX under ONNX Runtime (CPU) on generated crops, with the
    precision's parity threshold; the engine is written to a temporary name and renamed only when it passes.
    An ONNX with Q/DQ nodes builds as explicit INT8 (int8=True, no calib needed).
    """
    import secrets

    from osnet_edge.export.api import PARITY_THRESHOLDS, VerificationError
    from osnet_edge.export.onnx_writer import read_onnx_meta

    import_tensorrt("TensorRT engines", options.get("device"))
    onnx_path = Path(onnx_path)
    meta = read_onnx_meta(onnx_path)
    if meta is None:
        raise ArtifactError(f"{onnx_path} carries no osnet-edge metadata; export it with osnet-export --format onnx")
    if half and int8:
        raise ModelConfigError("choose one of --half (FP16) and --int8")
    meta = replace(meta, precision="int8" if int8 else "fp16" if half else "fp32")
    out = Path(output) if output else onnx_path.with_name(f"{meta.stem()}.engine")
    if out.is_dir():
        out = out / f"{meta.stem()}.engine"
    tmp = out.with_name(f".{out.stem}.{secrets.token_hex(4)}.partial{out.suffix}")
    written = []
    try:
        written = build_engine(onnx_path, tmp, meta, max_batch=max_batch, calib=calib, quiet=quiet,
                               **_build_kwargs(options))
        if verify:
            from osnet_edge.runtime.embedder import Embedder
            from osnet_edge.synthetic import synthetic_crops

            need = PARITY_THRESHOLDS[meta.precision]
            with Embedder(str(onnx_path), device="cpu") as ref, Embedder(str(tmp)) as eng:
                for b in batch_sizes:
                    b = min(int(b), max_batch)
                    crops = list(synthetic_crops(b, seed=b))
                    cos = float(np.min(np.sum(ref.embed(crops) * eng.embed(crops), axis=1)))
                    if cos < need:
                        raise VerificationError(f"{meta.precision} engine from {onnx_path} failed verification at "
                                                f"batch {b}: min cosine {cos:.6f} < {need} against ONNX Runtime. "
                                                f"Nothing was written to {out}")
        finals = []
        for p in written:
            final = out.with_name(out.name + p.name[len(tmp.name):])
            os.replace(p, final)
            finals.append(final)
    except BaseException:
        for p in written + [tmp]:
            Path(p).unlink(missing_ok=True)
        raise
    return finals[0]


# FP32 input: the uint8_nhwc graph starts with a Transpose on uint8, which TensorRT's uint8 I/O rules do not
# cover; the host-side normalisation is the one preprocessing anyway
write_trt.default_input_format = "float_nchw"
write_trt_int8.default_input_format = "float_nchw"


def preflight(device=None, **_options):
    """What the CLI can call before loading torch and the model: on a CPU box, the one-line GPU error at once."""
    import_tensorrt("TensorRT export", device)


write_trt.preflight = write_trt_int8.preflight = preflight


def verify_batches(max_batch: int) -> tuple:
    """Batch 1 and the largest odd batch the profile serves in one call (an engine's max is its limit)."""
    near = max_batch if max_batch % 2 else max_batch - 1
    return (1, max(1, near))


write_trt.verify_batches = write_trt_int8.verify_batches = verify_batches


def register():
    from osnet_edge.export.api import register_writer

    register_writer("trt", write_trt, ".engine")
    register_writer("trt", write_trt_int8, int8=True)


register()
