"""SIGKILL a process in the middle of adding to a gallery, again and again, and check after every kill that the
gallery opens and holds every acknowledged entry (an add that returned), and no half-written batch.

    nice -n 5 .venv/bin/python benchmarks/results/gallery/kill_loop.py 25 --json benchmarks/results/gallery/kill_loop.json

Each round starts a writer (a child interpreter) that adds batches of 200 entries through Gallery.add_entries and
prints each batch's last id once the call returns; after a random number of acknowledged batches plus a
random delay (so the kill lands at a random point inside the next add) the parent kills it with SIGKILL.
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from osnet_edge.gallery import Gallery

BATCH = 200
WRITER = """
import sys, numpy as np
from osnet_edge.gallery import Entry, Gallery, ModelIdentity
path, start = sys.argv[1], int(sys.argv[2])
g = Gallery(path, ModelIdentity("osnet_x0_25", 0.25, (256, 128), 512, "fp32", "kill-loop"))
rng = np.random.default_rng(start)
for b in range(10**6):
    x = rng.standard_normal((200, 512)).astype(np.float32)
    ids = range(start + 200 * b, start + 200 * (b + 1))
    g.add_entries([Entry(v / np.linalg.norm(v), "c1", i, 0, 1, id=i) for v, i in zip(x, ids)])
    print("ack", ids[-1], flush=True)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rounds", type=int)
    ap.add_argument("--json")
    a = ap.parse_args()
    path = Path(tempfile.mkdtemp(prefix="kill-", dir="/work/data/gallery")) / "g"
    rng = np.random.default_rng(0)
    res = {"rounds": [], "loadavg_start": open("/proc/loadavg").read().split()[:3]}
    acked_all: set = set()
    for r in range(a.rounds):
        start = 10**7 * (r + 1)
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(start)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        target, acked = int(rng.integers(1, 8)), []
        for line in p.stdout:
            acked.append(int(line.split()[1]))
            if len(acked) >= target:
                break
        delay = float(rng.uniform(0, 0.3))
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        acked += [int(ln.split()[1]) for ln in p.communicate()[0].split("\n") if ln.startswith("ack")]
        for last in acked:
            acked_all |= set(range(last - BATCH + 1, last + 1))
        g = Gallery(path)
        ids = set(g.store.rows(columns=("id",)).column("id").to_pylist())
        round_ids = {i for i in ids if start <= i < start + 10**7}
        row = {"round": r, "killed_after_acks": len(acked), "delay_s": round(delay, 3), "signal": -p.returncode,
               "entries": len(ids), "lost_acknowledged": len(acked_all - ids),
               "committed_unacknowledged": len(round_ids) - BATCH * len(acked), "half_batches": len(round_ids) % BATCH}
        res["rounds"].append(row)
        print(json.dumps(row), flush=True)
    res["kills"] = len(res["rounds"])
    res["lost_acknowledged_total"] = max(r["lost_acknowledged"] for r in res["rounds"])  # cumulative per round
    res["half_batches_total"] = sum(r["half_batches"] for r in res["rounds"])
    res["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    print(json.dumps({k: v for k, v in res.items() if k != "rounds"}))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0 if res["lost_acknowledged_total"] == 0 and res["half_batches_total"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
