"""Reproduce benchmarks/results/int8/fidelity_*.json/.png: NNCF defaults vs the osnet-edge INT8 recipe, one run.

    python benchmarks/results/int8/reproduce_fidelity.py CHECKPOINT MARKET_ROOT [OUT_DIR [HOLDOUT_ROOT]]

CHECKPOINT: a re-ID-trained OSNet (.pth); MARKET_ROOT: a Market-1501-layout dataset. Calibration uses 300
train crops; the report uses held-out gallery + query crops of the test identities (never calibrated on),
of MARKET_ROOT or, when given, of HOLDOUT_ROOT (1200 gallery crops + 400 queries).
Writes fidelity_<arch>.json (all recipes, with per-layer drift of each) and fidelity_<arch>.png beside it.
"""
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def main(argv):
    warnings.filterwarnings("ignore")

    from osnet_edge import build_model
    from osnet_edge.calibration import calibration_split
    from osnet_edge.checkpoint import model_meta
    from osnet_edge.export import fidelity as fid
    from osnet_edge.export.layer_errors import layer_errors
    from osnet_edge.export import quantize_openvino as qo

    ckpt, root = argv[0], argv[1]
    out = Path(argv[2]) if len(argv) > 2 else Path(__file__).parent
    model = build_model(weights=ckpt).eval()
    meta = model_meta(model, "int8")
    holdout = argv[3] if len(argv) > 3 else None
    split = calibration_split(root, 300, 1200 if holdout else 300, seed=0, holdout=holdout)
    results = {"checkpoint": Path(ckpt).name, "arch": model.arch, "input_size": list(model.input_size),
               "data": str(root), "holdout": holdout, "calib_crops": len(split.calib), "held_out_crops": len(split.held_out) +
               len(split.query), "recipes": {}}
    for name in ("nncf-default", "reid", "reid+equalize"):
        t = time.time()
        recipe = name.split("+")[0]
        source, eq = qo.equalized(model, split.calib, name.endswith("+equalize"))
        fp32 = qo.fp32_ov_model(source, meta)
        q = qo.quantize(fp32, split.calib, meta, recipe=recipe)
        cm = qo.compile_cpu(q)  # f32, as the artifact declares (the CPU plugin's default is bf16 where it can)
        rep = fid.fidelity_report(model, lambda c, cm=cm: qo._run_all(cm, list(qo._batches(c, meta, 32))),
                                  split.held_out, split.query, extra={**qo.int8_conv_fraction(q), **eq})
        rows = layer_errors(fp32, q, next(split.held_out.batches(meta, 16)), max_layers=24)
        print(f"== {name} ({time.time() - t:.0f} s)\n{rep.summary()}", flush=True)
        results["recipes"][name] = {**rep.to_dict(), "layers": rows}
    out.mkdir(parents=True, exist_ok=True)
    stem = f"fidelity_{model.arch}_{model.input_size[0]}x{model.input_size[1]}"
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2, default=fid._json_default))
    plot(results, out / f"{stem}.png")
    print(f"wrote {out / stem}.json/.png")


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.5))
    names = list(results["recipes"])
    metrics = [("cosine_mean", "mean cos"), ("cosine_min", "min cos"), ("top1_agreement", "top-1 NN"),
               ("top1_clear", "top-1 NN, gap>=0.005"), ("top5_agreement", "top-5 NN")]
    for r in results["recipes"].values():
        r["top1_clear"] = r["extra"]["top1_agreement_by_fp32_gap"]["0.005"]["top1_agreement"]
    x = np.arange(len(metrics))
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        r = results["recipes"][n]
        a.bar(x + i * width, [r[k] for k, _ in metrics], width, label=n)
        b.plot([row["rel_err"] for row in r["layers"]], marker="o", label=n)
    a.axhline(0.98, ls="--", c="gray", lw=0.8)
    a.axhline(0.90, ls=":", c="gray", lw=0.8)
    a.set_xticks(x + 0.4 - width / 2, [m for _, m in metrics], fontsize=8)
    a.set_ylim(0.5, 1.005)
    a.set_title(f"{results['arch']} INT8 vs FP32, {results['held_out_crops']} held-out crops")
    a.legend()
    b.set_xlabel("layer (network order, sampled)")
    b.set_ylabel("relative error vs FP32")
    b.set_title("where the error enters")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1:])
