"""Portable ONNX INT8: static QDQ quantization with onnxruntime.quantization, and its fidelity report.

Per-channel symmetric INT8 weights; activations calibrated with a zero point (UINT8: a post-ReLU tensor keeps
all 256 levels) and, by default, rewritten into INT8 with zero point 0 by a shift folded into the next
convolution's bias (export/qdq_shift.py, exact): the QDQ form TensorRT's explicit-quantization path accepts,
which ONNX Runtime runs on CPU too. Plain symmetric INT8 activations (`activations="symmetric"`) spend half
their levels on negative values that post-ReLU tensors never take; on osnet_x0_25 triplet models from torchreid's
code and osnet-train that kept decisive top-1 agreement at 79-90% where the shifted form reaches OpenVINO's level
(benchmarks/results/int8_real/NOTES.md). `activations="asymmetric"` keeps the UINT8 graph (ONNX Runtime only).
The embedding head (fc Gemm/MatMul) stays FP32 for the reason given in quantize_openvino.py: after re-ID
training, its BatchNorm1d amplifies quantization error into the sparse post-ReLU embedding. Ranges are min/max
over the calibration crops (CalibrationMethod.MinMax), as the OpenVINO recipe does; 'percentile' is available.
The graph is first run through onnxruntime's quant_pre_process (shape inference + optimisation), as its
documentation recommends.
"""
from __future__ import annotations

import sys
import tempfile
from functools import partial
from pathlib import Path


from osnet_edge.deps import require
from osnet_edge.errors import ModelConfigError
from osnet_edge.metadata import ModelMeta
from osnet_edge.export import fidelity as fid
from osnet_edge.export import weight_bound
from osnet_edge.export import gates as gt
from osnet_edge.export.quantize_openvino import NO_CALIB, _with_precision, equalized, preflight

CALIB_METHODS = ("minmax", "percentile", "entropy")
# shifted: asymmetric ranges carried in INT8 with zero point 0 (export/qdq_shift.py), TensorRT's form with
# UINT8's 256 levels after ReLU; symmetric: INT8 zero point 0 over each range (128 levels after ReLU);
# asymmetric: UINT8 with a zero point (ONNX Runtime only)
ACTIVATION_SCHEMES = ("shifted", "symmetric", "asymmetric")
TENSORRT_SCHEMES = ("shifted", "symmetric")  # the zero-point-0 forms TensorRT's explicit quantization takes


def head_nodes(proto) -> list:
    """Names of the embedding head's nodes: everything from the last global pooling on (fc Gemm, BatchNorm1d,
    ReLU). ONNX graphs are topologically sorted, so that is a suffix of the node list."""
    nodes = list(proto.graph.node)
    pools = [i for i, n in enumerate(nodes) if n.op_type in ("GlobalAveragePool", "ReduceMean")]
    start = pools[-1] + 1 if pools else next((i for i, n in enumerate(nodes) if n.op_type in ("Gemm", "MatMul")),
                                             len(nodes))
    return [n.name for n in nodes[start:] if n.name]


def _check_activations(activations: str) -> str:
    if activations not in ACTIVATION_SCHEMES:
        raise ModelConfigError(f"unknown INT8 activation scheme {activations!r}; choose one of "
                               f"{', '.join(ACTIVATION_SCHEMES)}")
    return activations


class _Reader:
    """onnxruntime CalibrationDataReader over a CropSet, batches made by the one preprocessing."""

    def __init__(self, calib, meta: ModelMeta, input_name: str, batch_size: int = 8):
        self._it = iter(calib.batches(meta, batch_size))
        self.input_name = input_name

    def get_next(self):
        b = next(self._it, None)
        return None if b is None else {self.input_name: b}

    def rewind(self):  # pragma: no cover - not used by MinMax
        raise NotImplementedError


