"""What an OpenVINO IR holds and runs: its embedding head, the convolutions NNCF quantized, and how many
convolutions the CPU plugin really executes in INT8 (the 70% rule of the INT8 recipe in quantize_openvino.py)."""
from __future__ import annotations

from pathlib import Path

from osnet_edge.deps import require
from osnet_edge.errors import ModelConfigError
from osnet_edge.runtime.openvino_backend import precision_config


def head_ops(ov_model) -> list:
    """Friendly names of the embedding head's ops: the MatMul of fc (and any MatMul after global pooling)."""
    return [op.get_friendly_name() for op in ov_model.get_ordered_ops() if op.get_type_name() == "MatMul"]


# --------------------------------------------------------------------------- what runs in INT8


def int8_conv_fraction(ov_model, device: str = "CPU") -> dict:
    """How many convolutions execute with INT8 inputs in the compiled model (the plugin's own runtime graph).

    Counts the runtime graph's Convolution nodes by runtimePrecision (U8/I8 = quantized); this is what the
    CPU plugin really runs, after fusing FakeQuantize, so fidelity bought by not quantizing shows up here.
    """
    ov = require("openvino", "OpenVINO INT8 inspection")
    core = ov.Core()
    model = core.read_model(str(ov_model)) if isinstance(ov_model, (str, Path)) else ov_model
    rt = core.compile_model(model, device, precision_config(core, device, "int8")).get_runtime_model()
    total = int8 = 0
    for op in rt.get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else ""
        if layer.lower() not in ("convolution", "groupconvolution"):
            continue
        total += 1
        prec = info["runtimePrecision"].astype(str).lower() if "runtimePrecision" in info else ""
        if prec in ("u8", "i8"):
            int8 += 1
    return {"convolutions": total, "int8_convolutions": int8, "fraction": int8 / total if total else 0.0}


# --------------------------------------------------------------------------- mixed precision

CONV_TYPES = ("Convolution", "GroupConvolution")
# ops that carry an INT8 tensor through unchanged: a conv behind one of them still gets INT8 input
_INT8_PASS = ("MaxPool", "AvgPool", "Convert", "Reshape", "Transpose")


def quantized_convs(int8_model) -> list:
    """Friendly names, in network order, of the convolutions whose input is quantized (a FakeQuantize feeds
    them, directly or through a pooling/reshape): the only ones that keep_fp32 can return to float. The
    channel gates' 1x1 convolutions on pooled vectors already run in float and are not among them."""
    out = []
    for op in int8_model.get_ordered_ops():
        if op.get_type_name() not in CONV_TYPES:
            continue
        n = op.input_value(0).get_node()
        while n.get_type_name() in _INT8_PASS and n.get_input_size():
            n = n.input_value(0).get_node()
        if n.get_type_name() == "FakeQuantize":
            out.append(op.get_friendly_name())
    return out


def check_layer_names(ov_model, names, what: str = "keep_fp32") -> list:
    """The names, each checked to be an op of the FP32 IR (NNCF would silently ignore an unknown one)."""
    ops = {op.get_friendly_name(): op.get_type_name() for op in ov_model.get_ordered_ops()}
    for n in names:
        if n not in ops:
            conv = next((k for k, t in ops.items() if t in CONV_TYPES and "/conv3/" in k), None)
            raise ModelConfigError(f"{what}: no layer named {n!r} in the FP32 IR; give IR op names such as "
                                   f"{conv or next(iter(ops))!r} (the fidelity report's worst_layers lists them)")
    return list(names)
