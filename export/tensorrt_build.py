"""ONNX -> TensorRT engine: the network, its builder configuration and precision pins, the build itself.

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

from osnet_edge.errors import ArtifactError, ModelConfigError
from osnet_edge.export.tensorrt_calib import CALIB_SUFFIX, DEFAULT_CALIB_BATCH, load_calibration, make_calibrator
from osnet_edge.export.tensorrt_typed import onnx_facts, strongly_typed_onnx, strongly_typed_only
from osnet_edge.metadata import ModelMeta
from osnet_edge.runtime.tensorrt_common import (GPU, cuda_call, engine_facts, import_cudart, import_tensorrt,
                                                write_sidecar)


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


def default_cache_dir() -> Path:
    root = os.environ.get("OSNET_EDGE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "osnet_edge")
    return Path(root) / "tensorrt"


def timing_cache_file(gpu: GPU, trt_version: str, directory=None) -> Path:
    """One timing cache per GPU model and TensorRT version: entries are only valid for both."""
    slug = "".join(c if c.isalnum() else "-" for c in gpu.name).strip("-").lower() or "gpu"
    return Path(directory or default_cache_dir()) / f"{slug}_sm{gpu.major}{gpu.minor}_trt{trt_version}.timing"


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


# the options of export_model / engine_from_onnx that are build_engine's own
BUILD_OPTIONS = ("opt_batch", "min_batch", "workspace", "timing_cache", "calib_method", "calib_batch",
                 "calib_cache", "fp32_instance_norm", "device", "dla_core", "opt_level", "verbose", "quiet")


def build_kwargs(options: dict) -> dict:
    return {k: options[k] for k in BUILD_OPTIONS if options.get(k) is not None}
