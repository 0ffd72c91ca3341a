"""Tracker (IoU + embedding cosine) and the tracker loop of docs/tracking.md (examples/track.py) on a generated video:
two figures cross, identities must hold. Plumbing: a random-weight model, generated figures."""
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from osnet_edge.calibration.crops_dataset import write_mot
from osnet_edge.tracking import Tracker

from test_crops import FIG_W, W, make_video
from test_runtime_artifacts import onnx_path

ROOT = Path(__file__).resolve().parents[1]


def _example():
    spec = importlib.util.spec_from_file_location("track_example", ROOT / "examples" / "track.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_appearance_overrides_overlap():
    e1, e2 = np.eye(4, dtype=np.float32)[:2]
    t = Tracker()
    a, b = [10, 10, 30, 60], [14, 12, 34, 62]     # boxes overlapping by IoU 0.62
    assert t.update([a, b], [e1, e2]).tolist() == [1, 2]
    # the boxes stay, the appearances swap: each box must go to the track it looks like
    assert t.update([a, b], [e2, e1]).tolist() == [2, 1]
    # a box that looks like nothing seen starts a new track even where an old one was
    assert t.update([a], [np.eye(4, dtype=np.float32)[3]]).tolist() == [3]


def test_lost_track_found_again_by_appearance_only():
    e1, e2 = np.eye(4, dtype=np.float32)[:2]
    t = Tracker(max_age=5)
    t.update([[0, 0, 20, 50]], [e1])
    t.update([], [])
    t.update([], [])
    # reappears nearby but not overlapping: appearance alone continues track 1; an unknown look starts track 2
    assert t.update([[30, 0, 50, 50], [45, 0, 65, 50]], [e1, e2]).tolist() == [1, 2]
    t.update([], [])
    # the same look across the frame is someone else: too far to have walked in 2 frames
    assert t.update([[300, 0, 320, 50]], [e1]).tolist() == [3]
    for _ in range(6):
        t.update([], [])
    assert t.update([[30, 0, 50, 50]], [e1]).tolist() == [4]      # older than max_age: forgotten


# two figures crossing in the middle of the frame, slightly offset in height
CROSSING = [(1, 60, 8, 80, 4, 0), (1, 60, W - FIG_W - 8, 92, -4, 0)]


@pytest.fixture(scope="module")
def crossing(tmp_path_factory):
    d = tmp_path_factory.mktemp("crossing")
    gt = make_video(d / "cross.avi", CROSSING, frames=60)
    rows = [(f, -1, *b) for f in sorted(gt) for b in gt[f].values()]   # a perfect detector: ids unknown
    write_mot(d / "det.txt", rows)
    return d, gt


def test_tracker_loop_keeps_identities_through_crossing(crossing, tmp_path):
    d, gt = crossing
    track = _example()
    png = tmp_path / "frames.png"
    r = track.track_video(d / "cross.avi", d / "det.txt", onnx_path(), tmp_path / "tracks.txt", png,
                          draw={10, 25, 30, 45}, progress=False)
    assert r["frames"] == 60 and r["detections"] == 120 and r["fps_embed_and_associate"] > 0
    out = np.loadtxt(tmp_path / "tracks.txt", delimiter=",")
    assert out.shape == (120, 10)
    owner = {}
    for f, tid, x, y, w, h in out[:, :6]:
        fig = [k for k, g in gt[int(f)].items() if np.allclose(g, (x, y, x + w, y + h), atol=0.01)]
        owner.setdefault(int(tid), set()).update(fig)
    assert len(owner) == 2 and all(len(v) == 1 for v in owner.values()), owner   # one figure per id, no swap
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 0


def test_detections_past_the_video_one_line(crossing, tmp_path, capsys):
    d, gt = crossing
    late = tmp_path / "late.txt"
    write_mot(late, [(f, -1, 10, 10, 40, 80) for f in (5, 61, 90)])
    track = _example()
    out = tmp_path / "tracks.txt"
    assert track.main([str(d / "cross.avi"), str(late), str(onnx_path()), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "up to frame 90" in err[0] and "ends at frame 60" in err[0], err
    assert not out.exists()
