"""PNG plots beside the JSON: throughput, speed-up and latency of a run, and the β x ρ Pareto plot of a sweep."""
from __future__ import annotations

from pathlib import Path


def _plt():
    from osnet_edge.deps import require

    matplotlib = require("matplotlib", "osnet-bench plots")
    matplotlib.use("Agg")  # no display on camera boxes or CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    from osnet_edge.atomic import atomic_path

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        fig.clf()
    return path


_MODE_TITLES = {"model": "model only (pre-made tensors)", "e2e": "end to end (uint8 crops -> embeddings)"}


def _row_of(rows, name, mode, batch):
    return next((r for r in rows if r["artifact"] == name and r["mode"] == mode and r["batch"] == batch), None)


def _value(v) -> str:
    """Three significant digits, no exponent for the ranges benchmarks give (0.05 ms .. 99999 crops/s)."""
    return f"{v:.3g}" if v < 1000 else f"{v:.0f}"


def run_figure(rows, title="osnet-bench"):
    """The figure of plot_run: columns = modes (model only, end to end); top row throughput (crops/s,
    value and speed-up over PyTorch eager on each bar), bottom row latency per batch call (bar = p50,
    whisker up to p99, both values on the bar). Groups = batch sizes, one bar per artifact, one colour
    per artifact throughout, eager baselines hatched; one legend for the whole figure."""
    plt = _plt()
    modes = [m for m in ("model", "e2e") if any(r["mode"] == m for r in rows)]
    batches = sorted({r["batch"] for r in rows})
    names = list(dict.fromkeys(r["artifact"] for r in rows))
    baseline = {r["artifact"] for r in rows if r.get("baseline")}
    width = 0.8 / max(1, len(names))
    panel_w = max(5.5, 1.2 + 0.42 * len(names) * len(batches))  # ~0.4 in per bar keeps rotated labels apart
    fig, axes = plt.subplots(2, len(modes), figsize=(panel_w * len(modes), 9.0), squeeze=False)
    handles = {}
    for col, mode in enumerate(modes):
        ax_t, ax_l = axes[0][col], axes[1][col]
        top_t, top_l = 0.0, 0.0
        for i, name in enumerate(names):
            style = dict(color=f"C{i % 10}", edgecolor="black", linewidth=0.4,
                         hatch="//" if name in baseline else None)
            for j, b in enumerate(batches):
                r = _row_of(rows, name, mode, b)
                if r is None:
                    continue
                x = j + (i - (len(names) - 1) / 2) * width
                thr = r["throughput"]
                bar = ax_t.bar(x, thr, width, label=name, **style)
                handles.setdefault(name, bar)
                text = _value(thr)
                if r.get("speedup") is not None and not r.get("baseline"):
                    text += f"  {r['speedup']:.1f}x"
                ax_t.annotate(text, (x, thr), textcoords="offset points", xytext=(0, 2), ha="center", va="bottom",
                              rotation=90, fontsize=7)
                top_t = max(top_t, thr)
                p50, p99 = r.get("p50_ms"), r.get("p99_ms")
                if p50 is None:
                    continue
                ax_l.bar(x, p50, width, **style)
                if p99 is not None and p99 > p50:
                    ax_l.errorbar(x, p50, yerr=[[0], [p99 - p50]], fmt="none", ecolor="black", elinewidth=0.8,
                                  capsize=2)
                peak = max(p50, p99 or p50)
                ax_l.annotate(f"{_value(p50)} / {_value(p99)}" if p99 is not None else _value(p50), (x, peak),
                              textcoords="offset points", xytext=(0, 2), ha="center", va="bottom", rotation=90,
                              fontsize=7)
                top_l = max(top_l, peak)
        for ax, top in ((ax_t, top_t), (ax_l, top_l)):
            ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
            ax.set_yscale("log")  # x0_25 and x1_0, batch 1 and 32 differ by ~10x; a linear axis flattens them
            if top > 0:
                ax.set_ylim(top=top * 30)  # headroom for the rotated value labels on a log axis
            ax.grid(axis="y", alpha=0.3)
        ax_t.set_ylabel("throughput, crops / s (higher is better)\nlabels: value, speed-up over eager", fontsize=9)
        ax_l.set_ylabel("latency per batch call, ms (lower is better)\nlabels: p50 / p99", fontsize=9)
        ax_t.set_title(_MODE_TITLES[mode], fontsize=10)
        ax_l.set_title("latency: bar p50, whisker up to p99", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.legend(list(handles.values()), list(handles), loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(len(handles), 3), fontsize=8, frameon=False,
               title="hatched: PyTorch eager FP32 baseline" if baseline else None, title_fontsize=8)
    return fig


def plot_run(rows, path, title="osnet-bench") -> Path:
    """Throughput and latency (p50 / p99 per batch call) per mode, batch size and artifact, values on the
    bars, one legend (see run_figure). The speed-up over PyTorch eager is printed on each bar: the ratio
    is what survives a noisy machine."""
    return _save(run_figure(rows, title), path)


def pareto_front(points):
    """Indices of points not dominated (lower cost and higher accuracy), sorted by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_sweep(rows, path, title="OSNet β x ρ sweep") -> Path:
    """Paper rank-1 (Market1501) against Mult-Adds and against measured per-crop latency; Pareto fronts drawn."""
    plt = _plt()
    pts = [r for r in rows if r.get("paper_r1") is not None and not r.get("baseline")]
    model_rows = [r for r in pts if r["mode"] == "model"] or pts
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    panels = (
        ("Mult-Adds (M, log scale)", lambda r: r["mult_adds"] / 1e6, axes[0]),
        ("measured latency per crop, model only (ms, log scale)", lambda r: r["mean_ms"] / r["batch"], axes[1]),
    )
    for xlabel, get_x, ax in panels:
        points = [(get_x(r), r["paper_r1"]) for r in model_rows]
        for beta in sorted({r["beta"] for r in model_rows}, reverse=True):
            sel = [(get_x(r), r["paper_r1"], r["rho"]) for r in model_rows if r["beta"] == beta]
            ax.scatter([p[0] for p in sel], [p[1] for p in sel], label=f"β={beta}", s=30)
            for x, y, rho in sel:
                ax.annotate(f"ρ={rho}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6)
        front = pareto_front(points)
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "k--", lw=1, alpha=0.6,
                label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("paper Table 6 rank-1, Market1501 (%)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)

