"""osnet-crops: generated video (coloured figures moving over a static textured background) -> tracklets ->
Market-1501 layout that the dataset parser, the calibration sources and the CLI accept. Plumbing only:
generated crops say nothing about accuracy."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from osnet_edge.calibration import load_source
from osnet_edge.calibration.crops_cli import main as crops_main
from osnet_edge.calibration.crops_dataset import build_crops_dataset, motion_boxes, write_mot
from osnet_edge.calibration.errors import CalibrationError
from osnet_edge.calibration.sources import calibration_split
from osnet_edge.calibration.tracklets import iou_matrix, link_tracklets
from osnet_edge.training.datasets import load_dataset

W, H, FIG_W, FIG_H = 320, 240, 24, 60
COLOURS = [(40, 40, 220), (220, 60, 40), (40, 200, 60), (0, 200, 220)]


def figure_boxes(frame_no, figures):
    """{figure index: xyxy} of the figures visible in frame_no (1-based)."""
    out = {}
    for k, (start, end, x0, y0, vx, vy) in enumerate(figures):
        if start <= frame_no <= end:
            t = frame_no - start
            x, y = x0 + vx * t, y0 + vy * t
            if 0 <= x and x + FIG_W <= W and 0 <= y and y + FIG_H <= H:
                out[k] = (x, y, x + FIG_W, y + FIG_H)
    return out


def make_video(path, figures, frames=70, seed=0):
    """MJPG .avi of figures (start, end, x0, y0, vx, vy) over a fixed textured background; returns gt boxes."""
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(rng.integers(40, 220, (H, W, 3), dtype=np.uint8), (0, 0), 3)  # smooth texture
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (W, H))
    assert writer.isOpened()
    gt = {}
    for no in range(1, frames + 1):
        img = bg.copy()
        gt[no] = figure_boxes(no, figures)
        for k, (x1, y1, x2, y2) in gt[no].items():
            col = COLOURS[k % len(COLOURS)]
            cv2.rectangle(img, (int(x1), int(y1) + 12), (int(x2) - 1, int(y2) - 1), col, -1)         # body
            cv2.circle(img, (int(x1) + FIG_W // 2, int(y1) + 6), 6, (200, 180, 160), -1)            # head
            cv2.rectangle(img, (int(x1), int(y1) + 36), (int(x2) - 1, int(y2) - 1), tuple(c // 2 for c in col), -1)
        writer.write(img)
    writer.release()
    return gt


# three figures in separate lanes; the third walks in late. All enter after the background model's warm-up.
LANES = [(1, 70, 2, 10, 4, 0), (1, 70, W - FIG_W - 2, 90, -4, 0), (30, 70, 10, 170, 5, 0)]


@pytest.fixture(scope="module")
def lanes_video(tmp_path_factory):
    p = tmp_path_factory.mktemp("video") / "lanes.avi"
    return p, make_video(p, LANES)


def test_iou_and_linking():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 40]], float)
    iou = iou_matrix(a, np.array([[5, 0, 15, 10], [20, 20, 30, 40]], float))
    assert iou[0, 0] == pytest.approx(50 / 150) and iou[1, 1] == 1 and iou[0, 1] == 0
    dets = {f: np.array([[f, 0, f + 10, 30], [100 - f, 50, 110 - f, 80]], float) for f in range(1, 31)}
    dets[12] = dets[12][:1]                          # one missed detection: the gap is bridged
    tracks = link_tracklets(dets, max_gap=2)
    assert [len(t) for t in tracks] == [30, 29]
    dets[12] = np.array([[12, 0, 22, 30], [88, 50, 108, 80]], float)  # a blob 2x wider: not the same person
    assert [len(t) for t in link_tracklets(dets, max_gap=0)] == [30, 11, 1, 18]
    assert len(link_tracklets(dets, max_gap=0, max_size_change=10)) == 2


def test_motion_tracklets_follow_each_figure(lanes_video):
    path, gt = lanes_video
    dets, n = motion_boxes(path, progress=False)
    assert n == 70
    kept = [t for t in link_tracklets(dets) if len(t) >= 10]
    assert len(kept) == 3
    owners = []
    for t in kept:                                   # each tracklet stays on one figure the whole time
        ious = [max((iou_matrix(b, g)[0, 0] for g in gt[f].values()), default=0) for f, b in zip(t.frames, t.boxes)]
        assert min(ious) > 0.5
        owner = {k for f, b in zip(t.frames, t.boxes) for k, g in gt[f].items() if iou_matrix(b, g)[0, 0] > 0.5}
        assert len(owner) == 1
        owners.append(owner.pop())
    assert sorted(owners) == [0, 1, 2]


def test_dataset_layout_loads_everywhere(lanes_video, tmp_path, capsys):
    path, _ = lanes_video
    out = tmp_path / "crops"
    assert crops_main([str(path), "--out", str(out), "--per-track", "6", "--no-progress",
                       "--write-boxes", str(tmp_path / "det.txt")]) == 0
    table = capsys.readouterr().out
    assert "3 kept" in table and "bounding_box_test" in table
    assert f"wrote {out / 'preview.jpg'}" in table                     # what it wrote besides the crops, said
    assert f"wrote {tmp_path / 'det.txt'}: " in table and "MOT det format (frame, -1, x, y, w, h" in table
    from osnet_edge.calibration import read_mot_boxes                   # the documented reader: back as xyxy

    det = np.loadtxt(tmp_path / "det.txt", delimiter=",")
    back = read_mot_boxes(tmp_path / "det.txt", min_side=0)
    assert f"{len(back)} boxes" in table and len(back) == len(det)
    np.testing.assert_allclose(back[:, 4:6], det[:, 2:4] + det[:, 4:6], atol=1e-6)
    ds = load_dataset(f"market1501:{out}")
    assert ds.num_train_pids >= 1 and len(ds.query) and len(ds.gallery)
    train_files = {Path(s.path).name[:4] for s in ds.train}
    test_files = {Path(s.path).name[:4] for s in ds.query + ds.gallery}
    assert not train_files & test_files and len(train_files | test_files) == 3
    assert {s.camid for s in ds.query} == {0} and {s.camid for s in ds.gallery} == {1}
    assert {s.pid for s in ds.query} == {s.pid for s in ds.gallery}   # every query has a gallery match
    for s in ds.query:                               # queries come from earlier frames than their gallery
        later = [int(Path(g.path).name[10:16]) for g in ds.gallery if g.pid == s.pid]
        assert int(Path(s.path).name[10:16]) < min(later)
    cs = load_source(str(out), progress=False)
    assert cs.source.startswith("market1501:") and cs.has_identities and len(cs) == len(ds.train)
    split = calibration_split(str(out), holdout=str(out), progress=False)
    assert split.query is not None and len(split.held_out) == len(ds.gallery)
    tracks = np.loadtxt(out / "tracklets.txt", delimiter=",")
    assert len(np.unique(tracks[:, 1])) == 3
    assert cv2.imread(str(out / "preview.jpg")).shape == (3 * 64, 6 * 32, 3)   # one row per identity
    assert np.loadtxt(tmp_path / "det.txt", delimiter=",").shape[1] == 10

    again = tmp_path / "again"                       # the written det file works as --boxes (IoU-linked)
    assert crops_main([str(path), "--out", str(again), "--boxes", str(tmp_path / "det.txt"), "--per-track", "6",
                       "--no-progress"]) == 0
    assert "3 kept" in capsys.readouterr().out


def test_boxes_with_track_ids_are_the_identities(lanes_video, tmp_path):
    path, gt = lanes_video
    rows = [(f, k + 1, *b) for f in sorted(gt) for k, b in gt[f].items()]   # a MOT gt / tracker output
    write_mot(tmp_path / "gt.txt", rows)
    s = build_crops_dataset(path, tmp_path / "out", boxes=tmp_path / "gt.txt", per_track=4, progress=False)
    assert s.tracklets_found == 3 and s.tracklets_kept == 3 and "track ids" in s.boxes_from
    assert s.frames == 70 and sum(s.images.values()) == 12


def _fails(capsys, argv, out, match):
    assert crops_main(argv + ["--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.partial*"))


def test_bad_input_one_line_nothing_written(lanes_video, tmp_path, capsys):
    path, _ = lanes_video
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video at all")
    _fails(capsys, [str(broken)], tmp_path / "o1", "could not be opened")

    static = tmp_path / "static.avi"
    make_video(static, [], frames=40)
    _fails(capsys, [str(static)], tmp_path / "o2", "no moving people")

    late = tmp_path / "late.txt"                     # boxes for frames the 70-frame video does not have
    write_mot(late, [(f, 1 + (f > 100), 10, 10, 30, 60) for f in range(60, 121)])
    _fails(capsys, [str(path), "--boxes", str(late)], tmp_path / "o3", "does not match the video")

    outside = tmp_path / "outside.txt"               # boxes of a bigger video
    write_mot(outside, [(f, k, 600, 400, 630, 460) for f in range(1, 30) for k in (1, 2)])
    _fails(capsys, [str(path), "--boxes", str(outside)], tmp_path / "o4", "outside the 320x240 frame")


def test_refuses_non_empty_out(lanes_video, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(CalibrationError, match="not empty"):
        build_crops_dataset(lanes_video[0], tmp_path / "x", progress=False)
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
