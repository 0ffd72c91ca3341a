"""Why the Q/DQ ONNX (TensorRT's explicit-quantization form) trails OpenVINO's INT8, on the torchreid-code model:
the same FP32 graph quantized four ways, scored by the default gates on the same held-out crops.

    NNCF_EXTENSION_LOAD_TIMEOUT=0 nice -n 5 .venv/bin/python -W ignore benchmarks/results/int8_real/qdq_forms.py \
        /work/data/int8_torchreid/tr_tri --data /work/data/vtest_crops      # -> qdq_forms_tr_tri.json

Rows: (1) the shipped path, onnxruntime quantize_static, symmetric INT8 activations; (2) the same with Q/DQ only in
front of convolutions; (3) NNCF's ONNX backend with the OpenVINO recipe's settings (MinMax ranges, head FP32,
NNCF's quantizer placement; fast bias correction, as NNCF's full BiasCorrection fails on this graph with
"Duplicate definition-site for (max_pool2d)"), which keeps post-ReLU tensors unsigned (UINT8, zero point 0: all
256 levels); (4) graph (3) with every UINT8 activation pair rewritten to INT8 symmetric over the same range, the
only activation form TensorRT accepts (NNCF itself refuses signedness_to_force=True against its CPU/ANY hardware
configs); (5) OpenVINO INT8 with NNCF's MIXED preset (asymmetric activations), against the project's recipe.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def dq_consumers(path) -> dict:
    """Op types fed by an activation DequantizeLinear (where the Q/DQ pairs sit)."""
    import onnx

    g = onnx.load(str(path)).graph
    weights = {i.name for i in g.initializer}
    cons = collections.defaultdict(list)
    for n in g.node:
        for i in n.input:
            cons[i].append(n.op_type)
    c = collections.Counter(op for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] not in weights
                            for op in cons[n.output[0]])
    return dict(c)


def to_signed(q):
    """UINT8 (zero point 0) activation Q/DQ pairs -> INT8 symmetric over the same range (scale x 255/127)."""
    import onnx
    import onnx.numpy_helper as nh

    q = onnx.ModelProto.FromString(q.SerializeToString())
    inits = {i.name: i for i in q.graph.initializer}
    done, n = set(), 0
    for node in q.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        zp, sc = inits.get(node.input[2]), inits.get(node.input[1])
        if zp is None or zp.data_type != onnx.TensorProto.UINT8 or node.input[1] in done:
            continue
        z = nh.to_array(zp)
        assert (z == 0).all(), f"{node.name}: an asymmetric quantizer, not a post-ReLU one"
        sc.CopyFrom(nh.from_array((nh.to_array(sc) * 255.0 / 127.0).astype(np.float32), sc.name))
        zp.CopyFrom(nh.from_array(np.zeros(z.shape, np.int8), zp.name))
        done.update((node.input[1], node.input[2]))
        n += 1
    del q.graph.value_info[:]  # stale UINT8 annotations of the rewritten outputs
    return q, n


def nncf_onnx(fp32_path, calib, meta):
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    from osnet_edge.export.quantize_onnx import head_nodes

    proto = onnx.load(str(fp32_path))
    name = proto.graph.input[0].name
    items = [{name: b} for b in calib.batches(meta, 1)]
    adv = AdvancedQuantizationParameters(overflow_fix=OverflowFix.FIRST_LAYER,
                                         activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)
    return nncf.quantize(proto, nncf.Dataset(items), subset_size=len(items), preset=nncf.QuantizationPreset.PERFORMANCE,
                         target_device=nncf.TargetDevice.CPU, fast_bias_correction=True, advanced_parameters=adv,
                         ignored_scope=nncf.IgnoredScope(names=head_nodes(proto), validate=False))


def score(label, model, artifact, split, t0, **more) -> dict:
    from osnet_edge.export import fidelity as fid

    rep = fid.fidelity_report(model, str(artifact), split.held_out, split.query).to_dict()
    r = rep.get("retrieval") or {}
    d = lambda k: None if not r else round(100 * (r["int8"][k] - r["fp32"][k]), 2)  # noqa: E731
    row = {"path": label, "mean_cos": round(rep["cosine_mean"], 5), "min_cos": round(rep["cosine_min"], 4),
           "decisive_top1": (rep.get("decisive") or {}).get("top1_agreement"),
           "correct_kept": (rep.get("correct_kept") or {}).get("share"), "rank1_delta": d("rank1"),
           "map_delta": d("mAP"), "passed": rep.get("passed"), "failures": rep.get("failures"),
           "seconds": round(time.time() - t0), **more}
    print(json.dumps({k: row[k] for k in ("path", "mean_cos", "min_cos", "decisive_top1", "correct_kept",
                                          "rank1_delta", "map_delta")}), file=sys.stderr, flush=True)
    return row


def main() -> int:
    import onnx
    import onnxruntime.quantization as oq

    from osnet_edge import build_model
    from osnet_edge.calibration import calibration_split
    from osnet_edge.checkpoint import model_meta
    from osnet_edge.export.onnx_writer import export_onnx
    from osnet_edge.export.quantize_onnx import int8_conv_fraction, quantize_onnx_file
    from osnet_edge.export.quantize_openvino import _with_precision

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="folder with model.pth (train_torchreid.py)")
    p.add_argument("--data", required=True, help="osnet-crops folder (Market layout)")
    p.add_argument("--imgsz", type=int, nargs=2, default=(128, 64))
    p.add_argument("--work", default="/tmp/osnet-edge-qdq-forms")
    a = p.parse_args()
    run, work = Path(a.run), Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    model = build_model(None, weights=str(run / "model.pth"), input_size=tuple(a.imgsz)).eval()
    meta = model_meta(model)
    meta8 = _with_precision(meta, "int8")
    # the split the one-command path makes for --calib market1501:DIR (300 calibration, 300 + 100 held out)
    split = calibration_split(f"market1501:{a.data}", 300, 300, seed=0, progress=False)
    fp32 = export_onnx(model, work / "fp32.onnx", meta=_with_precision(meta, "fp32"))
    rows = []
    out = HERE / f"qdq_forms_{run.name}.json"

    def save():
        out.write_text(json.dumps({"run": str(run), "imgsz": list(a.imgsz), "rows": rows,
                                   "loadavg_end": open("/proc/loadavg").read().split()[:3]}, indent=1))

    real = oq.quantize_static
    for label, ops in (("onnxruntime quantize_static, symmetric activations (shipped)", None),
                       ("onnxruntime quantize_static, Q/DQ in front of convolutions only", ["Conv"])):
        t0 = time.time()
        oq.quantize_static = (lambda *x, _o=ops, **k: real(*x, **({**k, "op_types_to_quantize": _o} if _o else k)))
        path = quantize_onnx_file(fp32, work / f"ort_{len(rows)}.onnx", split.calib, meta8)
        oq.quantize_static = real
        rows.append(score(label, model, path, split, t0, dq_consumers=dq_consumers(path),
                          int8_convs=int8_conv_fraction(path)["fraction"]))
        save()
    t0 = time.time()
    q = nncf_onnx(fp32, split.calib, meta8)
    onnx.save(q, str(work / "nncf_unsigned.onnx"))
    rows.append(score("NNCF ONNX backend, post-ReLU UINT8 (ONNX Runtime form)", model, work / "nncf_unsigned.onnx",
                      split, t0, int8_convs=int8_conv_fraction(work / "nncf_unsigned.onnx")["fraction"]))
    save()
    t0 = time.time()
    signed, n = to_signed(q)
    onnx.save(signed, str(work / "nncf_signed.onnx"))
    rows.append(score("NNCF ONNX backend, rewritten to INT8 symmetric (TensorRT form)", model,
                      work / "nncf_signed.onnx", split, t0, rewritten_pairs=n))
    save()

    sys.path.insert(0, str(HERE))
    from torchreid_int8 import export_row

    (work / "ov").mkdir(exist_ok=True)
    r, _ = export_row(model, run / "model.pth", tuple(a.imgsz), "openvino", a.data, work / "ov", "OpenVINO, NNCF MIXED "
                      "preset (asymmetric activations)", recipe="mixed")
    rows.append(r)
    save()
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
