"""Before/after bars from ab_*.json (ab.py): crops/s end to end per artifact and batch, landed main vs CPU streams."""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

here = Path(__file__).parent
files = sorted(here.glob("ab_*.json"))
fig, axes = plt.subplots(1, len(files), figsize=(6.5 * len(files), 4.2))
for ax, f in zip(axes if len(files) > 1 else [axes], files):
    rows = [r for r in json.loads(f.read_text()) if r["mode"] == (sys.argv[1] if len(sys.argv) > 1 else "e2e")]
    arts = list(dict.fromkeys(r["artifact"] for r in rows))
    batches = sorted({r["batch"] for r in rows})
    labels, before, after = [], [], []
    for a in arts:
        for b in batches:
            get = {r["version"]: r["throughput"] for r in rows if r["artifact"] == a and r["batch"] == b}
            labels.append(f"{a.split('_', 1)[1]}\nb={b}")
            before.append(get["before"])
            after.append(get["after"])
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], before, 0.4, label="landed main (one call per batch)")
    ax.bar([i + 0.2 for i in x], after, 0.4, label="CPU streams (chunks on each core, all-core batch of 1)")
    for i, (b0, b1) in enumerate(zip(before, after)):
        ax.text(i + 0.2, b1, f"{b1 / b0:.2f}x", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(x), labels, fontsize=7)
    ax.set_ylabel("crops/s (end to end, uint8 crops of varied sizes)")
    ax.set_title(f"{f.stem[3:]} 256x128, 2-core AVX-512 VNNI BF16 EPYC")
    ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(here / "ab_streams.png", dpi=110)
print(here / "ab_streams.png")
