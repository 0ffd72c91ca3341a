"""ONNX: dynamic batch, opset >= 17, onnx.checker, onnxslim, metadata in metadata_props."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

from osnet_edge.deps import require
from osnet_edge.errors import ArtifactError, ModelConfigError
from osnet_edge.metadata import META_KEY, ModelMeta

MIN_OPSET = 17


def export_onnx(model, path, *, opset: int = 17, half: bool = False, meta: ModelMeta | None = None,
                input_format: str | None = None, simplify: bool = True, **_ignored) -> Path:
    """Write `model` as ONNX at `path` (no verification, no temporary file: export_model does those).

    Dynamic batch axis; FP32 I/O even with half=True (weights and compute in FP16, casts at the edges) so the
    Embedder feeds every artifact the same arrays. The TensorRT writer calls this as its first step.
    """
    onnx = require("onnx", "ONNX export")
    torch = require("torch", "ONNX export")
    from osnet_edge.checkpoint import model_meta
    from osnet_edge.export.graph import INPUT_NAME, OUTPUT_NAME, example_input, traceable

    if int(opset) < MIN_OPSET:
        raise ModelConfigError(f"--opset {opset}: OSNet exports need opset >= {MIN_OPSET}")
    if meta is None:
        meta = model_meta(model, precision="fp16" if half else "fp32")
        if input_format:
            meta.input_format = input_format
    module = traceable(model, meta)
    x = example_input(meta)
    in_name = INPUT_NAME[meta.input_format]
    buf = io.BytesIO()
    was_training = model.training
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the TorchScript-based exporter: proven on OSNet, needs no onnxscript; its deprecation notice
            # and the tracer's note on `if return_featuremaps` (a Python flag, constant by design) are noise here
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=int(opset), input_names=[in_name],
                              output_names=[OUTPUT_NAME], do_constant_folding=True,
                              dynamic_axes={in_name: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    finally:
        model.train(was_training)
    proto = onnx.load_from_string(buf.getvalue())
    if simplify:
        proto = _slim(proto)
    if half:
        proto = _to_fp16(proto)
    _set_metadata(proto, meta)
    onnx.checker.check_model(proto, full_check=True)
    path = Path(path)
    onnx.save(proto, str(path))
    return path


def _slim(proto):
    """Fold constants and fuse what ORT/TensorRT would otherwise re-discover (onnxslim, maintained)."""
    onnxslim = require("onnxslim", "ONNX graph simplification")
    try:
        return onnxslim.slim(proto)
    except Exception as exc:  # a simplifier bug must not cost the user the export: keep the traced graph
        warnings.warn(f"onnxslim failed ({type(exc).__name__}: {exc}); keeping the unsimplified graph")
        return proto


def _to_fp16(proto):
    """FP16 weights and compute, FP32 inputs/outputs (keep_io_types), via onnxruntime's maintained converter
    logic in onnxconverter-common when present, else onnx's own float16 helper."""
    try:
        from onnxconverter_common import float16  # type: ignore
    except ImportError:
        float16 = None
    if float16 is not None:
        return float16.convert_float_to_float16(proto, keep_io_types=True)
    return _fp16_fallback(proto)


def _fp16_fallback(proto):
    """Cast initializers to FP16 and put Casts at the graph inputs/outputs; every op OSNet uses
    (Conv, BatchNorm folded, Relu, Sigmoid, pools, Gemm, Add, Mul) has FP16 kernels."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    g = proto.graph
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for node in g.node:  # Constant nodes holding floats, and Casts to float, follow the weights to FP16
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                    a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16)))
        if node.op_type == "Cast":
            for a in node.attribute:
                if a.name == "to" and a.i == TensorProto.FLOAT:
                    a.i = TensorProto.FLOAT16
    new_nodes = []
    for inp in g.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT:
            cast_out = inp.name + "_fp16"
            for node in g.node:
                node.input[:] = [cast_out if i == inp.name else i for i in node.input]
            new_nodes.append(helper.make_node("Cast", [inp.name], [cast_out], to=TensorProto.FLOAT16,
                                              name=inp.name + "_to_fp16"))
    tail = []
    for out in g.output:
        if out.type.tensor_type.elem_type == TensorProto.FLOAT:
            inner = out.name + "_fp16"
            for node in g.node:
                node.output[:] = [inner if o == out.name else o for o in node.output]
            tail.append(helper.make_node("Cast", [inner], [out.name], to=TensorProto.FLOAT, name=out.name + "_to_fp32"))
    nodes = new_nodes + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]  # stale FP32 shapes/types; ORT re-infers them
    return proto


def _set_metadata(proto, meta: ModelMeta) -> None:
    props = {p.key: p.value for p in proto.metadata_props}
    props[META_KEY] = meta.to_json()
    del proto.metadata_props[:]
    for k, v in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "osnet-edge"
    proto.producer_version = meta.version
    proto.doc_string = (f"{meta.arch} person re-ID embedder, input {meta.input_format} "
                        f"{meta.input_size[0]}x{meta.input_size[1]}, {meta.feature_dim}-D features (not normalised)")


def read_onnx_meta(path) -> ModelMeta | None:
    """The osnet-edge metadata of an ONNX file (via the onnx package), or None."""
    onnx = require("onnx", "reading ONNX metadata")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ArtifactError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    return ModelMeta.from_json(props[META_KEY], str(path)) if META_KEY in props else None


def write_onnx(model, tmp_path, meta: ModelMeta, *, opset=17, half=False, simplify=True, **_options):
    """The 'onnx' writer of export_model."""
    return [export_onnx(model, tmp_path, opset=opset, half=half, meta=meta, simplify=simplify)]


write_onnx.default_input_format = "uint8_nhwc"
