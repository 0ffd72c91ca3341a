"""A run's log.csv (one row per epoch; trimmed on resume) and its curve.png."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

LOG_FIELDS = ("epoch", "lr", "loss", "ce", "triplet", "mutual", "acc", "images_per_s", "epoch_s",
              "mAP", "rank1", "rank5", "rank10", "rank20", "peer_mAP", "ensemble_mAP")


class CsvLog:
    def __init__(self, path: Path, resume: bool):
        self.path = path
        if not (resume and path.is_file()):
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(LOG_FIELDS)

    def write(self, row: dict):
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(k, "")) for k in LOG_FIELDS])


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def truncate_log(path: Path, epoch: int):
    """On resume, drop rows of epochs after the checkpoint (a run killed between log and checkpoint)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    kept = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= epoch]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(kept)


def plot_curve(csv_path, png_path, title: str = "") -> Path | None:
    """loss / accuracy / mAP / rank-1 per epoch from a run's log.csv, as a PNG (None if no matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed (pip install 'osnet-edge[bench]'): no curve.png", file=sys.stderr)
        return None
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    ep = [int(r["epoch"]) for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].plot(ep, [float(r["loss"]) for r in rows], label="loss")
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("training loss")
    a2 = ax[0].twinx()
    a2.plot(ep, [100 * float(r["acc"]) for r in rows], color="tab:orange", label="train acc")
    a2.set_ylabel("training accuracy (%)")
    ev = [(int(r["epoch"]), float(r["mAP"]), float(r["rank1"])) for r in rows if r.get("mAP")]
    if ev:
        ax[1].plot([e[0] for e in ev], [100 * e[1] for e in ev], "o-", label="mAP")
        ax[1].plot([e[0] for e in ev], [100 * e[2] for e in ev], "s-", label="rank-1")
        ax[1].legend()
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel("%")
    ax[1].grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return Path(png_path)
