"""Frames per second of the README's tracker loop (examples/track.py) on vtest.avi, FP32 ONNX vs INT8 OpenVINO.

    python benchmarks/results/tracking/measure_fps.py VIDEO DET.txt FP32.onnx INT8.xml [--repeats 3] [--out DIR]

Runs alternate between the models (so load on a shared machine hits both alike); the JSON keeps every run,
the load average and the best/median; the PNG draws them. The annotated frames (4 of them) come from the
last model given.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("video")
    p.add_argument("detections")
    p.add_argument("models", nargs="+")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=str(HERE))
    args = p.parse_args(argv)
    spec = importlib.util.spec_from_file_location("track_example", ROOT / "examples" / "track.py")
    track = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(track)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {m: [] for m in args.models}
    load = []
    tmp = Path(tempfile.mkdtemp(prefix="track-fps-"))
    for _ in range(args.repeats):
        for m in args.models:
            load.append(os.getloadavg()[0])
            png = out / f"vtest_tracks_{Path(m).stem}.png" if m == args.models[-1] else None
            r = track.track_video(args.video, args.detections, m, tmp / f"{Path(m).stem}.txt", png,
                                  draw={100, 300, 500, 700}, threads=args.threads, progress=False)
            runs[m].append(r)
    shutil.rmtree(tmp, ignore_errors=True)
    summary = {}
    for m, rs in runs.items():
        fps = [r["fps_embed_and_associate"] for r in rs]
        summary[Path(m).name] = {"fps_best": max(fps), "fps_median": float(np.median(fps)), "fps_runs": fps,
                                 "fps_with_decoding_runs": [r["fps_with_decoding"] for r in rs],
                                 "frames": rs[0]["frames"], "boxes": rs[0]["detections"], "track_ids": rs[0]["tracks"]}
    result = {"video": str(args.video), "detections": str(args.detections), "threads": args.threads,
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "load_average_1min": load, "note": "random-weight models (timing only); shared machine",
              "models": summary}
    (out / "vtest_fps.json").write_text(json.dumps(result, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = list(summary)
    for k, n in enumerate(names):
        ax.bar(k, summary[n]["fps_median"], color="C0" if "int8" not in n else "C1")
        ax.scatter([k] * len(summary[n]["fps_runs"]), summary[n]["fps_runs"], color="k", s=10, zorder=3)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel("frames/s (embed + associate)")
    ax.set_title(f"tracker loop on vtest.avi, {summary[names[0]]['boxes']} boxes / {summary[names[0]]['frames']} "
                 f"frames\nbars: median, dots: runs; load avg {min(load):.1f}-{max(load):.1f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "vtest_fps.png", dpi=110)
    for n, s in summary.items():
        print(f"{n:<40} median {s['fps_median']:.1f} fps, best {s['fps_best']:.1f} ({len(s['fps_runs'])} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