def quantize_onnx_file(fp32_path, out_path, calib, meta: ModelMeta, *, method: str = "minmax",
                       keep_fp32=(), keep_head: bool = True, activations: str = "shifted") -> Path:
    """Static QDQ INT8 of an FP32 ONNX file. calib: a CropSet (osnet_edge.calibration).

    activations: 'shifted' (asymmetric ranges, written as INT8 with zero point 0 plus a shift folded into the
    next convolution's bias: TensorRT's explicit quantization with UINT8's levels), 'symmetric' (INT8, zero
    point 0 over each range) or 'asymmetric' (UINT8 with a zero point: ONNX Runtime's U8S8 CPU kernels).
    """
    onnx = require("onnx", "ONNX INT8 export")
    require("onnxruntime", "ONNX INT8 export")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    symmetric = _check_activations(activations) == "symmetric"  # shifted calibrates UINT8, then is rewritten
    out_path = Path(out_path)
    if method not in CALIB_METHODS:
        raise ModelConfigError(f"unknown calibration method {method!r}; choose one of {', '.join(CALIB_METHODS)}")
    with tempfile.TemporaryDirectory(prefix="osnet_qdq_") as d:
        pre = Path(d) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
        proto = onnx.load(str(pre))
        exclude = list(keep_fp32) + (head_nodes(proto) if keep_head else [])
        input_name = proto.graph.input[0].name
        # onnxruntime's histogram calibrators stack each tensor over batches: a short last batch breaks them
        reader = _Reader(calib, meta, input_name, batch_size=8 if method == "minmax" else 1)
        quantize_static(
            str(pre), str(out_path), reader, quant_format=QuantFormat.QDQ,
            per_channel=True, activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude or None,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[method],
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                           # TensorRT wants a Q/DQ pair in front of every quantized input, shared or not
                           "DedicatedQDQPair": False, "CalibMovingAverage": False})
    if activations == "shifted":
        zero_point_free(out_path)
    return out_path


def zero_point_free(path) -> dict:
    """Rewrite a Q/DQ ONNX's UINT8 activation pairs into TensorRT's INT8 zero-point-0 form, in place."""
    onnx = require("onnx", "ONNX INT8 export")
    from osnet_edge.export.qdq_shift import to_zero_point_free

    proto = onnx.load(str(path))
    counts = to_zero_point_free(proto)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return counts


def int8_conv_fraction(path) -> dict:
    """Convolutions whose data input comes from a DequantizeLinear (they run in INT8 after QDQ fusion)."""
    onnx = require("onnx", "ONNX INT8 inspection")
    g = onnx.load(str(path)).graph
    producer = {o: n for n in g.node for o in n.output}
    convs = [n for n in g.node if n.op_type == "Conv"]
    q = sum(1 for n in convs if producer.get(n.input[0]) is not None and producer[n.input[0]].op_type ==
            "DequantizeLinear")
    return {"convolutions": len(convs), "int8_convolutions": q, "fraction": q / len(convs) if convs else 0.0}


