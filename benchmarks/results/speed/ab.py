"""Interleaved A/B: the landed main's batch handling (one call per batch; OpenVINO split across its requests by an
AsyncInferQueue) vs CPU streams (the Embedder's concurrent chunks). Same artifacts, same process, 7 interleaved rounds.

usage: python ab.py ARCH BATCHES SECONDS FOLDER   (FOLDER holds ARCH_fp32.onnx, ARCH_fp32.xml, ARCH_int8.xml)
       python ab.py x0_25 1,8,32 2 /tmp/speed  ->  ab_x0_25.json here
"""
import sys, json, numpy as np, openvino as ov
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
from benchmarks.measure import time_interleaved
from benchmarks.runner import bench_crops
from osnet_edge import Embedder
from osnet_edge.runtime.embedder import l2_normalize
O = sys.argv[4].rstrip("/") + "/" if len(sys.argv) > 4 else "./"
arch = sys.argv[1]; batches = [int(b) for b in sys.argv[2].split(",")]; secs = float(sys.argv[3])
crops = bench_crops(32)

def old_ov(path):
    e = Embedder(path, streams=None)
    be = e.backend
    q = ov.AsyncInferQueue(be.compiled, be.n_requests)
    def run_async(batch):
        parts = np.array_split(np.arange(len(batch)), be.n_requests)
        out = np.empty((len(batch), be.feature_dim), np.float32)
        def done(r, idx): out[idx[0]:idx[-1] + 1] = r.get_output_tensor(0).data
        q.set_callback(done)
        for idx in parts:
            if len(idx): q.start_async({0: np.ascontiguousarray(batch[idx[0]:idx[-1] + 1])}, idx)
        q.wait_all(); return out
    def run(batch):
        return run_async(batch) if len(batch) >= 8 else be.run_stream(batch)  # old: async from 8 crops, else one request
    return e, run, lambda c: l2_normalize(run(e.preprocess(c)))

rows = []
cases = []
for f in [f"{arch}_fp32.onnx", f"{arch}_fp32.xml", f"{arch}_int8.xml"]:
    if f.endswith(".onnx"):
        e0 = Embedder(O + f, streams=1)
        cases.append((f, "before", lambda b, e=e0: e.run_batch(b), lambda c, e=e0: e.embed(c), e0))
    else:
        e0, run, emb = old_ov(O + f)
        cases.append((f, "before", run, emb, e0))
    e1 = Embedder(O + f)
    cases.append((f, "after", lambda b, e=e1: e.run_batch(b), lambda c, e=e1: e.embed(c), e1))
for b in batches:
    for mode in ("model", "e2e"):
        fns = []
        for f, tag, run, emb, e in cases:
            x = e.preprocess(crops[:b])
            fns.append((lambda run=run, x=x: run(x)) if mode == "model" else (lambda emb=emb: emb(crops[:b])))
        ts = time_interleaved(fns, b, seconds=secs, rounds=7)
        for (f, tag, *_), t in zip(cases, ts):
            rows.append({"artifact": f, "version": tag, "batch": b, "mode": mode, **t.to_dict()})
            print(f"{f:16s} {tag:6s} b={b:2d} {mode:5s} p50 {t.p50_ms:7.2f} ms {t.throughput:8.1f} crops/s", flush=True)
json.dump(rows, open(f"ab_{arch}.json", "w"), indent=1)
