"""SIGKILL at random points of osnet-export, osnet-crops and osnet-train (checkpointing): after every kill the
output is either the previous file, untouched, or a complete new one; never a half-written artifact, crop folder
or checkpoint; and an interrupted training run continues with --resume.

    nice -n 5 .venv/bin/python benchmarks/results/reliability/kill_loop.py --kills 60 --json kills.json

Each child is a fresh `python -c 'main()'` process of the real CLI; it is killed after a delay drawn uniformly from
(0.1, 1.0) x the duration of an un-killed run of the same command, measured first. tests/test_reliability_kill.py
runs a few of these in make test.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

INPUT = (64, 32)
CLI = {"export": "from osnet_edge.export.cli import main",
       "crops": "from osnet_edge.calibration.crops_cli import main",
       "train": "from osnet_edge.training.cli import train_main as main"}


def child(kind: str, argv: list) -> subprocess.Popen:
    code = f"import sys; {CLI[kind]}; sys.exit(main(sys.argv[1:]))"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", code, *argv], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def prepare(work: Path) -> dict:
    """The inputs every run shares: a tiny dataset, a short video with walking figures."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_crops import LANES, make_video

    from osnet_edge.training.synthetic_dataset import make_market_dataset

    work.mkdir(parents=True, exist_ok=True)
    data = work / "market"
    if not data.exists():
        make_market_dataset(data, num_ids=4, images_per_id=6, cams=2, size=INPUT, seed=1)
    video = work / "lanes.avi"
    if not video.exists():
        make_video(video, LANES)
    return {"data": data, "video": video}


# --------------------------------------------------------------------------- one command each: argv and check


def export_argv(run: Path, seed_arch: str = "osnet_x0_25") -> list:
    return ["--arch", seed_arch, "--imgsz", str(INPUT[0]), str(INPUT[1]), "--format", "onnx",
            "-o", str(run / "model.onnx")]


def check_export(run: Path, previous: bytes) -> str:
    """'previous' / 'new' for a sound outcome; raises AssertionError otherwise."""
    import numpy as np

    from osnet_edge import Embedder

    target = run / "model.onnx"
    visible = sorted(p.name for p in run.iterdir() if not p.name.startswith("."))
    assert visible == ["model.onnx"], f"unexpected files after the kill: {visible}"
    data = target.read_bytes()
    if data == previous:
        return "previous"
    f = Embedder(target).embed(np.zeros((2,) + INPUT + (3,), np.uint8))
    assert f.shape == (2, 512) and np.isfinite(f).all()
    return "new"


def crops_argv(inputs, run: Path) -> list:
    return [str(inputs["video"]), "--out", str(run / "crops"), "--per-track", "6", "--no-progress",
            "--write-boxes", str(run / "det.txt")]


def check_crops(run: Path, previous_boxes: bytes) -> str:
    import cv2

    from osnet_edge.calibration.video import read_mot_boxes

    boxes = run / "det.txt"
    assert boxes.is_file(), "the previous det.txt is gone"
    boxes_state = "previous" if boxes.read_bytes() == previous_boxes else "new"
    if boxes_state == "new":
        assert len(read_mot_boxes(boxes)) > 0
    out = run / "crops"
    if not out.exists():
        return f"no folder, det.txt {boxes_state}"
    info = json.loads((out / "osnet_crops.json").read_text())  # written last but one: a folder without it is partial
    jpgs = list(out.rglob("*.jpg"))
    assert jpgs and all(cv2.imread(str(p)) is not None for p in jpgs), "an unreadable crop"
    assert sum(info["summary"]["images"].values()) == len(jpgs) - 1  # + preview.jpg
    return f"complete folder, det.txt {boxes_state}"


def train_argv(inputs, run: Path, epochs: int = 3, resume: bool = False) -> list:
    argv = ["--data", f"market1501:{inputs['data']}", "--arch", "osnet_x0_25", "--input-size", str(INPUT[0]),
            str(INPUT[1]), "--epochs", str(epochs), "--batch-size", "8", "--workers", "0", "--threads", "1",
            "--eval-every", "1", "--no-progress", "--output", str(run / "run"), "--seed", "3"]
    if resume:
        argv += ["--resume", str(run / "run" / "checkpoint.pth")]
    return argv


def check_train(run: Path) -> str:
    import torch

    from osnet_edge.models import build_model

    out = run / "run"
    visible = sorted(p.name for p in out.iterdir() if p.suffix == ".pth" and not p.name.startswith(".")) \
        if out.exists() else []
    for name in visible:  # every checkpoint that has its name is whole
        torch.load(out / name, map_location="cpu", weights_only=True)
    if "model-best.pth" in visible:
        build_model(weights=str(out / "model-best.pth"))
    if "checkpoint.pth" in visible:
        state = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=True)
        return f"checkpoint of epoch {int(state['epoch'])}"
    return "no checkpoint yet"


