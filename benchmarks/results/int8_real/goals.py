"""The INT8 goals, model by model: every real-footage model through the one-command path, OpenVINO IR and the
Q/DQ ONNX (TensorRT's explicit-quantization form), post-training and, where that is refused, with --qat.

    NNCF_EXTENSION_LOAD_TIMEOUT=0 nice -n 5 .venv/bin/python -W ignore benchmarks/results/int8_real/goals.py \
        /work/data/int8_torchreid/tr_tri /work/data/int8_torchreid/tr_ls /work/data/runs/x025_tri ... \
        --data /work/data/vtest_crops                                   # -> goals.json (resumable)
    .venv/bin/python benchmarks/results/int8_real/goals.py --table --data /work/data/vtest_crops
                                        # -> the tables in NOTES.md, README.md; goals.png (--data: spreads to fill)

Each row is what `osnet-export --weights W --imgsz H W --format F --int8 --calib market1501:DATA --qat` does
(--qat fine-tunes only when post-training INT8 misses a gate): the default gates, held-out = the test tracklets
(never trained or calibrated on). A run folder holds model.pth (train_torchreid.py: torchreid 0.2.5's model
code and losses) or model-best.pth (osnet-train); its input size is read from the run's config.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE))
OUT = HERE / "goals.json"


def run_facts(run: Path) -> dict:
    """weights, input size, training pipeline and loss of a run folder."""
    if (run / "model.pth").is_file():
        t = json.loads((run / "train.json").read_text())
        return {"weights": run / "model.pth", "imgsz": tuple(t["imgsz"]), "pipeline": "torchreid 0.2.5",
                "arch": t.get("arch", "osnet_x0_25"),
                "loss": "softmax+triplet" if t["loss"] == "triplet" else "softmax+LS", "epochs": t["epochs"],
                "fp32_map_full": round(100 * t["mAP"], 1)}
    c = json.loads((run / "config.json").read_text())
    res = json.loads((run / "result.json").read_text()) if (run / "result.json").is_file() else {}
    loss = "softmax+triplet" if c.get("weight_t") else "softmax+LS"
    m = res.get("best_mAP") or (res.get("last_eval") or {}).get("mAP")
    return {"weights": run / "model-best.pth", "imgsz": tuple(c["input_size"]), "pipeline": "osnet-train", "arch": c["arch"],
            "loss": loss, "epochs": c.get("epochs"), "fp32_map_full": None if m is None else round(100 * m, 1)}


def backfill(rows) -> None:
    """Rows measured before the row carried the decisive correct-matches share: read it from the kept
    artifact's fidelity report (a refused artifact leaves none)."""
    for r in rows:
        if "correct_kept_decisive" in r or not r["accepted"]:
            continue
        rep = next(iter(sorted((Path(r["run"]) / f"goals_{r['format']}").glob("*.fidelity.json"))), None)
        if rep is not None:
            k = json.loads(rep.read_text()).get("correct_kept") or {}
            r["correct_kept_decisive"] = (k.get("decisive") or {}).get("share")


def backfill_spread(rows, data: str) -> None:
    """Rows measured before the report carried the activation spread (export/coverage.py): measured the way the
    export does, on the FP32 model and the same calibration crops (the OpenVINO split, seed 0)."""
    from osnet_edge import build_model
    from osnet_edge.calibration import sources
    from osnet_edge.export import coverage as cov
    from osnet_edge.export.fidelity import embedder_for
    from osnet_edge.export.quantize_openvino import CALIB_SIZE

    by_run = {}
    for r in rows:
        if r.get("activation_spread") is not None:
            continue
        if r["run"] not in by_run:
            f = run_facts(Path(r["run"]))
            model = build_model(None, weights=str(f["weights"]), input_size=f["imgsz"]).eval()
            split = sources.calibration_split(f"market1501:{data}", n_calib=CALIB_SIZE, n_holdout=sources.DEFAULT_SIZE,
                                              seed=0)
            with cov.recording_peaks(model) as peaks:
                embedder_for(model, batch_size=32)(list(split.calib.crops))
            by_run[r["run"]] = cov.spread(cov.stacked(peaks))
        r["activation_spread"] = by_run[r["run"]]


