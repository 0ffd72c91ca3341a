"""Mixed precision on real footage: PTQ with a few layers kept in float, chosen greedily on calibration crops.

For each run folder (osnet-train output, model-best.pth at 128x64): the writer's own steps
(calibration_split -> fp32_ov_model -> quantize(keep_fp32=...) -> fidelity_report), then
layer_errors.layer_errors on CALIBRATION crops (never the held-out ones) over every quantized convolution; the worst
convolution not yet in float joins keep_fp32; repeat while the INT8 share of the compiled model stays >= 70%
or until the goals hold on the held-out crops. One JSON per model (`mixed_<run>.json`), one row per step.

    nice -n 19 .venv/bin/python benchmarks/results/int8_real/mixed.py /work/data/runs/x025_tri \
        /work/data/runs/x025_ls --data /work/data/vtest_crops
    ... --scan-stages [--groups PREFIX[+PREFIX] ...]   whole stages / named groups in float (diagnosis)
    ... --ac-calib X   NNCF accuracy control validated on the calibration crops (crashes in NNCF's ranking:
                       validation_function's agreement mode, see NOTES.md)
    python mixed.py --table mixed_*.json                 markdown rows for NOTES.md
"""
import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the brief's goals on held-out crops
GOALS = dict(mean=0.99, min=0.95, top1=0.95, points=1.0, int8_share=0.70)


def rank_for_float(fp32_ov, int8_ov, batch, exclude=()) -> list:
    """layer_errors rows of the quantized convolutions on `batch` (calibration crops), worst cosine first,
    without those in `exclude` (already float)."""
    from osnet_edge.export.layer_errors import layer_errors
    from osnet_edge.export import openvino_ir_ops as irops

    cand = [n for n in irops.quantized_convs(int8_ov) if n not in set(exclude)]
    if not cand:
        return []
    rows = layer_errors(fp32_ov, int8_ov, batch, types=irops.CONV_TYPES, max_layers=None, names=cand)
    return sorted(rows, key=lambda r: (r["cosine"], -r["rel_err"]))


def row(rep, keep, conv, secs):
    r = rep.retrieval or {}
    f, i = r.get("fp32", {}), r.get("int8", {})
    return {"keep_fp32": list(keep), "n_float": len(keep), "cosine_mean": rep.cosine_mean, "cosine_min": rep.cosine_min,
            "top1": rep.top1_agreement, "identity": rep.extra.get("top1_identity_agreement"),
            "rank1": [f.get("rank1"), i.get("rank1")], "mAP": [f.get("mAP"), i.get("mAP")],
            "int8_conv": conv["fraction"], "convs": [conv["int8_convolutions"], conv["convolutions"]],
            "gates_passed": rep.passed, "failures": rep.failures, "seconds": round(secs, 1)}


def meets(r):
    pts = lambda k: abs(100 * (r[k][1] - r[k][0]))  # noqa: E731
    return (r["cosine_mean"] >= GOALS["mean"] and r["cosine_min"] >= GOALS["min"] and r["top1"] >= GOALS["top1"]
            and pts("rank1") <= GOALS["points"] and pts("mAP") <= GOALS["points"] and r["gates_passed"]
            and r["int8_conv"] >= GOALS["int8_share"])