# --------------------------------------------------------------------------- the loop


# what each command writes under a temporary name: a kill while one exists lands inside the write
WRITING = {"export": ".model.*partial*", "crops": ".crops.partial*", "train": "run/.checkpoint.*partial*"}


def _wait_for(proc, run: Path, pattern: str, extra: float, nth: int = 1, limit: float = 600) -> None:
    """Return `extra` s after the nth file matching `pattern` appears under `run` (or when the child ends)."""
    end, seen = time.monotonic() + limit, set()
    while proc.poll() is None and time.monotonic() < end:
        seen.update(run.glob(pattern))
        if len(seen) >= nth:
            time.sleep(extra)
            return
        time.sleep(0.002)


def run_once(kind: str, inputs: dict, run: Path, delay: float | None, at_write: float | None = None,
             nth: int = 1) -> dict:
    """One child; killed after `delay` s (None: left to finish), or `at_write` s after its nth temporary file
    appears. Checks the outcome; returns a record."""
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    previous = b""
    if kind == "export":
        previous = (inputs["previous_onnx"]).read_bytes()
        shutil.copy(inputs["previous_onnx"], run / "model.onnx")
        argv = export_argv(run)
    elif kind == "crops":
        previous = b"1,1,10,10,20,40,1,-1,-1,-1\n"
        (run / "det.txt").write_bytes(previous)
        argv = crops_argv(inputs, run)
    else:
        argv = train_argv(inputs, run)
    t0 = time.monotonic()
    proc = child(kind, argv)
    killed = False
    if at_write is not None:
        _wait_for(proc, run, WRITING[kind], at_write, nth)
        delay = 0
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = True
    elapsed = time.monotonic() - t0
    err = proc.stderr.read().decode(errors="replace")
    if not killed:
        assert proc.returncode == 0, f"{kind} failed un-killed (rc {proc.returncode}): {err[-500:]}"
    outcome = {"export": lambda: check_export(run, previous), "crops": lambda: check_crops(run, previous),
               "train": lambda: check_train(run)}[kind]()
    rec = {"kind": kind, "killed": killed, "after_s": round(elapsed, 2), "outcome": outcome,
           "partial_files": len([p for p in run.rglob(".*partial*")])}
    if kind == "train" and killed and outcome.startswith("checkpoint"):
        # --resume continues the killed run to the end
        proc = child("train", train_argv(inputs, run, resume=True))
        err = proc.communicate(timeout=600)[1].decode(errors="replace")
        assert proc.returncode == 0, f"--resume failed: {err[-800:]}"
        rec["resumed"] = check_train(run)
        assert rec["resumed"] == "checkpoint of epoch 3", rec
    return rec


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=60, help="kills in all, shared by the three commands")
    p.add_argument("--work", default="/tmp/osnet-edge-kills")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    from tqdm import tqdm

    work = Path(args.work)
    inputs = prepare(work)
    rng = random.Random(args.seed)
    durations, records = {}, []
    for kind in ("export", "crops", "train"):  # an un-killed run of each: its duration sets the kill window
        if kind == "export":
            base = work / "base_export"
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir()
            proc = child("export", export_argv(base, "osnet_x0_25"))
            assert proc.wait() == 0, proc.stderr.read().decode()[-500:]
            inputs["previous_onnx"] = base / "model.onnx"
        t0 = time.monotonic()
        records.append(run_once(kind, inputs, work / f"run_{kind}", None))
        durations[kind] = time.monotonic() - t0
    kinds = ["export", "crops", "train"]
    bar = tqdm(total=args.kills, desc="kills", unit="kill", file=sys.stderr)
    failures = []
    while sum(r["killed"] for r in records) < args.kills:
        kind = kinds[len(records) % 3]
        delay = rng.uniform(0.1, 1.0) * durations[kind]
        try:
            rec = run_once(kind, inputs, work / f"run_{kind}", delay)
        except AssertionError as exc:
            rec = {"kind": kind, "killed": True, "after_s": round(delay, 2), "outcome": f"CORRUPT: {exc}"}
            failures.append(rec)
        records.append(rec)
        bar.update(int(rec["killed"]))
    bar.close()
    killed = [r for r in records if r["killed"]]
    summary = {"kills": len(killed), "corrupt": len(failures),
               "by_command": {k: sum(r["kind"] == k for r in killed) for k in kinds},
               "outcomes": {o: sum(r["outcome"] == o for r in killed) for o in sorted({r["outcome"] for r in killed})},
               "resumed": sum("resumed" in r for r in killed),
               "unkilled_duration_s": {k: round(v, 1) for k, v in durations.items()},
               "load_average": open("/proc/loadavg").read().split()[:3], "records": records}
    print(json.dumps({k: v for k, v in summary.items() if k != "records"}, indent=1))
    if args.json:
        from osnet_edge.atomic import write_text

        write_text(args.json, json.dumps(summary, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