def measure(runs, data: str, formats, out: Path = OUT, options: dict | None = None) -> None:
    from osnet_edge import build_model
    from torchreid_int8 import export_row

    options = {"qat": True, **(options or {})}
    rows = json.loads(out.read_text())["rows"] if out.exists() else []
    done = {(r["run"], r["format"]) for r in rows}
    for run in map(Path, runs):
        f = run_facts(run)
        model = None
        for fmt in formats:
            if (str(run), fmt) in done:
                continue
            model = model or build_model(None, weights=str(f["weights"]), input_size=f["imgsz"]).eval()
            work = run / f"goals_{fmt}" if not options.keys() - {"qat"} else run / f"trial_{fmt}"
            work.mkdir(exist_ok=True)
            print(f"== {run.name} {fmt}", file=sys.stderr, flush=True)
            r, rep = export_row(model, f["weights"], f["imgsz"], fmt, data, work, f"{run.name} {fmt}", **options)
            ptq = (rep.get("calibration") or {}).get("ptq")
            bound = (rep.get("extra") or {}).get("weights_only_8bit")
            rows.append({"run": str(run), "format": fmt, **{k: v for k, v in f.items() if k != "weights"},
                         "stage": "--qat" if ptq else "post-training",
                         "ptq_failures": None if not ptq else ptq.get("failures"),
                         "weights_only_8bit": bound, "options": options,
                         "activation_spread": (rep.get("extra") or {}).get("activation_spread"), **r})
            out.write_text(json.dumps({"rows": rows}, indent=1, default=str))
    print(f"wrote {out}", file=sys.stderr)


def _pct(v):
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _x(v):
    return "n/a" if v is None else f"{v:.2f}x"


def _d(v):
    return "n/a" if v is None else f"{v + 0.0:+.1f}".replace("-0.0", "0.0").replace("+0.0", "0.0")


def _ordered(rows) -> list:
    """torchreid-code models first, then by architecture, input size, loss; OpenVINO before Q/DQ."""
    return sorted(rows, key=lambda r: (r["pipeline"] != "torchreid 0.2.5", r["arch"], r["imgsz"][0], r["loss"],
                                       r["format"] != "openvino"))


def _spread(r) -> str:
    s = r.get("activation_spread")
    if not s:
        return "n/a"
    return f"**{s['spread']:.0f}x**" if s["too_wide"] else f"{s['spread']:.1f}x"


def _how(r) -> str:
    if not r["accepted"] and (r.get("options") or {}).get("qat") is False:
        return "post-training (`--qat` not run)"
    return r["stage"]


def table(rows) -> str:
    head = ("| model (pipeline, loss, input) | format | accepted | how | mean / min cos | decisive top-1 | "
            "correct kept, decisive (all) | rank-1 / mAP Δ | INT8 convs | speed-up | 8-bit weights alone | "
            "activation spread |\n|" + "---|" * 12 + "\n")
    out = []
    for r in _ordered(rows):
        b = r.get("weights_only_8bit")
        bound = "—" if not b else ("pass" if b["passed"] else f"miss ({_pct(b.get('correct_kept'))} kept)")
        fmt = "OpenVINO IR" if r["format"] == "openvino" else "Q/DQ ONNX"
        out.append(f"| {r['arch']} ({r['pipeline']}, {r['loss']}, {r['imgsz'][0]}x{r['imgsz'][1]}) | {fmt} | "
                   f"{'**yes**' if r['accepted'] else 'refused'} | {_how(r)} | "
                   f"{r['mean_cos']:.4f} / {r['min_cos']:.3f} | {_pct(r['decisive_top1'])} | "
                   f"{_pct(r.get('correct_kept_decisive'))} ({_pct(r['correct_kept'])}) | "
                   f"{_d(r['rank1_delta'])} / {_d(r['map_delta'])} | "
                   f"{_pct(r['int8_share'])} | {_x(r['speedup'])} | {bound} | {_spread(r)} |")
    return head + "\n".join(out) + "\n"


def short(rows) -> str:
    """The README's form: per format, how many models INT8 holds on, and how."""
    lines = ["| format | models | accepted post-training | accepted with --qat | refused |", "|---|---|---|---|---|"]
    for fmt, name in (("openvino", "OpenVINO INT8 IR"), ("onnx", "Q/DQ ONNX (TensorRT's form)")):
        rs = [r for r in rows if r["format"] == fmt]
        if not rs:
            continue
        ptq = sum(r["accepted"] and r["stage"] == "post-training" for r in rs)
        qat = sum(r["accepted"] and r["stage"] == "--qat" for r in rs)
        lines.append(f"| {name} | {len(rs)} | {ptq} | {qat} | {len(rs) - ptq - qat} |")
    refused = [r for r in rows if not r["accepted"]]
    bound_missed = sum(bool(r.get("weights_only_8bit")) and not r["weights_only_8bit"]["passed"] for r in refused)
    models = len({r["run"] for r in rows})
    wide = [r for r in refused if (r.get("activation_spread") or {}).get("too_wide")]
    spreads = [r["activation_spread"]["spread"] for r in rows if r.get("activation_spread") and r["accepted"]]
    narrow_refused = sorted({round(r["activation_spread"]["spread"]) for r in refused if r.get("activation_spread")
                             and not r["activation_spread"]["too_wide"]})
    text = (f"{models} models. Of the {len(refused)} refusals, 8-bit weights alone already missed the gates in "
            f"{bound_missed}" + (" (INT8 cannot hold there; the refusal names FP16)" if bound_missed else
                                 ": the loss was in the 8-bit activations every time") + ".")
    if wide:
        n_wide = len({r["run"] for r in wide})
        lo, hi = (f(r["activation_spread"]["spread"] for r in wide) for f in (min, max))
        text += (f" {len(wide)} of them ({n_wide} model{'s' if n_wide > 1 else ''}) come from the activations "
                 f"themselves: they span {lo:.0f}-{hi:.0f}x between calibration crops"
                 + (f" (the accepted models: {min(spreads):.1f}-{max(spreads):.1f}x"
                    + (f"; the other refusals: {', '.join(f'{v}x' for v in narrow_refused)}" if narrow_refused else "")
                    + ")" if spreads else "")
                 + ", more than one static 8-bit range per tensor can serve; the refusal says so and names FP16.")
    return "\n".join(lines + [""] + textwrap.wrap(text, 112)) + "\n"


