"""Table (markdown, stdout) and figure (summary.png) of the measure.py JSONs in this folder."""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rows():
    for path in sorted(HERE.glob("*_openvino.json")) + sorted(HERE.glob("*_onnx.json")):
        r = json.loads(path.read_text())
        run, fmt = path.stem.rsplit("_", 1)
        ptq = r["calibration"].get("ptq")
        stages = ([("PTQ", ptq, None)] if ptq else []) + [("QAT" if ptq else "PTQ", r, r)]
        for stage, d, full in stages:
            ret = d.get("retrieval") or {}
            yield {"run": run, "format": fmt, "stage": stage, "cos_mean": d["cosine_mean"], "cos_min": d["cosine_min"],
                   "top1": d["top1_agreement"],
                   "identity": (full or {}).get("extra", {}).get("top1_identity_agreement") if full else d.get("identity"),
                   "r1_fp32": ret.get("fp32", {}).get("rank1"), "r1_int8": ret.get("int8", {}).get("rank1"),
                   "map_fp32": ret.get("fp32", {}).get("mAP"), "map_int8": ret.get("int8", {}).get("mAP"),
                   "int8_convs": r["extra"].get("int8_conv_fraction") if full else None,
                   "passed": r["passed"] if full else False,
                   "qat_s": r["calibration"].get("qat_seconds") if full and ptq else None}


def pct(x):
    return "-" if x is None else f"{100 * x:.1f}"


def main():
    rs = list(rows())
    print("| model (recipe) | format | stage | mean cos | min cos | top-1 agr % | identity agr % | rank-1 FP32→INT8 | "
          "mAP FP32→INT8 | INT8 convs % | gates | QAT s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rs:
        print(f"| {r['run']} | {r['format']} | {r['stage']} | {r['cos_mean']:.4f} | {r['cos_min']:.4f} | {pct(r['top1'])} | "
              f"{pct(r['identity'])} | {pct(r['r1_fp32'])}→{pct(r['r1_int8'])} | {pct(r['map_fp32'])}→{pct(r['map_int8'])} | "
              f"{pct(r['int8_convs'])} | {'pass' if r['passed'] else 'fail'} | {r['qat_s'] or '-'} |")
    (HERE / "summary.json").write_text(json.dumps(rs, indent=2))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(max(13.0, 0.9 * len(rs)), 5))
    labels = [f"{r['run']} {'OV' if r['format'] == 'openvino' else r['format']} {r['stage']}" for r in rs]
    for ax, key, title, gate in ((axes[0], "cos_min", "min cosine FP32 vs INT8", 0.95),
                                 (axes[1], "top1", "top-1 neighbour agreement", 0.95),
                                 (axes[2], "identity", "top-1 identity agreement", None)):
        vals = [r[key] or 0 for r in rs]
        ax.bar(range(len(rs)), vals, color=["tab:red" if r["stage"] == "PTQ" else "tab:green" for r in rs])
        if gate:
            ax.axhline(gate, ls="--", c="k", lw=1)
        ax.set_xticks(range(len(rs)), labels, fontsize=7, rotation=90)
        ax.set_ylim(min(vals + [0.9]) - 0.02, 1.0)
        ax.set_title(title, fontsize=9)
    fig.suptitle("INT8 on held-out vtest.avi tracklets (red: post-training, green: quantization-aware fine-tuned)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(HERE / "summary.png", dpi=110)
    print(f"wrote {HERE / 'summary.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
