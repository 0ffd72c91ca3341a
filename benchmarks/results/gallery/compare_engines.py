"""Embedded vector engines side by side, for the gallery's choice: ingest, filtered top-10 latency, recall@10
against exact filtered search, persistence, two writers, disk size. One engine per run, in the virtualenv
that has its client (each candidate was installed into its own to measure install size):

    nice -n 5 /tmp/galbench/v-lancedb/bin/python compare_engines.py lancedb 100000 --json out.json

Data: N random unit vectors (512-D, float32), 8 cameras, times uniform over one hour. Queries: random unit
vectors, the hardest case for an approximate index (no cluster structure); filter: camera != the query's
and an entry seen within a 30-minute window (~40% of entries pass). Exact = numpy over the same filter.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

DIM, CAMS, HOUR = 512, 8, 3600.0
BATCH = 10_000


def make_data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cam = rng.integers(0, CAMS, n)
    t0 = rng.uniform(0, HOUR, n)
    t1 = t0 + rng.uniform(1, 60, n)
    return x, cam, t0, t1


def queries(nq, seed=1):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((nq, DIM), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q, rng.integers(0, CAMS, nq), rng.uniform(0, HOUR / 2, nq)


def exact(x, cam, t0, t1, q, qcam, w0, k=10):
    out = []
    for i in range(len(q)):
        ok = (cam != qcam[i]) & (t1 >= w0[i]) & (t0 <= w0[i] + HOUR / 2)
        s = x @ q[i]
        s[~ok] = -np.inf
        out.append(set(np.argpartition(-s, k)[:k].tolist()))
    return out


# --------------------------------------------------------------------------- engines


class Lance:
    def __init__(self, path):
        import lancedb

        self.db = lancedb.connect(path)
        self.t = self.db.open_table("g") if "g" in self.db.table_names() else None

    def add(self, ids, x, cam, t0, t1):
        import pyarrow as pa

        vec = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), pa.float32()), DIM)
        tab = pa.table({"id": pa.array(ids, pa.int64()), "vector": vec, "camera": pa.array([f"c{c}" for c in cam]),
                        "t_first": pa.array(t0), "t_last": pa.array(t1)})
        if self.t is None:
            self.t = self.db.create_table("g", data=tab, exist_ok=True)
            if self.t.count_rows() != len(ids):
                self.t.add(tab)
        else:
            self.t.add(tab)

    def build(self, n):
        self.t.create_index(metric="dot", vector_column_name="vector", index_type="IVF_HNSW_SQ",
                            num_partitions=max(1, n // 100_000) * 4)

    def search(self, q, qcam, w0, k=10, exact=False):
        f = f"camera != 'c{qcam}' AND t_last >= {w0} AND t_first <= {w0 + HOUR / 2}"
        s = self.t.search(q).distance_type("dot").where(f, prefilter=True).limit(k)
        s = s.bypass_vector_index() if exact else s.nprobes(self.nprobes).refine_factor(self.refine)
        return s.to_arrow()["id"].to_pylist()

    def count(self):
        return self.t.count_rows() if self.t is not None else 0

    def close(self):
        self.t = self.db = None

    nprobes, refine = 8, 4


class Milvus:
    def __init__(self, path):
        from pymilvus import DataType, MilvusClient

        self.c = MilvusClient(os.path.join(path, "g.db"))
        if not self.c.has_collection("g"):
            sc = MilvusClient.create_schema(auto_id=False)
            sc.add_field("id", DataType.INT64, is_primary=True)
            sc.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
            sc.add_field("camera", DataType.VARCHAR, max_length=64)
            sc.add_field("t_first", DataType.DOUBLE)
            sc.add_field("t_last", DataType.DOUBLE)
            self.c.create_collection("g", schema=sc)

    def add(self, ids, x, cam, t0, t1):
        rows = [{"id": int(i), "vector": v, "camera": f"c{c}", "t_first": float(a), "t_last": float(b)}
                for i, v, c, a, b in zip(ids, x, cam, t0, t1)]
        self.c.insert("g", rows)

    def build(self, n):
        ip = self.c.prepare_index_params()
        ip.add_index("vector", index_type="HNSW", metric_type="IP", params={"M": 16, "efConstruction": 200})
        self.c.release_collection("g")
        self.c.drop_index("g", "vector") if self.c.list_indexes("g") else None
        self.c.create_index("g", ip)
        self.c.load_collection("g")

    def search(self, q, qcam, w0, k=10, exact=False):
        f = f'camera != "c{qcam}" and t_last >= {w0} and t_first <= {w0 + HOUR / 2}'
        r = self.c.search("g", data=[q.tolist()], limit=k, filter=f, search_params={"params": {"ef": self.ef}})
        return [h["id"] for h in r[0]]

    def count(self):
        return self.c.query("g", filter="", output_fields=["count(*)"])[0]["count(*)"]

    def close(self):
        self.c.close()

    ef = 128


class Qdrant:
    def __init__(self, path):
        from qdrant_client import QdrantClient, models

        self.m = models
        self.c = QdrantClient(path=path)
        if not self.c.collection_exists("g"):
            self.c.create_collection("g", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))

    def add(self, ids, x, cam, t0, t1):
        pl = [{"camera": f"c{c}", "t_first": float(a), "t_last": float(b)} for c, a, b in zip(cam, t0, t1)]
        self.c.upsert("g", points=self.m.Batch(ids=[int(i) for i in ids], vectors=x.tolist(), payloads=pl))

    def build(self, n):
        pass  # local mode has no index: every search is exact

    def search(self, q, qcam, w0, k=10, exact=False):
        m = self.m
        flt = m.Filter(must_not=[m.FieldCondition(key="camera", match=m.MatchValue(value=f"c{qcam}"))],
                       must=[m.FieldCondition(key="t_last", range=m.Range(gte=w0)),
                             m.FieldCondition(key="t_first", range=m.Range(lte=w0 + HOUR / 2))])
        r = self.c.query_points("g", query=q.tolist(), limit=k, query_filter=flt)
        return [p.id for p in r.points]

    def count(self):
        return self.c.count("g").count

    def close(self):
        self.c.close()


class Chroma:
    def __init__(self, path):
        import chromadb

        self.c = chromadb.PersistentClient(path=path)
        self.col = self.c.get_or_create_collection("gallery", configuration={"hnsw": {"space": "ip", "ef_search": 128}})

    def add(self, ids, x, cam, t0, t1):
        step = min(self.c.get_max_batch_size(), 5000)
        for s in range(0, len(ids), step):
            e = s + step
            self.col.add(ids=[str(i) for i in ids[s:e]], embeddings=x[s:e],
                         metadatas=[{"camera": f"c{c}", "t_first": float(a), "t_last": float(b)}
                                    for c, a, b in zip(cam[s:e], t0[s:e], t1[s:e])])

    def build(self, n):
        pass  # HNSW is built as entries are added

    def search(self, q, qcam, w0, k=10, exact=False):
        where = {"$and": [{"camera": {"$ne": f"c{qcam}"}}, {"t_last": {"$gte": float(w0)}},
                          {"t_first": {"$lte": float(w0 + HOUR / 2)}}]}
        r = self.col.query(query_embeddings=[q], n_results=k, where=where)
        return [int(i) for i in r["ids"][0]]

    def count(self):
        return self.col.count()

    def close(self):
        self.col = self.c = None


ENGINES = {"lancedb": Lance, "milvus": Milvus, "qdrant": Qdrant, "chroma": Chroma}


def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def writer(engine, path, start, n):
    """Child process: add n entries with ids start.. in batches of 500; print each acknowledged batch."""
    x, cam, t0, t1 = make_data(n, seed=start)
    try:
        db = ENGINES[engine](path)
        for s in range(0, n, 500):
            ids = np.arange(start + s, start + min(s + 500, n))
            db.add(ids, x[s:s + 500], cam[s:s + 500], t0[s:s + 500], t1[s:s + 500])
            print(f"ack {ids[-1]}", flush=True)
        db.close()
    except Exception as exc:
        print(f"error {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", flush=True)
        return 1
    return 0


def two_writers(engine, path):
    cmd = [sys.executable, __file__, engine, "0", "--writer", path]
    procs = [subprocess.Popen(cmd + [str(st), "5000"], stdout=subprocess.PIPE, text=True) for st in (10**7, 2 * 10**7)]
    outs = [p.communicate()[0] for p in procs]
    errors = [ln for o in outs for ln in o.splitlines() if ln.startswith("error")]
    acked = sum(len([ln for ln in o.splitlines() if ln.startswith("ack")]) * 500 for o in outs)
    return {"errors": errors, "acknowledged": acked}


def kill_during_add(engine, path, rounds=3, seed=0):
    """SIGKILL a writer at a random moment; reopen and check every acknowledged id is there."""
    import signal

    rng = np.random.default_rng(seed)
    out = []
    for r in range(rounds):
        db = ENGINES[engine](path)
        before = db.count()
        db.close()
        start = 3 * 10**7 + r * 10**6
        p = subprocess.Popen([sys.executable, __file__, engine, "0", "--writer", path, str(start), "20000"],
                             stdout=subprocess.PIPE, text=True)
        target, acked = int(rng.integers(1, 20)), []
        for ln in p.stdout:  # kill mid-add: after a random number of acknowledged batches, plus a random delay
            if ln.startswith("ack"):
                acked.append(int(ln.split()[1]))
            if len(acked) >= target or ln.startswith("error"):
                break
        time.sleep(float(rng.uniform(0, 0.2)))
        p.send_signal(signal.SIGKILL)
        acked += [int(ln.split()[1]) for ln in p.communicate()[0].splitlines() if ln.startswith("ack")]
        last = max(acked) if acked else start - 1
        try:
            db = ENGINES[engine](path)
            n = db.count()
            db.close()
            out.append({"acked": last - start + 1, "count_before": before, "count_after": n, "readable": True,
                        "lost": max(0, before + last - start + 1 - n)})
        except Exception as exc:
            out.append({"readable": False, "error": f"{type(exc).__name__}: {exc}"[:200]})
            break
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("engine", choices=sorted(ENGINES))
    ap.add_argument("n", type=int)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--json", default=None)
    ap.add_argument("--writer", nargs=3, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--no-reliability", action="store_true", help="skip the two-writer and SIGKILL checks")
    ap.add_argument("--keep", default=None, help="database folder to keep (default: a temporary one)")
    a = ap.parse_args()
    if os.environ.get("BENCH_TRACE_AFTER"):  # where a run hangs
        import faulthandler

        faulthandler.dump_traceback_later(float(os.environ["BENCH_TRACE_AFTER"]), exit=True)
    if a.writer:
        return writer(a.engine, a.writer[0], int(a.writer[1]), int(a.writer[2]))
    path = a.keep or tempfile.mkdtemp(prefix=f"gal-{a.engine}-", dir="/work/data/gallery")
    res = {"engine": a.engine, "n": a.n, "loadavg_start": open("/proc/loadavg").read().split()[:3]}
    x, cam, t0, t1 = make_data(a.n)
    db = ENGINES[a.engine](path)
    t = time.perf_counter()
    for s in range(0, a.n, BATCH):
        db.add(np.arange(s, min(s + BATCH, a.n)), x[s:s + BATCH], cam[s:s + BATCH], t0[s:s + BATCH], t1[s:s + BATCH])
    res["ingest_per_s"] = a.n / (time.perf_counter() - t)
    t = time.perf_counter()
    db.build(a.n)
    res["index_build_s"] = time.perf_counter() - t
    q, qcam, w0 = queries(a.queries)
    truth = exact(x, cam, t0, t1, q, qcam, w0)
    lat, rec = [], []
    db.search(q[0], qcam[0], w0[0])  # warm-up (loads the index)
    for i in range(a.queries):
        t = time.perf_counter()
        got = db.search(q[i], qcam[i], w0[i])
        lat.append(time.perf_counter() - t)
        rec.append(len(truth[i] & set(got)) / 10)
    res["query_p50_ms"] = 1e3 * float(np.median(lat))
    res["query_p90_ms"] = 1e3 * float(np.percentile(lat, 90))
    res["recall_at_10"] = float(np.mean(rec))
    res["disk_mb"] = du(path) / 2**20
    db.close()
    t = time.perf_counter()
    db = ENGINES[a.engine](path)
    res["reopen_s"], res["count_after_reopen"] = time.perf_counter() - t, db.count()
    db.close()
    if not a.no_reliability:
        res["two_writers"] = two_writers(a.engine, path)
        res["sigkill_during_add"] = kill_during_add(a.engine, path)
    res["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    if not a.keep:
        shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
