"""INT8 of a model trained with torchreid's own code (train_torchreid.py): the one-command path under the default
gates, the 8-bit bounds of the PyTorch model, per-layer statistics and sensitivity, and float fallback of the
most sensitive layers within the 70%-INT8 rule.

    nice -n 5 .venv/bin/python benchmarks/results/int8_real/torchreid_int8.py /work/data/int8_torchreid/tr_tri \
        --data /work/data/vtest_crops --imgsz 128 64          # -> torchreid_<run>.json

Held-out: gallery + queries of the test tracklets (never trained on, never calibrated on), as measure.py.
"""
import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "int8"))
import bitwidth_sim as sim  # noqa: E402

from osnet_edge import build_model  # noqa: E402
from osnet_edge.calibration import calibration_split  # noqa: E402
from osnet_edge.checkpoint import model_meta  # noqa: E402
from osnet_edge.export import fidelity as fid  # noqa: E402
from osnet_edge.export.coverage import quantized_conv_modules  # noqa: E402
from osnet_edge.export.fidelity import FidelityError  # noqa: E402
from osnet_edge.export.fidelity_metrics import _unit  # noqa: E402
from osnet_edge.preprocess import to_batch  # noqa: E402


def row(rep: dict, label: str, cmd: str, secs: float, kept_file) -> dict:
    r = rep.get("retrieval") or {}
    ex = rep.get("extra") or {}
    d = lambda k: None if not r else round(100 * (r["int8"][k] - r["fp32"][k]), 2)  # noqa: E731
    return {"path": label, "command": cmd, "mean_cos": round(rep["cosine_mean"], 5), "min_cos": round(rep["cosine_min"], 4),
            "decisive_top1": (rep.get("decisive") or {}).get("top1_agreement"),
            "decisive_gap": (rep.get("decisive") or {}).get("gap"),
            "decisive_crops": (rep.get("decisive") or {}).get("crops"),
            "strict_top1": rep["top1_agreement"], "identity": ex.get("top1_identity_agreement"),
            "correct_kept": (rep.get("correct_kept") or {}).get("share"),
            "correct_kept_decisive": ((rep.get("correct_kept") or {}).get("decisive") or {}).get("share"),
            "correct_kept_gate": next((g["note"] for g in rep.get("gates") or [] if g["gate"] == "min_correct_kept"),
                                      None),
            "rank1_delta": d("rank1"), "map_delta": d("mAP"),
            "rank1_fp32": None if not r else round(100 * r["fp32"]["rank1"], 1),
            "map_fp32": None if not r else round(100 * r["fp32"]["mAP"], 1),
            "int8_share": ex.get("int8_conv_fraction"), "speedup": (ex.get("speedup") or {}).get("speedup"),
            "loadavg": (ex.get("speedup") or {}).get("loadavg"),
            "accepted": bool(rep.get("passed") and kept_file), "failures": rep.get("failures"),
            "gates_lowered": rep.get("gates_lowered"), "seconds": round(secs, 1)}


def export_row(model, weights, size, fmt, data, out, label, **options):
    from osnet_edge.export.api import export_model

    flags = " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in options.items()
                     if k not in ("keep_fp32",))
    cmd = (f"osnet-export --weights {weights} --imgsz {size[0]} {size[1]} --format {fmt} --int8 "
           f"--calib market1501:{data} {flags}").strip()
    t0 = time.time()
    refusal = None
    try:
        res = export_model(model, fmt, out, int8=True, calib=f"market1501:{data}", quiet=True, **options)
        rep = json.loads(next(p for p in res.files if p.name.endswith(".fidelity.json")).read_text())
        kept = str(res.path)
    except FidelityError as e:
        rep, kept, refusal = e.report.to_dict(), None, str(e)
        print(f"  refused: {e}", file=sys.stderr)
    r = row(rep, label, cmd, time.time() - t0, kept)
    if refusal:
        r["refusal"] = refusal
    print(json.dumps({k: r[k] for k in ("path", "mean_cos", "min_cos", "decisive_top1", "correct_kept",
                                        "rank1_delta", "map_delta", "int8_share", "speedup", "accepted")}),
          file=sys.stderr, flush=True)
    return r, rep


