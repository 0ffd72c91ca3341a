"""ONNX: torch.export-based exporter (dynamo), dynamic batch, opset >= 18, onnxslim, onnx.checker,
metadata in metadata_props. The TorchScript exporter stays selectable while torch still ships it."""
from __future__ import annotations

import ast
import contextlib
import logging
import warnings
from dataclasses import replace
from pathlib import Path

from osnet_edge.deps import require
from osnet_edge.errors import ArtifactError, ModelConfigError
from osnet_edge.metadata import META_KEY, ModelMeta

EXPORTERS = ("dynamo", "torchscript")
DEFAULT_EXPORTER = "dynamo"
# the dynamo exporter's operator library starts at opset 18 (lower requests go through onnx's version
# converter, which may silently keep 18); the TorchScript exporter handles 17
MIN_OPSET = {"dynamo": 18, "torchscript": 17}
DEFAULT_OPSET = 18
# loggers that print export chatter (torchvision ops skipped, symbolic-shape notes) at WARNING/INFO
_NOISY_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "torch._dynamo", "torch.fx", "onnxscript",
                  "onnx_ir")


def export_onnx(model, path, *, opset: int | None = None, half: bool = False, meta: ModelMeta | None = None,
                input_format: str | None = None, simplify: bool = True, exporter: str | None = None,
                **_ignored) -> Path:
    """Write `model` as ONNX at `path` (no verification, no temporary file: export_model does those).

    exporter: 'dynamo' (default; torch.onnx.export(..., dynamo=True), what torch recommends) or 'torchscript'
    (the deprecated TorchScript-based exporter, kept while torch ships it). opset: None gives DEFAULT_OPSET.
    Dynamic batch axis; FP32 I/O even with half=True (weights and compute in FP16, casts at the edges) so the
    Embedder feeds every artifact the same arrays. The TensorRT writer calls this as its first step.
    """
    onnx = require("onnx", "ONNX export")
    torch = require("torch", "ONNX export")
    from osnet_edge.checkpoint import model_meta
    from osnet_edge.export.graph import INPUT_NAME, OUTPUT_NAME, example_input, traceable

    exporter = exporter or DEFAULT_EXPORTER
    if exporter not in EXPORTERS:
        raise ModelConfigError(f"--onnx-exporter {exporter!r}: choose one of {', '.join(EXPORTERS)}")
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if opset < MIN_OPSET[exporter]:
        raise ModelConfigError(f"--opset {opset}: the {exporter} ONNX exporter needs opset >= {MIN_OPSET[exporter]}"
                               + (" (--onnx-exporter torchscript writes opset 17)" if exporter == "dynamo" else ""))
    if meta is None:
        meta = model_meta(model, precision="fp16" if half else "fp32")
        if input_format:
            meta.input_format = input_format
    module = traceable(model, meta)
    x = example_input(meta)
    names = (INPUT_NAME[meta.input_format], OUTPUT_NAME)
    was_training = model.training
    try:
        with torch.no_grad(), _quiet_export():
            trace = _trace_dynamo if exporter == "dynamo" else _trace_torchscript
            proto = trace(torch, onnx, module, x, names, opset)
    except Exception as exc:  # one line naming the model, the exporter and the root cause; the chain stays attached
        raise ArtifactError(f"ONNX export of {meta.arch} with the {exporter} exporter failed: {_root_cause(exc)}"
                            + ("; --onnx-exporter torchscript selects the legacy exporter" if exporter == "dynamo"
                               else "")) from exc
    finally:
        model.train(was_training)
    _global_average_pools(proto)
    _name_nodes_by_module(proto)
    _strip_debug_info(proto)
    if simplify:
        proto = _slim(proto)
    if half:
        proto = onnx_to_fp16(proto)
    # which exporter and opset wrote the graph: a fact to check when two artifacts of one model disagree
    _set_metadata(proto, replace(meta, extra={**meta.extra, "onnx_exporter": exporter, "opset": opset}))
    onnx.checker.check_model(proto, full_check=True)
    path = Path(path)
    onnx.save(proto, str(path))
    return path


def _trace_dynamo(torch, onnx, module, x, names, opset):
    """torch.export -> ONNX with a symbolic batch axis; the exporter's own optimizer folds BatchNorm."""
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(module, (x,), dynamo=True, opset_version=opset, input_names=[names[0]],
                                output_names=[names[1]], dynamic_shapes=({0: batch},), optimize=True,
                                verbose=False, report=False)
    return program.model_proto


def _trace_torchscript(torch, onnx, module, x, names, opset):
    """The TorchScript-based exporter (deprecated in torch; kept behind --onnx-exporter torchscript)."""
    import io

    buf = io.BytesIO()
    torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=opset, input_names=[names[0]],
                      output_names=[names[1]], do_constant_folding=True,
                      dynamic_axes={names[0]: {0: "batch"}, names[1]: {0: "batch"}})
    return onnx.load_from_string(buf.getvalue())


