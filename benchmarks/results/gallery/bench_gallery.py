"""The gallery's own store (osnet_edge.gallery.store, LanceDB) at scale: ingest, index build, filtered top-10
latency, and recall@10 against exact search, for random unit vectors (timing; the worst case for an
approximate index) and for real embeddings planted among them (recall).

    nice -n 5 .venv/bin/python benchmarks/results/gallery/bench_gallery.py 1000000 --real real.npz \
        --json benchmarks/results/gallery/gallery-1000000.json

--real: an .npz with query/gallery embeddings of real crops (make_real.py writes it from vtest.avi's
osnet-crops folder): its gallery rows join the N random ones (camera 'cam2', times inside the window), its
query rows search with camera != 'cam1'. Random queries search with camera != theirs and a 30-minute window.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from osnet_edge.gallery.entries import Entry
from osnet_edge.gallery.identity import ModelIdentity
from osnet_edge.gallery.store import LanceStore, filter_sql

DIM, CAMS, HOUR, BATCH = 512, 8, 3600.0, 10_000
SWEEP = [(5, 1), (10, 1), (20, 1), (40, 1), (80, 1)]  # (nprobes, refine_factor; 1 = none for IVF_FLAT)


def unit(rng, n):
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_top(x, ok, q, k=10):
    s = x @ q
    s[~ok] = -np.inf
    return set(np.argpartition(-s, k)[:k].tolist())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--real", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--index", default="IVF_FLAT", choices=("IVF_FLAT", "IVF_PQ"))
    ap.add_argument("--dir", default="/work/data/gallery", help="where the temporary gallery goes")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    load = lambda: open("/proc/loadavg").read().split()[:3]  # noqa: E731
    res = {"n_random": a.n, "loadavg_start": load(), "dim": DIM}
    x = unit(rng, a.n)
    cam = np.array([f"c{c}" for c in rng.integers(0, CAMS, a.n)])
    t0 = rng.uniform(0, HOUR, a.n)
    t1 = t0 + rng.uniform(1, 60, a.n)
    real = np.load(a.real) if a.real else None
    if real is not None:
        rg = real["gallery"].astype(np.float32)
        x = np.concatenate([x, rg])
        cam = np.concatenate([cam, np.array(["cam2"] * len(rg))])
        t0 = np.concatenate([t0, np.full(len(rg), 100.0)])
        t1 = np.concatenate([t1, np.full(len(rg), 200.0)])
        res["n_real_gallery"], res["n_real_queries"] = len(rg), len(real["query"])
    n = len(x)
    ids = np.arange(n, dtype=np.int64)
    path = Path(tempfile.mkdtemp(prefix="bench-", dir=a.dir)) / "g"
    store = LanceStore(path, ModelIdentity("bench", 1.0, (256, 128), DIM, "fp32", "random"))
    t = time.perf_counter()
    for s in tqdm(range(0, n, BATCH), desc="ingest", unit="batch", leave=False):
        e = min(s + BATCH, n)
        store.add([Entry(x[i], cam[i], int(i), float(t0[i]), float(t1[i]), "", "track", 1, int(i)) for i in range(s, e)])
    res["ingest_per_s"] = n / (time.perf_counter() - t)
    res["ingest_batch"] = BATCH
    t = time.perf_counter()
    res["index"] = store.build_index(a.index)
    res["index_build_s"] = time.perf_counter() - t
    res["loadavg_after_build"] = load()

    qr = unit(np.random.default_rng(1), a.queries)
    qcam = [f"c{c}" for c in np.random.default_rng(2).integers(0, CAMS, a.queries)]
    w0 = np.random.default_rng(3).uniform(0, HOUR / 2, a.queries)
    rq = [(qr[i], filter_sql(qcam[i], after=w0[i], before=w0[i] + HOUR / 2),
           (cam != qcam[i]) & (t1 >= w0[i]) & (t0 <= w0[i] + HOUR / 2)) for i in range(a.queries)]
    sets = {"random": rq}
    if real is not None:
        okr = cam != "cam1"
        sets["real"] = [(q, filter_sql("cam1"), okr) for q in real["query"][:a.queries].astype(np.float32)]
    truth = {k: [exact_top(x, ok, q) for q, _, ok in v] for k, v in sets.items()}
    store.search(qr[0], 10, rq[0][1], False)  # warm-up: loads the index
    res["sweep"] = []
    for nprobes, refine in SWEEP:
        row = {"nprobes": nprobes, "refine": refine}
        for k, v in sets.items():
            lat, rec = [], []
            for (q, where, _), tr in zip(v, truth[k]):
                t = time.perf_counter()
                got = store.search(q, 10, where, False, nprobes, refine).column("id").to_pylist()
                lat.append(time.perf_counter() - t)
                rec.append(len(tr & set(got)) / 10)
            row[f"{k}_p50_ms"] = 1e3 * float(np.median(lat))
            row[f"{k}_p90_ms"] = 1e3 * float(np.percentile(lat, 90))
            row[f"{k}_recall_at_10"] = float(np.mean(rec))
        row["loadavg"] = load()
        res["sweep"].append(row)
        print(json.dumps(row), flush=True)
    lat = []
    for q, where, _ in rq[:10]:  # exact search through the engine (flat scan + filter), for reference
        t = time.perf_counter()
        store.search(q, 10, where, True)
        lat.append(time.perf_counter() - t)
    res["exact_p50_ms"] = 1e3 * float(np.median(lat))
    res["disk_mb"] = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
    res["loadavg_end"] = load()
    print(json.dumps({k: v for k, v in res.items() if k != "sweep"}, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    shutil.rmtree(path.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
