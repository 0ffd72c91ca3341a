"""Soak: one Embedder embedding continuously with embed_frame on real vtest.avi frames (PETS 2009) with varying box
counts (1-24 boxes a frame, cut around motion-free random places), CPU streams on, for ONNX Runtime FP32,
OpenVINO FP32 and OpenVINO INT8; then the same Embedder shared by 4 threads. Samples RSS, open file descriptors
and threads; checks that the same frame and boxes give the same embeddings at the start and at the end.

    nice -n 5 .venv/bin/python benchmarks/results/reliability/soak.py --crops 1000000 --json soak.json

Growth is reported after warm-up (the first 10% of the crops of each phase): max RSS minus RSS at the end of
warm-up, as a share of the latter. tests/test_reliability_soak.py runs a short version (no timing).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
VIDEO = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def frames_and_boxes(n_frames: int = 60, seed: int = 0, video=VIDEO) -> list:
    """(frame, boxes) pairs: real frames, 1-24 person-sized boxes each (some past the frame edge: clipped)."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n_frames:
        ok, frame = cap.read()
        if not ok:
            break
        h, w = frame.shape[:2]
        k = int(rng.integers(1, 25))
        bw, bh = rng.integers(20, 90, k), rng.integers(50, 200, k)
        x, y = rng.integers(-10, w - 10, k), rng.integers(-10, h - 10, k)
        out.append((frame, np.stack([x, y, x + bw, y + bh], 1).astype(np.float32)))
    cap.release()
    if not out:
        raise SystemExit(f"no frames read from {video}")
    return out


def soak(emb, pairs, crops_goal: int, threads: int = 1, progress=None, sample_every: float = 2.0) -> dict:
    """Embed the pairs round and round until crops_goal crops; samples as (crops, rss, fds, threads)."""
    ref = [emb.embed_frame(f, b) for f, b in pairs[:4]]
    count = [0]
    lock = threading.Lock()
    stop = threading.Event()
    samples = []

    def worker(offset):
        i = offset
        while not stop.is_set():
            f, b = pairs[i % len(pairs)]
            emb.embed_frame(f, b)
            i += threads
            with lock:
                count[0] += len(b)
                if count[0] >= crops_goal:
                    stop.set()
                if progress is not None:
                    progress.update(len(b))

    ts = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    t0 = time.monotonic()
    [t.start() for t in ts]
    while any(t.is_alive() for t in ts):
        samples.append((count[0], rss_bytes(), open_fds(), threading.active_count()))
        for t in ts:
            t.join(timeout=sample_every / len(ts))
    wall = time.monotonic() - t0
    samples.append((count[0], rss_bytes(), open_fds(), threading.active_count()))
    same = all(np.array_equal(r, emb.embed_frame(f, b)) for r, (f, b) in zip(ref, pairs[:4]))
    max_diff = max(float(np.abs(r - emb.embed_frame(f, b)).max()) for r, (f, b) in zip(ref, pairs[:4]))
    return summarize(samples, wall, same, max_diff)


def summarize(samples, wall, same, max_diff) -> dict:
    crops = samples[-1][0]
    warm = [s for s in samples if s[0] >= 0.1 * crops] or samples
    base = warm[0]
    peak = max(s[1] for s in warm)
    return {"crops": crops, "seconds": round(wall, 1), "crops_per_s": round(crops / wall, 1) if wall else None,
            "rss_after_warmup_mb": round(base[1] / 2 ** 20, 1), "rss_max_mb": round(peak / 2 ** 20, 1),
            "rss_end_mb": round(samples[-1][1] / 2 ** 20, 1),
            "rss_growth_after_warmup_pct": round(100 * (peak - base[1]) / base[1], 3),
            "fds": sorted({s[2] for s in warm}), "threads": sorted({s[3] for s in warm}),
            "same_embeddings_start_end": bool(same), "max_abs_diff_start_end": max_diff,
            "samples": [[int(c), round(r / 2 ** 20, 2), fd, th] for c, r, fd, th in thin(samples)]}


def thin(samples: list, keep: int = 300) -> list:
    """At most about `keep` samples for the record (the peak is reported above from all of them)."""
    step = max(1, len(samples) // keep)
    return samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])


def artifacts(work: Path) -> dict:
    import torch

    from osnet_edge.export import export_model
    from osnet_edge.models import build_model

    work.mkdir(parents=True, exist_ok=True)
    paths = {"onnxruntime_fp32": work / "x025.onnx", "openvino_fp32": work / "x025.xml",
             "openvino_int8": work / "x025_int8.xml"}
    if not all(p.exists() for p in paths.values()):
        torch.manual_seed(0)
        model = build_model("osnet_x0_25", input_size=(256, 128)).eval()
        export_model(model, "onnx", paths["onnxruntime_fp32"], quiet=True)
        export_model(model, "openvino", paths["openvino_fp32"], quiet=True)
        export_model(model, "openvino", paths["openvino_int8"], int8=True, calib="generated:64", quiet=True,
                     min_cosine=0.0, min_top1=0.0)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crops", type=int, default=1_000_000, help="crops per backend and mode")
    ap.add_argument("--shared-crops", type=int, default=None, help="crops for the 4-thread phases (default --crops)")
    ap.add_argument("--backends", nargs="+", default=["onnxruntime_fp32", "openvino_fp32", "openvino_int8"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 4], help="phases: 1 = one caller, 4 = shared")
    ap.add_argument("--append", action="store_true", help="keep the phases already in --json")
    ap.add_argument("--work", default="/tmp/osnet-edge-soak")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from tqdm import tqdm

    from osnet_edge import Embedder

    paths = artifacts(Path(args.work))
    pairs = frames_and_boxes()
    results = {"video": str(VIDEO), "frames": len(pairs), "boxes_per_frame": [int(min(len(b) for _, b in pairs)),
                                                                               int(max(len(b) for _, b in pairs))],
               "load_average_start": open("/proc/loadavg").read().split()[:3], "runs": {}}
    if args.json and Path(args.json).exists() and args.append:
        results["runs"] = json.loads(Path(args.json).read_text())["runs"]
    for threads in args.threads:
        for name in args.backends:
            goal = args.crops if threads == 1 else (args.shared_crops or args.crops)
            with Embedder(paths[name]) as emb, tqdm(total=goal, desc=f"{name} x{threads}", unit="crop",
                                                    file=sys.stderr, mininterval=2) as bar:
                r = soak(emb, pairs, goal, threads, bar)
                r["embedder"] = repr(emb)
            r["load_average_end"] = open("/proc/loadavg").read().split()[:3]
            results["runs"][f"{name} threads={threads}"] = r
            print(f"{name} threads={threads}: {r['crops']} crops, {r['crops_per_s']}/s, RSS {r['rss_after_warmup_mb']}"
                  f" -> max {r['rss_max_mb']} MB ({r['rss_growth_after_warmup_pct']}%), fds {r['fds']}, threads "
                  f"{r['threads']}, same embeddings: {r['same_embeddings_start_end']}", file=sys.stderr)
            if args.json:  # after every phase, so a long soak stopped midway keeps what it measured
                from osnet_edge.atomic import write_text

                write_text(args.json, json.dumps(results, indent=1))
    results["load_average_end"] = open("/proc/loadavg").read().split()[:3]
    if args.json:
        from osnet_edge.atomic import write_text

        write_text(args.json, json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
