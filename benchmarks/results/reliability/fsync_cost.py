"""What the two fsyncs of osnet_edge.atomic cost per write: atomic write_bytes with them (as shipped) against the
same temp-file + rename without them, for a gallery-sized, an artifact-sized and a checkpoint-sized file.

    nice -n 5 .venv/bin/python benchmarks/results/reliability/fsync_cost.py --dir /path/on/the/target/disk
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=None, help="folder on the filesystem to measure (default: a temp folder)")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from osnet_edge import atomic

    folder = Path(args.dir or tempfile.mkdtemp(prefix="fsync-cost-"))
    rows = []
    for label, size in (("4 KiB", 4 << 10), ("1 MiB", 1 << 20), ("10 MiB", 10 << 20)):
        data = os.urandom(size)
        times = {"with fsync": [], "without fsync": []}
        for _ in range(args.reps):
            for mode in times:  # interleaved: both share the disk's noise
                t0 = time.perf_counter()
                if mode == "with fsync":
                    atomic.write_bytes(folder / "f.bin", data)
                else:
                    tmp = folder / ".f.tmp"
                    tmp.write_bytes(data)
                    os.replace(tmp, folder / "f.bin")
                times[mode].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        rows.append({"size": label, "median_ms_with_fsync": round(med["with fsync"], 3),
                     "median_ms_without_fsync": round(med["without fsync"], 3),
                     "extra_ms": round(med["with fsync"] - med["without fsync"], 3)})
        print(rows[-1])
    fs = os.popen(f"df -T {folder} | tail -1").read().split()
    rec = {"folder": str(folder), "filesystem": fs[1] if len(fs) > 1 else "?", "reps": args.reps, "rows": rows,
           "load_average": open("/proc/loadavg").read().split()[:3]}
    print(json.dumps(rec, indent=1))
    if args.json:
        atomic.write_text(args.json, json.dumps(rec, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
