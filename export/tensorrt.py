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

The job is split by module: tensorrt_typed (11.x strongly typed ONNX), tensorrt_calib (10.x calibration),
tensorrt_build (network, builder flags, precision pins, the build), tensorrt_onnx (engine from an ONNX, no
torch), and here the export_model writers. build_engine and engine_from_onnx are importable from here.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from osnet_edge.errors import ModelConfigError
from osnet_edge.export.tensorrt_build import BUILD_OPTIONS, build_engine, build_kwargs
from osnet_edge.export.tensorrt_calib import load_calibration
from osnet_edge.export.tensorrt_onnx import engine_from_onnx
from osnet_edge.export.tensorrt_typed import strongly_typed_only
from osnet_edge.metadata import ModelMeta
from osnet_edge.runtime.tensorrt_common import import_tensorrt

__all__ = ["build_engine", "engine_from_onnx", "write_trt", "write_trt_int8", "int8_layer_summary", "register"]


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
            passthrough = {k: v for k, v in options.items() if k not in BUILD_OPTIONS + ("half", "int8")}
            if options.get("calib_method") in ("minmax", "entropy"):  # the same names in quantize_onnx
                passthrough["method"] = options["calib_method"]
            INT8_WRITERS["onnx"](model, onnx_tmp, replace(meta), opset=opset, calib=calib, max_batch=max_batch,
                                 half=False, int8=True, **passthrough)
            calib = None  # the scales are in the graph
        else:
            from osnet_edge.export.onnx_writer import export_onnx

            export_onnx(model, onnx_tmp, opset=opset, half=False, meta=meta, exporter=options.get("onnx_exporter"))
        return build_engine(onnx_tmp, tmp_path, meta, max_batch=max_batch, calib=calib, **build_kwargs(options))
    finally:
        for p in tmp_path.parent.glob(tmp_path.stem + ".src*"):
            p.unlink(missing_ok=True)


def write_trt_int8(model, tmp_path, meta: ModelMeta, *, calib=None, calib_size: int | None = None,
                   holdout_size: int | None = None, seed: int = 0, min_cosine: float | None = None,
                   min_top1: float | None = None, quiet: bool = False, **options) -> list:
    """The INT8 'trt' writer: calibration crops and held-out crops split from one --calib source (never
    sharing a crop), the engine calibrated on the first, then the INT8 issue's fidelity report on the second
    (JSON beside the engine). A failing report refuses the engine (FidelityError; nothing is kept)."""
    from osnet_edge.export.quantize_onnx import TENSORRT_SCHEMES

    if options.get("activations", "shifted") not in TENSORRT_SCHEMES:
        raise ModelConfigError("TensorRT's explicit quantization takes INT8 activations with zero point 0 only: "
                               f"--int8-activations {' or '.join(TENSORRT_SCHEMES)}")
    trt, _gpu = import_tensorrt("TensorRT INT8 export", options.get("device"))
    explicit = bool(options.get("qdq")) or strongly_typed_only(trt)
    from osnet_edge.calibration import sources
    from osnet_edge.export import fidelity as fid
    from functools import partial

    from osnet_edge.export import weight_bound
    from osnet_edge.export.gates import gate_options

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
            min_top1=fid.DEFAULT_MIN_TOP1 if min_top1 is None else min_top1, gates=gate_options(options),
            artifact=engine.name,
            calibration={"source": split.calib.source, "crops": len(split.calib), "generated": split.calib.generated,
                         "method": "explicit Q/DQ" if explicit else
                         f"TensorRT {options.get('calib_method') or 'entropy'} calibrator"},
            extra=layers)
        return report

    return fid.gate_artifact(files, engine, make_report, quiet=quiet,
                             bound=partial(weight_bound.measure, model, split))


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
