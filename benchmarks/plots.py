"""PNG plots beside the JSON: throughput / speed-up of a run, and the β x ρ Pareto plot of a sweep."""
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


def plot_run(rows, path, title="osnet-bench") -> Path:
    """Two panels per mode (model only, end to end): crops/s per batch size, one bar per artifact.

    Bars carry the speed-up over PyTorch eager: the ratio is what survives a noisy machine.
    """
    plt = _plt()
    modes = [m for m in ("model", "e2e") if any(r["mode"] == m for r in rows)]
    batches = sorted({r["batch"] for r in rows})
    names = list(dict.fromkeys(r["artifact"] for r in rows))
    fig, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes), 4.5), squeeze=False)
    width = 0.8 / max(1, len(names))
    for ax, mode in zip(axes[0], modes):
        for i, name in enumerate(names):
            xs, ys, labels = [], [], []
            for j, b in enumerate(batches):
                r = next((r for r in rows if r["artifact"] == name and r["mode"] == mode and r["batch"] == b), None)
                if r is None:
                    continue
                xs.append(j + (i - (len(names) - 1) / 2) * width)
                ys.append(r["throughput"])
                labels.append("" if r.get("speedup") is None or r.get("baseline") else f"{r['speedup']:.1f}x")
            bars = ax.bar(xs, ys, width, label=name)
            for bar, text in zip(bars, labels):
                if text:
                    ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                                va="bottom", fontsize=7)
        ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
        ax.set_yscale("log")  # x0_25 and x1_0 differ by ~10x; a linear axis flattens the slow rows
        ax.set_ylabel("crops / s, log scale (higher is better)")
        ax.set_title({"model": "model only (pre-made tensors)", "e2e": "end to end (uint8 crops -> embeddings)"}[mode])
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


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