def qdq_forms(before, now) -> str:
    """The Q/DQ ONNX rows of the symmetric form (goals_qdq_symmetric.json) beside the shifted form's."""
    head = ("| model (pipeline, loss, input) | activations | accepted | how | mean / min cos | decisive top-1 | "
            "correct kept, decisive | rank-1 / mAP Δ |\n|" + "---|" * 8 + "\n")
    out = []
    old = {r["run"]: r for r in before}
    for r in _ordered([r for r in now if r["format"] == "onnx"]):
        for form, x in (("symmetric (before)", old.get(r["run"])), ("shifted (now)", r)):
            if x is None:
                continue
            out.append(f"| {r['arch']} ({r['pipeline']}, {r['loss']}, {r['imgsz'][0]}x{r['imgsz'][1]}) | {form} | "
                       f"{'**yes**' if x['accepted'] else 'refused'} | {_how(x)} | "
                       f"{x['mean_cos']:.4f} / {x['min_cos']:.3f} | {_pct(x['decisive_top1'])} | "
                       f"{_pct(x.get('correct_kept_decisive'))} | {_d(x['rank1_delta'])} / {_d(x['map_delta'])} |")
    return head + "\n".join(out) + "\n"


def plot(rows) -> Path:
    """goals.png: the two retrieval gates per model and format, refused rows hatched, the thresholds drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _ordered(rows)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    labels = [f"{r['arch'].replace('osnet_', '')} {r['loss'].replace('softmax+', '')} {r['imgsz'][0]}x{r['imgsz'][1]}"
              f" {'tr' if r['pipeline'].startswith('torchreid') else 'ot'} {'OV' if r['format'] == 'openvino' else 'QDQ'}"
              for r in rows]
    y = range(len(rows))
    for ax, key, gate, title in ((axes[0], "decisive_top1", 0.95, "decisive top-1 agreement"),
                                 (axes[1], "correct_kept_decisive", 0.97, "correct matches kept (decisive)")):
        vals = [100 * (r.get(key) or 0) for r in rows]
        for i, (v, r) in enumerate(zip(vals, rows)):
            ax.barh(i, v, color="tab:blue" if r["format"] == "openvino" else "tab:orange",
                    hatch=None if r["accepted"] else "//", edgecolor="black", linewidth=0.5)
        ax.axvline(100 * gate, color="red", linestyle="--", linewidth=1)
        ax.set_xlim(0, 101)
        ax.set_title(f"{title} (gate {100 * gate:g}%)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(list(y), labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle("INT8 one-command path on vtest.avi models (tr: torchreid 0.2.5 code, ot: osnet-train; "
                 "hatched: refused)", fontsize=10)
    fig.tight_layout()
    out = HERE / "goals.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def fill(path: Path, tag: str, body: str) -> None:
    text = path.read_text()
    new, n = re.subn(rf"<!-- {tag} -->.*?<!-- /{tag} -->", lambda m: f"<!-- {tag} -->\n{body}<!-- /{tag} -->",
                     text, flags=re.S)
    if not n:
        raise SystemExit(f"{path}: no <!-- {tag} --> block")
    path.write_text(new)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*")
    p.add_argument("--data")
    p.add_argument("--formats", nargs="+", default=["openvino", "onnx"])
    p.add_argument("--table", action="store_true", help="write the tables from goals.json")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="export_model options of a trial (e.g. qat_epochs=30 calib_size=600), rows to --json")
    p.add_argument("--json", default=str(OUT))
    a = p.parse_args()
    if a.runs:
        if not a.data:
            p.error("--data is needed to measure")
        options = {k: json.loads(v) for k, v in (x.split("=", 1) for x in a.set)}
        measure(a.runs, a.data, a.formats, Path(a.json), options)
    if a.table:
        rows = json.loads(OUT.read_text())["rows"]
        backfill(rows)
        if a.data:
            backfill_spread(rows, a.data)
        OUT.write_text(json.dumps({"rows": rows}, indent=1, default=str))
        fill(HERE / "NOTES.md", "int8-goals", table(rows))
        fill(ROOT / "README.md", "int8-goals", short(rows))
        before = HERE / "goals_qdq_symmetric.json"
        if before.exists():
            fill(HERE / "NOTES.md", "qdq-forms", qdq_forms(json.loads(before.read_text())["rows"], rows))
        plot(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
