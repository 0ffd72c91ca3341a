"""Where does the INT8 error enter? layer_errors() runs the FP32 and the INT8 OpenVINO model side by side and
reports, per layer in network order, how far the INT8 tensor has drifted from the FP32 one."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from osnet_edge.errors import ArtifactError

_COMPARED_TYPES = ("Convolution", "GroupConvolution", "Add", "Multiply", "MatMul", "Relu", "Clamp", "ReduceMean",
                   "AvgPool", "MaxPool", "Sigmoid")


def layer_errors(fp32_model, int8_model, batch: np.ndarray, types=_COMPARED_TYPES, max_layers: int | None = 30,
                 names=None) -> list:
    """Per-layer FP32-vs-INT8 drift for two OpenVINO models of the same network (ov.Model or .xml path).

    Every op of `types` that exists under the same friendly name in both models (at most max_layers of them,
    evenly spaced; `names`: only those) is compared: both models are cut at that op and run on `batch`.
    Returns, in FP32 topological order, dicts: name, type, cosine (flattened per sample, mean over the batch),
    rel_err (||int8 - fp32|| / ||fp32||) and sqnr_db. The first layer where cosine drops or rel_err jumps is
    where the error enters.
    """
    from osnet_edge.deps import require

    ov = require("openvino", "the per-layer INT8 comparison")
    core = ov.Core()
    m32 = core.read_model(str(fp32_model)) if isinstance(fp32_model, (str, Path)) else fp32_model.clone()
    m8 = core.read_model(str(int8_model)) if isinstance(int8_model, (str, Path)) else int8_model.clone()
    ops8 = {op.get_friendly_name(): op for op in m8.get_ordered_ops()}
    only = None if names is None else set(names)
    names = []
    for op in m32.get_ordered_ops():
        n = op.get_friendly_name()
        if op.get_type_name() in types and n in ops8 and ops8[n].get_type_name() == op.get_type_name() \
                and (only is None or n in only):
            names.append((n, op.get_type_name()))
    if not names:
        raise ArtifactError("no layers share a name between the FP32 and INT8 models; were they made from the same IR?")
    ops32 = {op.get_friendly_name(): op for op in m32.get_ordered_ops()}
    if max_layers and len(names) > max_layers:  # evenly spaced through the network, always the last one
        keep = np.unique(np.linspace(0, len(names) - 1, max_layers).round().astype(int))
        names = [names[i] for i in keep]

    # one truncated model per layer: extra outputs in the middle of an INT8 chain are not dequantized reliably
    # by the CPU plugin's low-precision transformations, a model that ends at the layer is
    def run(ops, params, n):
        sub = ov.Model([ops[n].output(0)], params, f"upto_{n}")
        cm = core.compile_model(sub, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return cm(batch)[cm.output(0)]

    # the FP32 model has no low-precision transformations: one compile with every compared output is exact
    # and halves the compiles
    sub32 = ov.Model([ops32[n].output(0) for n, _ in names], m32.get_parameters(), "fp32_compared")
    cm32 = core.compile_model(sub32, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    res32 = cm32(batch)
    r32 = {n: res32[cm32.output(i)] for i, (n, _) in enumerate(names)}
    r8 = {}
    for n, _ in _progress(names, "per-layer comparison"):
        r8[n] = run(ops8, m8.get_parameters(), n)
    rows = []
    for n, t in names:
        a, b = r32.get(n), r8.get(n)
        if a is None or b is None:
            continue
        a = a.reshape(len(a), -1).astype(np.float64)
        b = b.reshape(len(b), -1).astype(np.float64)
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        cos = np.sum(a * b, axis=1) / np.maximum(na * nb, 1e-12)
        cos[(na < 1e-12) & (nb < 1e-12)] = 1.0  # both all-zero (a dead ReLU on this batch): identical
        err = np.linalg.norm(a - b)
        rel = float(err / max(np.linalg.norm(a), 1e-12))
        rows.append({"name": n, "type": t, "cosine": float(cos.mean()), "cosine_min": float(cos.min()),
                     "rel_err": rel, "sqnr_db": float(-20 * np.log10(max(rel, 1e-12)))})
    return rows


def _progress(items, desc):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="layer", file=sys.stderr, leave=False)


def print_layer_errors(rows, top: int = 10, file=sys.stderr) -> None:
    worst = sorted(rows, key=lambda r: r["cosine"])[:top]
    print(f"per-layer FP32 vs INT8 ({len(rows)} layers compared); worst {len(worst)} by cosine:", file=file)
    for r in worst:
        print(f"  {r['cosine']:.4f}  rel_err {r['rel_err']:.3f}  {r['type']:<16} {r['name']}", file=file)