def layer_stats(model, cal, held):
    """Per quantized conv: input activation per-tensor max vs the median channel's max (levels wasted on most
    channels by a per-tensor range), tail (max / 99.9th percentile), held-out/calibration peak ratio; weight
    per-channel max/rms (how few levels the bulk of a channel's weights gets)."""
    acts = {}

    def hook(name):
        def f(_m, inp):
            x = inp[0].detach()
            ch = x.abs().amax(dim=(0, 2, 3))
            q = torch.quantile(x.abs().flatten()[:: max(1, x.numel() // 200000)].float(), 0.999)
            a = acts.setdefault(name, {"ch": torch.zeros_like(ch), "max": 0.0, "p999": 0.0})
            a["ch"] = torch.maximum(a["ch"], ch)
            a["max"] = max(a["max"], float(ch.max()))
            a["p999"] = max(a["p999"], float(q))
        return f

    convs = quantized_conv_modules(model)
    hs = [c.register_forward_pre_hook(hook(n)) for n, c in convs]
    with torch.no_grad():
        for b in cal:
            model(b)
    calib = {n: dict(v) for n, v in acts.items()}
    acts.clear()
    with torch.no_grad():
        for b in held:
            model(b)
    for h in hs:
        h.remove()
    out = []
    for n, c in convs:
        w = c.weight.detach().flatten(1)
        wr = (w.abs().amax(1) / w.pow(2).mean(1).sqrt().clamp_min(1e-12))
        a = calib[n]
        chm = a["ch"][a["ch"] > 0]
        out.append({"layer": n, "depthwise": c.groups > 1, "act_max": round(a["max"], 3),
                    "act_channel_spread": round(a["max"] / float(chm.median()) if len(chm) else 0, 2),
                    "act_tail": round(a["max"] / max(a["p999"], 1e-12), 2),
                    "held_out_over_calib": round(acts[n]["max"] / max(a["max"], 1e-12), 2),
                    "w_max_over_rms": round(float(wr.mean()), 2), "w_max_over_rms_worst": round(float(wr.max()), 2)})
    return out


def sensitivity(model, ranges, test, ref):
    """Mean cosine to FP32 when ONE conv's input is quantized to 8 bits (calibration range), on `test`."""
    res = []
    for n, _c in quantized_conv_modules(model):
        m = copy.deepcopy(model)
        mods = dict(m.named_modules())
        lo, hi = ranges[n]
        s = hi / 255 if lo >= 0 else max(-lo, hi) / 127
        a, b = (0, 255) if lo >= 0 else (-128, 127)
        mods[n].register_forward_pre_hook(lambda _c, inp, s=s, a=a, b=b: (torch.clamp(torch.round(inp[0] / s), a, b) * s,))
        with torch.no_grad():
            f = torch.cat([m(x) for x in test]).numpy()
        cos = np.sum(_unit(f) * _unit(ref), axis=1)
        res.append({"layer": n, "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())})
    return sorted(res, key=lambda r: r["cosine_mean"])


def ir_names(ir_convs, torch_names):
    """IR op names of torch conv modules (conv3.1.conv2d.3.conv2 -> /model/conv3/conv3.1/conv2d/conv2d.3/conv2/...)."""
    out = []
    for n in torch_names:
        segs = []
        for part in n.split("."):
            segs.append(f"{segs[-1]}.{part}" if part.isdigit() and segs else part)
        prefix = "/model/" + "/".join(segs) + "/"
        out.extend([x for x in ir_convs if x.startswith(prefix)][:1])
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("--data", required=True)
    p.add_argument("--imgsz", type=int, nargs=2, default=(128, 64))
    p.add_argument("--tag", default="", help="suffix of the JSON name (runs of different steps side by side)")
    p.add_argument("--only-qat", action="store_true", help="only the --qat export")
    p.add_argument("--skip", default="", help="comma list of steps to skip: qat,onnx,bounds,stats,fallback")
    a = p.parse_args()
    torch.set_num_threads(2)
    skip = set(a.skip.split(","))
    run = Path(a.run)
    weights = run / "model.pth"
    size = tuple(a.imgsz)
    model = build_model(None, weights=str(weights), input_size=size).eval()
    out = run / "int8"
    out.mkdir(exist_ok=True)
    result = {"run": str(run), "imgsz": size, "rows": [], "loadavg_start": open("/proc/loadavg").read().split()[:3]}
    path = HERE / f"torchreid_{run.name}{a.tag}.json"

    def save():
        path.write_text(json.dumps(result, indent=1, default=fid._json_default))

    if a.only_qat:
        result["rows"].append(export_row(model, weights, size, "openvino", a.data, out, "openvino --qat", qat=True)[0])
        path.write_text(json.dumps(result, indent=1, default=fid._json_default))
        return
    r, ptq = export_row(model, weights, size, "openvino", a.data, out, "openvino PTQ")
    result["rows"].append(r)
    result["ptq_worst_layers"] = (ptq.get("extra") or {}).get("worst_layers")
    result["ptq_coverage"] = (ptq.get("extra") or {}).get("calibration_coverage")
    save()
    if "qat" not in skip:
        result["rows"].append(export_row(model, weights, size, "openvino", a.data, out, "openvino --qat", qat=True)[0])
        save()
    if "onnx" not in skip:
        result["rows"].append(export_row(model, weights, size, "onnx", a.data, out, "onnx Q/DQ PTQ")[0])
        save()
    meta = model_meta(model)
    split = calibration_split(f"market1501:{a.data}", 300, 300, seed=0, progress=False)

    def batches(crops):
        return [torch.from_numpy(to_batch(crops[i:i + 64], meta.input_size, meta.mean, meta.std, meta.color_order))
                for i in range(0, len(crops), 64)]

    cal = batches(list(split.calib.crops))
    held = batches(list(split.held_out.crops) + list(split.query.crops))
    if "bounds" not in skip:
        ranges = sim.input_ranges(model, cal)
        bounds = []
        for label, fq in (("FP16 weights + activations", sim.fp16_rounded(model)),
                          ("8-bit weights only (RTN per-channel), FP32 act", sim.fake_quantize(model, ranges, None, 8)),
                          ("10-bit weights only, FP32 act", sim.fake_quantize(model, ranges, None, 10)),
                          ("8-bit act only, FP32 weights", sim.fake_quantize(model, ranges, 8, 0)),
                          ("8-bit act + 8-bit weights (the IR)", sim.fake_quantize(model, ranges, 8, 8))):
            rep = fid.fidelity_report(model, fq, split.held_out, split.query).to_dict()
            bounds.append(row(rep, label, "bounds (PyTorch fake-quant)", 0, True))
            print(json.dumps({k: bounds[-1][k] for k in ("path", "mean_cos", "min_cos", "decisive_top1", "correct_kept",
                                                          "rank1_delta", "map_delta", "accepted")}), file=sys.stderr)
        result["bounds"] = bounds
        save()
    if "stats" not in skip:
        result["layer_stats"] = layer_stats(model, cal, held)
        ranges = sim.input_ranges(model, cal)
        with torch.no_grad():
            ref = torch.cat([model(x) for x in held[:2]]).numpy()
        result["sensitivity"] = sensitivity(model, ranges, held[:2], ref)
        save()
    if "fallback" not in skip and result.get("sensitivity"):
        import openvino as ov

        from osnet_edge.export import openvino_ir_ops as irops

        from osnet_edge.export import quantize_openvino as qov

        xml = next(out.glob("*int8*.xml"), None)
        if xml is None:  # refused: re-quantize to learn the IR's conv names
            m8 = copy.deepcopy(model)
            meta8 = model_meta(m8, "int8")
            meta8.input_format = "uint8_nhwc"
            q = qov.quantize(qov.fp32_ov_model(m8, meta8), split.calib, meta8)
            ir_convs = irops.quantized_convs(q)
        else:
            ir_convs = irops.quantized_convs(ov.Core().read_model(str(xml)))
        worst = [s["layer"] for s in result["sensitivity"][:8]]
        names = ir_names(ir_convs, worst)
        result["fallback_layers"] = names
        if names:
            result["rows"].append(export_row(model, weights, size, "openvino", a.data, out,
                                             f"openvino PTQ, {len(names)} most sensitive convs float",
                                             keep_fp32=names)[0])
        save()
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