def write_onnx_int8(model, tmp_path, meta: ModelMeta, *, calib=None, opset: int = 18, method: str = "minmax",
                    calib_size: int | None = None, holdout_size: int | None = None, seed: int = 0, keep_fp32=(),
                    holdout=None, equalize: bool = False, activations: str = "shifted", quiet: bool = False,
                    max_drop=None, qat: bool = False, qat_epochs: int | None = None, measure_speed: bool = True,
                    **_options) -> list:
    """INT8 writer for export_model(..., fmt='onnx', int8=True): QDQ ONNX + fidelity JSON at the temporary stem.

    qat: when the post-training result misses the gates, fine-tune with NNCF (export/qat.py) and write its Q/DQ
    graph instead, in the zero-point-0 form `activations` names (TensorRT's explicit quantization; post-ReLU
    quantizers stay unsigned in training and are shifted on export when 'shifted').
    Gate thresholds (export/gates.py) come as keyword options; measure_speed: time INT8 against the FP32 ONNX
    under ONNX Runtime on this CPU (int8_speed.py) for the report."""
    from osnet_edge.calibration import sources
    from osnet_edge.export.onnx_writer import _set_metadata, export_onnx

    onnx = require("onnx", "ONNX INT8 export")
    if calib is None:
        raise ModelConfigError(NO_CALIB)
    if max_drop is not None:
        raise ModelConfigError("--max-drop (accuracy-controlled quantization) is an NNCF feature: use "
                               "--format openvino with it; ONNX INT8 is refused by its fidelity gates instead")
    _check_activations(activations)  # before any calibration work
    meta = _with_precision(meta, "int8")
    split = sources.calibration_split(calib, n_calib=calib_size or sources.DEFAULT_SIZE,
                                      n_holdout=holdout_size or sources.DEFAULT_SIZE, seed=seed, holdout=holdout)
    split.calib.check_size(1)
    if not quiet:
        print(f"INT8 (ONNX QDQ): calibrating on {len(split.calib)} crops from {split.calib.source}"
              + (" (GENERATED crops: demo only)" if split.calib.generated else ""), file=sys.stderr)
    tmp_path = Path(tmp_path)
    gates = gt.gate_options(_options)
    # the FP32 ONNX lives until the report is made: the speed-up is measured against it
    with tempfile.TemporaryDirectory(prefix="osnet_int8_") as d:
        source_model, eq = equalized(model, split.calib, equalize)
        fp32 = export_onnx(source_model, Path(d) / "fp32.onnx", opset=opset, meta=_with_precision(meta, "fp32"),
                           exporter=_options.get("onnx_exporter"))
        quantize_onnx_file(fp32, tmp_path, split.calib, meta, method=method, keep_fp32=keep_fp32,
                           activations=activations)
        proto = onnx.load(str(tmp_path))
        _set_metadata(proto, meta)
        onnx.save(proto, str(tmp_path))

        def speed():
            if not measure_speed:
                return {}
            from osnet_edge.export import int8_speed

            batch = next(split.held_out.batches(meta, int8_speed.BATCH))
            return {"speedup": int8_speed.measure(*int8_speed.onnx_runners(fp32, tmp_path), batch)}

        def make_report():
            conv = int8_conv_fraction(tmp_path)
            return fid.fidelity_report(model, str(tmp_path), split.held_out, split.query, calib=split.calib,
                                       gates=gates, artifact=fid.final_name(tmp_path),
                                       calibration={"source": split.calib.source, "crops": len(split.calib),
                                                    "generated": split.calib.generated, "method": f"onnxruntime "
                                                    f"quantize_static QDQ, per-channel symmetric weights, "
                                                    f"{activations} activations, {method}",
                                                    "activations": activations, **eq},
                                       extra={"int8_conv_fraction": conv["fraction"], **conv, **speed()})

        bound = partial(weight_bound.measure, model, split)  # on a refusal only: can 8-bit weights hold at all?

        if qat:
            report = make_report()
            if not report.passed:
                report = _finetuned(model, meta, split, tmp_path, report, qat_epochs, opset, quiet, activations,
                                    lambda: fid.fidelity_report(model, str(tmp_path), split.held_out, split.query,
                                                                calib=split.calib, gates=gates,
                                                                artifact=fid.final_name(tmp_path), extra=speed()))
            return fid.gate_artifact([tmp_path], tmp_path, lambda: report, quiet=quiet, bound=bound)
        return fid.gate_artifact([tmp_path], tmp_path, make_report, quiet=quiet, bound=bound)


def _finetuned(model, meta, split, path, ptq_report, epochs, opset, quiet, activations, report_fn):
    """PTQ missed the gates: NNCF quantization-aware fine-tuning (export/qat.py), its Q/DQ graph written over
    `path` in the activation form asked for; returns its report (PTQ numbers under calibration['ptq'])."""
    from osnet_edge.export import qat as qat_mod

    if not quiet:
        print(ptq_report.summary(), file=sys.stderr)
        print(f"post-training INT8 missed the gates; quantization-aware fine-tuning on {len(split.calib)} "
              f"calibration crops ({epochs or qat_mod.DEFAULT_EPOCHS} epochs)", file=sys.stderr)
    # signed activations train what a symmetric graph runs; unsigned post-ReLU ones what a shifted or UINT8 one runs
    res = qat_mod.quantization_aware_finetune(model, split.calib, meta, epochs=epochs or qat_mod.DEFAULT_EPOCHS,
                                              signed_activations=activations == "symmetric", quiet=quiet)
    qat_mod.write_onnx_qdq(res.model, path, meta, opset=opset)
    if activations == "shifted":
        zero_point_free(path)
    report = report_fn()
    conv = int8_conv_fraction(path)
    report.calibration = {**ptq_report.calibration, **res.facts(),
                          "method": "NNCF quantization-aware fine-tuning, Q/DQ: per-channel symmetric INT8 "
                                    f"weights, {activations} activations",
                          "ptq": {k: getattr(ptq_report, k) for k in ("cosine_mean", "cosine_min", "top1_agreement",
                                                                       "top5_agreement", "retrieval")}
                          | {"identity": ptq_report.extra.get("top1_identity_agreement"),
                             "failures": ptq_report.failures}}
    report.extra.update({"int8_conv_fraction": conv["fraction"], **conv})
    if not quiet:
        print(f"INT8 fine-tuning took {res.seconds / 60:.1f} min on {res.threads} threads", file=sys.stderr)
    return report


write_onnx_int8.default_input_format = "float_nchw"
write_onnx_int8.preflight = preflight  # INT8 without --calib is refused before the model is built


def register() -> None:
    from osnet_edge.export.api import register_writer

    register_writer("onnx", write_onnx_int8, int8=True)


register()
