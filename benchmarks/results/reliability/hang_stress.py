"""Stress for the hang seen once: fresh processes that embed with a PyTorch checkpoint, then with an OpenVINO INT8
IR on 2 CPU streams (200 crops), then with ONNX Runtime, then with the INT8 IR again from 4 threads at once.
A watchdog gives each run --limit seconds; a run past it gets its stacks dumped with py-spy (all threads, native
frames) into hangs/, then is killed and counted as a hang.

    nice -n 5 .venv/bin/python benchmarks/results/reliability/hang_stress.py --runs 1000 --parallel 2 --json hang.json

Artifacts (osnet_x0_25 at 256x128, seeded random weights) are made once under --work.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve().parent

CHILD = r"""
import sys, threading
import numpy as np
from osnet_edge import Embedder
from osnet_edge.synthetic import synthetic_crops
ckpt, onnx, int8 = sys.argv[1:4]
crops = list(synthetic_crops(200, seed=int(sys.argv[4])))
a = Embedder(ckpt).embed(crops[:16])                       # torch first: its thread pools are up
with Embedder(int8, streams=2) as e:
    b = e.embed(crops)                                      # 2 streams, 200 crops (the hang seen)
    out = [None] * 4
    def worker(k):
        out[k] = e.embed(crops[k * 50:(k + 1) * 50])
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    [t.start() for t in ts]; [t.join() for t in ts]
    assert np.allclose(np.concatenate(out), b, atol=1e-5)
c = Embedder(onnx).embed(crops)
assert a.shape == (16, 512) and b.shape == c.shape == (200, 512) and np.isfinite(b).all()
print("ok")
"""


def prepare(work: Path) -> tuple:
    import torch

    from osnet_edge.checkpoint import save_checkpoint
    from osnet_edge.export import export_model
    from osnet_edge.models import build_model

    work.mkdir(parents=True, exist_ok=True)
    ckpt, onnx, int8 = work / "x025.pth", work / "x025.onnx", work / "x025_int8.xml"
    if not int8.exists():
        torch.manual_seed(0)
        model = build_model("osnet_x0_25", input_size=(256, 128)).eval()
        save_checkpoint(model, ckpt)
        export_model(model, "onnx", onnx, quiet=True)
        export_model(model, "openvino", int8, int8=True, calib="generated:64", quiet=True, min_cosine=0.0,
                     min_top1=0.0)
    return ckpt, onnx, int8


def dump_stacks(pid: int, dest: Path) -> str:
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        return "py-spy not installed (.venv/bin/pip install py-spy)"
    p = subprocess.run([str(spy), "dump", "--native", "--pid", str(pid)], capture_output=True, text=True, timeout=60)
    dest.write_text(p.stdout + p.stderr)
    return str(dest)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=float("inf"), help="stop after this long (or --runs)")
    ap.add_argument("--runs", type=int, default=1000, help="stop after this many runs")
    ap.add_argument("--parallel", type=int, default=1, help="fresh processes running at once")
    ap.add_argument("--limit", type=float, default=120, help="seconds a run may take before it counts as a hang")
    ap.add_argument("--work", default="/tmp/osnet-edge-hang")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from tqdm import tqdm

    ckpt, onnx, int8 = prepare(Path(args.work))
    hangs_dir = HERE / "hangs"
    t_start = time.monotonic()
    end = t_start + 60 * args.minutes
    runs, hangs, failures, times = 0, [], [], []
    load_start = open("/proc/loadavg").read().split()[:3]
    bar = tqdm(total=args.runs, desc="fresh-process runs", unit="run", file=sys.stderr)
    live: list = []  # (run, Popen, start): --parallel children at once, so imports and inference overlap

    def start(run: int) -> None:
        live.append((run, subprocess.Popen([sys.executable, "-c", CHILD, str(ckpt), str(onnx), str(int8), str(run)],
                                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
                     time.monotonic()))

    started = 0
    while live or (started < args.runs and time.monotonic() < end):
        while len(live) < args.parallel and started < args.runs and time.monotonic() < end:
            start(started)
            started += 1
        run, proc, t0 = live[0]
        try:
            out, err = proc.communicate(timeout=max(0.1, args.limit - (time.monotonic() - t0)))
            if proc.returncode != 0 or "ok" not in out:
                failures.append({"run": run, "rc": proc.returncode, "stderr": err[-1500:]})
        except subprocess.TimeoutExpired:
            hangs_dir.mkdir(exist_ok=True)
            where = dump_stacks(proc.pid, hangs_dir / f"hang_{run}.txt")
            proc.kill()
            proc.communicate()
            hangs.append({"run": run, "stacks": where})
        live.pop(0)
        times.append(time.monotonic() - t0)
        runs += 1
        bar.update(1)
        bar.set_postfix(hangs=len(hangs), failures=len(failures))
    bar.close()
    rec = {"runs": runs, "hangs": len(hangs), "failures": len(failures), "limit_s": args.limit,
           "parallel": args.parallel, "wall_s": round(time.monotonic() - t_start),
           "median_run_s": round(sorted(times)[len(times) // 2], 2) if times else None,
           "load_average_start": load_start, "load_average_end": open("/proc/loadavg").read().split()[:3],
           "sequence": "torch .pth embed(16) -> OpenVINO INT8 2 streams embed(200) -> same Embedder from 4 threads "
                       "-> ONNX Runtime FP32 embed(200)", "hang_records": hangs, "failure_records": failures[:5]}
    print(json.dumps({k: v for k, v in rec.items() if not k.endswith("records")}, indent=1))
    if args.json:
        from osnet_edge.atomic import write_text

        write_text(args.json, json.dumps(rec, indent=1))
    return 1 if hangs or failures else 0


if __name__ == "__main__":
    sys.exit(main())
