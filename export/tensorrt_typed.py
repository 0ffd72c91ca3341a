"""TensorRT 11.x builds strongly typed networks only: the precision is in the ONNX graph itself.

11.x removed weak typing (no FP16/INT8 BuilderFlag, no ILayer.precision, no IInt8*Calibrator), so an FP16
engine is built from an FP16 copy of the ONNX (InstanceNorm kept FP32 by Casts in the graph) and an INT8 engine
from a Q/DQ ONNX (explicit quantization, osnet_edge.export.quantize_onnx). What the build needs to know about the
ONNX graph (onnx_facts) lives here too.
"""
from __future__ import annotations

from pathlib import Path

from osnet_edge.errors import ModelConfigError


def strongly_typed_only(trt) -> bool:
    """True for TensorRT 11+: weak typing is gone (no FP16/INT8 builder flags, no per-layer precision, no INT8
    calibrators); every network is strongly typed, so the ONNX's own types are the engine's precision."""
    return not hasattr(trt.BuilderFlag, "FP16")


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
    # int8 without Q/DQ nodes: quantize the FP32 ONNX here (explicit quantization, INT8 with zero point 0)
    if calib is None:
        raise ModelConfigError("TensorRT 11 builds INT8 engines from a Q/DQ ONNX (implicit calibration was "
                               "removed): pass calib=SOURCE to quantize this ONNX first, or give an ONNX exported "
                               "with osnet-export --format onnx --int8")
    from osnet_edge.calibration import load_source
    from osnet_edge.export.quantize_onnx import quantize_onnx_file

    quantize_onnx_file(onnx_path, out_path, load_source(calib, progress=progress), meta)  # a CropSet passes through
    return Path(out_path), 0
