"""Where the time goes: per-operator time of one artifact, from the runtime's own profiler.

.onnx: ONNX Runtime's session profiling (kernel time per node); .xml: OpenVINO's per-layer
performance counters (which also name the kernel picked, e.g. jit_avx2 vs ref: a 'ref' kernel is a
slow fallback); .pt/.pth: torch.profiler. The profiling session is opened here with the same thread
count as the benchmark (the runtime backends keep profiling off: it costs time on every call).
"""
from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from osnet_edge.errors import ArtifactError


def _aggregate(items):
    """items: (op_type, node_name, kernel, microseconds per run[, calls]) -> summary sorted by time.

    Events of the same node (several profiled runs) are summed first, so 'nodes' counts distinct
    graph nodes, not events.
    """
    per_node = defaultdict(float)
    calls_of = {}
    for op, node, kernel, us, *calls in items:
        per_node[(op, node, kernel)] += us
        calls_of[(op, node, kernel)] = calls[0] if calls else 1
    by_type = defaultdict(lambda: [0, 0.0])
    by_kernel = defaultdict(float)
    nodes = []
    for (op, node, kernel), us in per_node.items():
        by_type[op][0] += calls_of[(op, node, kernel)]
        by_type[op][1] += us
        if kernel:
            by_kernel[f"{op}:{kernel}"] += us
        nodes.append((node, op, us))
    total = sum(v[1] for v in by_type.values()) or 1.0
    return {
        "total_ms": round(total / 1e3, 3),
        "by_op_type": [{"op": k, "nodes": v[0], "ms": round(v[1] / 1e3, 3), "share": round(v[1] / total, 4)}
                       for k, v in sorted(by_type.items(), key=lambda kv: -kv[1][1])],
        "by_kernel": [{"kernel": k, "ms": round(v / 1e3, 3), "share": round(v / total, 4)}
                      for k, v in sorted(by_kernel.items(), key=lambda kv: -kv[1])][:15],
        "top_nodes": [{"node": n, "op": o, "ms": round(us / 1e3, 3)} for n, o, us in sorted(nodes, key=lambda x: -x[2])[:10]],
    }


def _profile_onnx(path, batch, iters, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    tmp = tempfile.mkdtemp(prefix="osnet-prof-")
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tmp, "ort")
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    sess.run(None, {name: batch})  # warm-up (its events are dropped below: first-run allocations)
    for _ in range(iters):
        sess.run(None, {name: batch})
    prof = sess.end_profiling()
    events = json.loads(Path(prof).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    cutoff = runs[0]["ts"] + runs[0]["dur"] if runs else 0
    items = [(e["args"].get("op_name", "?"), e["name"][:-len("_kernel_time")], "",  # ORT names only the provider here; OpenVINO names the kernel
              e["dur"] / iters) for e in events
             if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= cutoff]
    Path(prof).unlink(missing_ok=True)
    return items, f"onnxruntime {ort.__version__} session profiling"


def _profile_openvino(path, batch, iters, threads, declared="fp32", precision=None):
    import openvino as ov

    from osnet_edge.runtime.openvino_backend import precision_config

    core = ov.Core()
    # the precision the timings ran at, not the plugin's bf16 default
    cfg = {"PERF_COUNT": "YES", **precision_config(core, "CPU", declared, precision)}
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = int(threads)
    model = core.read_model(str(path))
    if model.inputs[0].get_partial_shape().is_dynamic:
        model.reshape({model.inputs[0]: list(batch.shape)})
    compiled = core.compile_model(model, "CPU", cfg)
    req = compiled.create_infer_request()
    req.infer({0: batch})
    acc = defaultdict(float)
    info = {}
    for _ in range(iters):
        req.infer({0: batch})
        for p in req.profiling_info:
            if str(p.status).endswith("EXECUTED"):
                acc[p.node_name] += p.real_time.total_seconds() * 1e6
                info[p.node_name] = (p.node_type, p.exec_type)
    items = [(info[n][0], n, info[n][1], us / iters) for n, us in acc.items()]
    return items, f"openvino {ov.get_version()} PERF_COUNT"


def _profile_torch(path, batch, iters, threads):
    import torch
    from torch.profiler import ProfilerActivity, profile

    from osnet_edge.benchmarks.probe import _torch_threads
    from osnet_edge.models import build_model

    model = build_model(weights=str(path)).eval()
    x = torch.from_numpy(batch)
    with torch.inference_mode(), _torch_threads(threads):
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(iters):
                model(x)
    items = [(e.key, e.key, "", e.self_cpu_time_total / iters, e.count // iters) for e in prof.key_averages()
             if e.self_cpu_time_total > 0]
    return items, f"torch {torch.__version__} profiler (self CPU time per aten op)"


def profile_artifact(path, batch_size=32, iters=5, threads=None, crops=None, precision=None) -> dict:
    """Per-operator time for one batch of `batch_size` made by the ONE preprocessing of the artifact."""
    from osnet_edge.runtime import Embedder
    from osnet_edge.benchmarks.runner import bench_crops

    path = Path(path)
    suffix = path.suffix.lower()
    fn = {".onnx": _profile_onnx, ".xml": _profile_openvino, ".pt": _profile_torch, ".pth": _profile_torch}.get(suffix)
    if fn is None:
        raise ArtifactError(f"--profile supports .onnx, .xml and .pt/.pth artifacts, not {suffix!r} ({path})")
    with Embedder(path, device="cpu", threads=threads, precision=precision) as emb:
        batch = np.ascontiguousarray(emb.preprocess(crops if crops is not None else bench_crops(batch_size)))
        meta, executes = emb.meta, emb.execution_precision
    extra = {"declared": meta.precision, "precision": precision} if fn is _profile_openvino else {}
    items, source = fn(path, batch, iters, threads, **extra)
    out = _aggregate(items)
    out.update(artifact=str(path), arch=meta.arch, input_size=list(meta.input_size), precision=meta.precision,
               executes=executes,
               batch=int(batch.shape[0]), iters=iters, threads=threads, source=source)
    return out


def format_profile(p: dict, top: int = 12) -> str:
    lines = [f"profile of {Path(p['artifact']).name} ({p['arch']} {p['input_size'][0]}x{p['input_size'][1]} "
             f"{p['precision']} executing {p.get('executes', p['precision'])}, batch {p['batch']}, {p['source']}): {p['total_ms']:.2f} ms of operator time per batch",
             f"  {'op type':<28} {'nodes':>5} {'ms':>9} {'share':>7}"]
    for r in p["by_op_type"][:top]:
        lines.append(f"  {r['op']:<28} {r['nodes']:>5} {r['ms']:>9.3f} {100 * r['share']:>6.1f}%")
    if p["by_kernel"] and any(k["kernel"].split(":", 1)[1] for k in p["by_kernel"]):
        lines.append("  kernels (op:implementation):")
        for k in p["by_kernel"][:8]:
            lines.append(f"    {k['kernel']:<50} {k['ms']:>9.3f} {100 * k['share']:>6.1f}%")
    return "\n".join(lines)