def fmt(r):
    return (f"float={r['n_float']:2d} mean {r['cosine_mean']:.4f} min {r['cosine_min']:.4f} top1 {100 * r['top1']:.1f} "
            f"id {100 * r['identity']:.1f} r1 {100 * r['rank1'][0]:.1f}->{100 * r['rank1'][1]:.1f} "
            f"mAP {100 * r['mAP'][0]:.1f}->{100 * r['mAP'][1]:.1f} int8 {100 * r['int8_conv']:.1f}% "
            f"gates {'pass' if r['gates_passed'] else 'FAIL'} ({r['seconds']} s)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("runs", nargs="+")
    p.add_argument("--data", required=True)
    p.add_argument("--imgsz", type=int, nargs=2, default=(128, 64))
    p.add_argument("--max-steps", type=int, default=10)
    p.add_argument("--rank-crops", type=int, default=32, help="calibration crops the per-layer ranking runs on")
    p.add_argument("--scan-stages", action="store_true",
                   help="diagnosis: keep every quantized conv of one stage in float, stage by stage (ignores 70%%)")
    p.add_argument("--groups", nargs="*", default=None, metavar="PREFIXES",
                   help="with --scan-stages: groups of IR-name prefixes instead of the stages, '+'-joined, e.g. "
                        "/model/conv4/conv4.1/conv2d/+/model/conv4/conv4.1/conv3/")
    p.add_argument("--ac-calib", type=float, nargs="*", default=None, metavar="X",
                   help="instead of the greedy: nncf.quantize_with_accuracy_control, max_drop X, validated on the "
                        "CALIBRATION crops by embedding agreement with FP32 (0.5 * (mean cosine + top-1))")
    a = p.parse_args()
    import openvino as ov

    from osnet_edge.calibration import sources
    from osnet_edge.checkpoint import model_meta
    from osnet_edge.export import fidelity as fid
    from osnet_edge.export import openvino_ir_ops as irops
    from osnet_edge.export import quantize_openvino as qov
    from osnet_edge.models import build_model

    for run in map(Path, a.runs):
        model = build_model(None, weights=str(run / "model-best.pth"), input_size=tuple(a.imgsz))
        meta = model_meta(model, precision="int8")
        meta.input_format = "uint8_nhwc"  # what export_model gives the OpenVINO INT8 writer
        split = sources.calibration_split(f"market1501:{a.data}", seed=0)
        fp32 = qov.fp32_ov_model(model, meta)
        rank_batch = next(split.calib.batches(meta, a.rank_crops))
        work = run / "int8" / "mixed"
        work.mkdir(parents=True, exist_ok=True)
        if a.scan_stages:
            base = irops.quantized_convs(qov.quantize(fp32, split.calib, meta))
            groups = {"conv1+conv2": ("/model/conv1/", "/model/conv2/"), "conv3": ("/model/conv3/",),
                      "conv4": ("/model/conv4/",), "conv5": ("/model/conv5/",),
                      "conv4+conv5": ("/model/conv4/", "/model/conv5/")}
            if a.groups:
                groups = {g: tuple(g.split("+")) for g in a.groups}
            scan = []
            for g, prefixes in groups.items():
                keep = [n for n in base if n.startswith(prefixes)]
                t0 = time.time()
                q = qov.quantize(fp32, split.calib, meta, keep_fp32=keep)
                qov.set_meta(q, meta)
                xml = work / "scan.xml"
                ov.save_model(q, str(xml), compress_to_fp16=False)
                conv = irops.int8_conv_fraction(xml)
                r = row(fid.fidelity_report(model, str(xml), split.held_out, split.query), keep, conv,
                        time.time() - t0)
                r["float_stage"] = g
                r["goals_met"] = meets(r)
                scan.append(r)
                print(f"{run.name} {g} in float: {fmt(r)}", file=sys.stderr, flush=True)
                (HERE / f"mixed_{run.name}_{'groups' if a.groups else 'stages'}.json").write_text(json.dumps(
                    {"run": str(run), "imgsz": a.imgsz, "rows": scan}, indent=1, default=fid._json_default))
            continue
        if a.ac_calib:
            ac_rows = []
            base = set(irops.quantized_convs(qov.quantize(fp32, split.calib, meta)))  # what plain PTQ quantizes
            for x in a.ac_calib:
                t0 = time.time()
                q = qov.quantize(fp32, split.calib, meta, max_drop=x, validation=split.calib)
                qov.set_meta(q, meta)
                xml = work / f"ac_{x}.xml"
                ov.save_model(q, str(xml), compress_to_fp16=False)
                conv = irops.int8_conv_fraction(xml)
                rep = fid.fidelity_report(model, str(xml), split.held_out, split.query)
                r = row(rep, [], conv, time.time() - t0)
                r["max_drop_on_calib"] = x
                r["float_convs"] = sorted(base - set(irops.quantized_convs(q)))
                r["n_float"] = len(r["float_convs"])
                r["goals_met"] = meets(r)
                ac_rows.append(r)
                print(f"{run.name} accuracy control on calib, max_drop {x}: {fmt(r)}", file=sys.stderr, flush=True)
                (HERE / f"mixed_{run.name}_ac_calib.json").write_text(json.dumps(
                    {"run": str(run), "imgsz": a.imgsz, "goals": GOALS, "rows": ac_rows}, indent=1,
                    default=fid._json_default))
            continue
        keep = []
        rows = []
        out = HERE / f"mixed_{run.name}.json"
        for step in range(a.max_steps):
            t0 = time.time()
            q = qov.quantize(fp32, split.calib, meta, keep_fp32=keep)
            qov.set_meta(q, meta)
            xml = work / f"step{step}.xml"
            ov.save_model(q, str(xml), compress_to_fp16=False)
            conv = irops.int8_conv_fraction(xml)
            rep = fid.fidelity_report(model, str(xml), split.held_out, split.query)
            r = row(rep, keep, conv, time.time() - t0)
            # only convolutions NNCF quantized (the channel gates already run in float)
            r["worst_on_calib"] = rank_for_float(fp32, q, rank_batch, exclude=keep)[:8]
            r["goals_met"] = meets(r)
            rows.append(r)
            print(f"{run.name} step {step}: {fmt(r)}", file=sys.stderr, flush=True)
            out.write_text(json.dumps({"run": str(run), "imgsz": a.imgsz, "goals": GOALS, "rows": rows}, indent=1,
                                      default=fid._json_default))
            if r["goals_met"] or r["int8_conv"] < GOALS["int8_share"]:
                break
            nxt = next((x["name"] for x in r["worst_on_calib"] if x["name"] not in keep), None)
            if nxt is None:
                break
            keep = keep + [nxt]
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__" and sys.argv[1:2] != ["--table"]:
    main()


def table(paths):
    """Markdown rows of the JSONs this script wrote (NOTES.md)."""
    for p in paths:
        d = json.loads(Path(p).read_text())
        for r in d["rows"]:
            what = r.get("float_stage") or (f"AC on calib, max_drop {r['max_drop_on_calib']}"
                                            if "max_drop_on_calib" in r else f"greedy step {r['n_float']}")
            last = r["keep_fp32"][-1].replace("/model/", "").replace("/Conv/WithoutBiases", "").replace("/Conv", "") \
                if r["keep_fp32"] and "float_stage" not in r and "max_drop_on_calib" not in r else ""
            print(f"| {Path(d['run']).name} | {what} | {r['n_float']} | {last} | {r['cosine_mean']:.4f} | "
                  f"{r['cosine_min']:.4f} | {100 * r['top1']:.1f} | {100 * r['identity']:.1f} | "
                  f"{100 * r['rank1'][0]:.0f}→{100 * r['rank1'][1]:.0f} | "
                  f"{100 * r['mAP'][0]:.1f}→{100 * r['mAP'][1]:.1f} | "
                  f"{100 * r['int8_conv']:.1f} | {'pass' if r['gates_passed'] else 'fail'} |")


if __name__ == "__main__" and sys.argv[1:2] == ["--table"]:
    table(sys.argv[2:])
