"""gallery_recall_latency.png from the bench_gallery.py JSONs in this folder: recall@10 against p50 latency of a
filtered top-10 search, one line per (gallery size, index, query kind), one point per nprobes setting."""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

here = Path(__file__).parent
fig, ax = plt.subplots(figsize=(8.5, 5.2))
for f in sorted(here.glob("gallery-*.json")):
    d = json.loads(f.read_text())
    size = f"10^{len(str(d['n_random'])) - 1}"
    index = f'{d["index"]["index"].split()[0]} {d["index"]["partitions"]}p, load {float(d["loadavg_start"][0]):.0f}'
    for kind, style in (("real", "-o"), ("random", "--s")):
        xs = [r[f"{kind}_p50_ms"] for r in d["sweep"]]
        ys = [r[f"{kind}_recall_at_10"] for r in d["sweep"]]
        line, = ax.plot(xs, ys, style, ms=4, label=f"{size} {index}, {kind} queries")
        for r, x, y in zip(d["sweep"], xs, ys):
            ax.annotate(str(r["nprobes"]), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6,
                        color=line.get_color())
ax.axhline(0.99, color="grey", lw=0.8, ls=":")
ax.axvline(10, color="grey", lw=0.8, ls=":")
ax.set_xscale("log")
ax.set_xlabel("p50 latency, filtered top-10 (ms, log)   [labels: nprobes]")
ax.set_ylabel("recall@10 vs exact")
ax.set_title("osnet-gallery (LanceDB) on a shared 2-core Xeon (1-min load in the legend)")
ax.grid(alpha=0.3)
ax.legend(fontsize=7, loc="lower right")
fig.tight_layout()
fig.savefig(here / "gallery_recall_latency.png", dpi=110)
print(here / "gallery_recall_latency.png")