@contextlib.contextmanager
def _quiet_export():
    """Silence the exporters' chatter for the duration of one export: progress lines, deprecation and tracer
    warnings, skipped torchvision ops, and the partial FX graph torch.export prints to stderr on failure.
    Failures still raise; export_onnx turns them into one line."""
    import io

    loggers = [logging.getLogger(n) for n in _NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _root_cause(exc: BaseException) -> str:
    """The innermost exception's first line: the exporters wrap the real cause in pages of advice."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if inner is None:
            break
        exc = inner
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else 'no message'}"


def _name_nodes_by_module(proto) -> None:
    """Name the dynamo exporter's nodes after the module that made them, as the TorchScript exporter did
    ('/conv2/conv2.0/conv1/conv/Conv' rather than 'node_Conv_1628'): layer reports, TensorRT parser errors and
    quantizers' ignored scopes then point at the network's own names, whichever exporter wrote the file."""
    taken, renamed = {n.name for n in proto.graph.node}, {}
    for n in proto.graph.node:
        scopes = next((p.value for p in n.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        if not scopes:
            continue
        try:  # a Python list literal: ['', 'conv2', 'conv2.0', 'conv2.0.conv1', ..., fx node name]
            paths = [str(v) for v in ast.literal_eval(scopes)][1:-1]
        except (ValueError, SyntaxError):
            continue
        weight = n.input[1] if n.op_type in ("Conv", "Gemm") and len(n.input) > 1 else ""
        if weight.endswith(".weight"):  # a BatchNorm folded into it left the BN's scope: name it after its weight
            segs = weight[:-len(".weight")].split(".")
            prefixes = [".".join(segs[:i]) for i in range(1, len(segs) + 1)]
            paths = [q for q in prefixes if q in paths] + [prefixes[-1]] * (prefixes[-1] not in paths)
        parts, prev = [], ""
        for path in paths:  # each module's name in the module that called it; a container's child by index
            rel = path[len(prev) + 1:] if prev and path.startswith(prev + ".") else path
            parts.append(f"{parts[-1]}.{rel}" if rel.isdigit() and parts else rel)
            prev = path
        base = "/" + "/".join(parts + [n.op_type])
        k = renamed.get(base, 0)
        name = base if k == 0 else f"{base}_{k}"
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        renamed[base] = k + 1
        taken.add(name)
        n.name = name


def _global_average_pools(proto) -> None:
    """ReduceMean over H and W of a 4-D tensor (keepdims) -> GlobalAveragePool, the op the TorchScript exporter
    wrote for OSNet's gates. Exact; ONNX Runtime keeps GlobalAveragePool in its blocked NCHWc layout, where a
    ReduceMean costs a layout reorder per gate (24 more in osnet_x1_0), and quantizers know the pooling op."""
    from onnx import helper, numpy_helper

    g = proto.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer if len(t.dims) == 1}
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in list(g.value_info) + list(g.input)
            if v.type.tensor_type.HasField("shape")}
    for i, n in enumerate(g.node):
        if n.op_type != "ReduceMean" or len(n.input) != 2 or n.input[1] not in consts:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if attrs.get("keepdims", 1) != 1 or rank.get(n.input[0]) != 4:
            continue
        if sorted(int(a) % 4 for a in consts[n.input[1]]) == [2, 3]:
            pool = helper.make_node("GlobalAveragePool", [n.input[0]], list(n.output), name=n.name)
            pool.metadata_props.extend(n.metadata_props)  # its module scope names it below
            g.node[i].CopyFrom(pool)


def _strip_debug_info(proto) -> None:
    """Drop what only helps debug the exporter (per-node stack traces and torch names in metadata_props,
    doc strings, initializers no node reads): smaller files, nothing a runtime needs."""
    g = proto.graph
    for node in g.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for v in list(g.input) + list(g.output) + list(g.value_info) + list(g.initializer):
        del v.metadata_props[:]
        v.doc_string = ""
    del g.metadata_props[:]
    g.doc_string = ""
    del proto.metadata_props[:]  # the exporter's own props; ours are set afterwards
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    kept = [t for t in g.initializer if t.name in used]
    if len(kept) != len(g.initializer):
        del g.initializer[:]
        g.initializer.extend(kept)


def _slim(proto):
    """Fold constants and fuse what ORT/TensorRT would otherwise re-discover (onnxslim, maintained)."""
    onnxslim = require("onnxslim", "ONNX graph simplification")
    try:
        return onnxslim.slim(proto)
    except Exception as exc:  # a simplifier bug must not cost the user the export: keep the traced graph
        warnings.warn(f"onnxslim failed ({type(exc).__name__}: {exc}); keeping the unsimplified graph")
        return proto


def onnx_to_fp16(proto):
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


def write_onnx(model, tmp_path, meta: ModelMeta, *, opset=None, half=False, simplify=True, onnx_exporter=None,
               **_options):
    """The 'onnx' writer of export_model (onnx_exporter: 'dynamo', the default, or 'torchscript')."""
    return [export_onnx(model, tmp_path, opset=opset, half=half, meta=meta, simplify=simplify,
                        exporter=onnx_exporter)]


write_onnx.default_input_format = "uint8_nhwc"
