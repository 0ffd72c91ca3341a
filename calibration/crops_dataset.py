"""A Market-1501-layout pseudo-identity dataset of person crops from one camera's video, without labels.

Boxes come from a MOT-format file when the user has a detector (ids > 0 on every row are taken as tracks
already; det files' -1 ids are linked by IoU), otherwise from background subtraction (static cameras).
Each IoU tracklet of at least `min_track` frames is one identity. Tracklets, not crops, are split between
train and test, so no identity is in both. Every tracklet gives up to `per_track` crops spread evenly over
its frames.

One camera, yet the Market protocol discards gallery images of the query's own identity AND camera: so a
test tracklet's earlier half is written as camera 1 (query/) and its later half as camera 2
(bounding_box_test/). Retrieval then asks: does the later walk of this person rank first among everyone
else's? Training crops are camera 1.

    DIR/bounding_box_train/0001_c1s1_000123_00.jpg   {pid:04d}_c{cam}s1_{frame:06d}_00.jpg
    DIR/query/  DIR/bounding_box_test/
    DIR/tracklets.txt       kept tracklets, MOT format (frame, pid, x, y, w, h, 1, -1, -1, -1)
    DIR/osnet_crops.json    the summary and each tracklet's frames and split
    DIR/preview.jpg         up to 24 identities, one row each, their crops in time order ('t': test)

The folder is written under a temporary name and renamed when complete: bad input leaves nothing behind.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from osnet_edge.calibration.motion import MotionDetector, MotionParams
from osnet_edge.atomic import durable_replace
from osnet_edge.calibration.errors import CalibrationError, VideoEnded
from osnet_edge.calibration.sources import even_sample
from osnet_edge.calibration.video import frame_reader, iter_frames, read_mot_boxes
from osnet_edge.calibration.tracklets import link_tracklets, tracklets_from_ids
from osnet_edge.errors import InputError
from osnet_edge.preprocess import crop_boxes

SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
SPLIT_CAM = {"train": 1, "query": 1, "gallery": 2}
THUMB = (32, 64)          # preview.jpg: width, height of each crop
PREVIEW_IDS = 24


@dataclass
class CropsSummary:
    video: str
    out: str
    boxes_from: str
    frames: int
    tracklets_found: int
    tracklets_kept: int
    min_track: int
    per_track: int
    ids: dict = field(default_factory=dict)      # split -> identities
    images: dict = field(default_factory=dict)   # split -> images

    def table(self) -> str:
        lines = [f"osnet-crops: {self.video} -> {self.out}",
                 f"boxes from        {self.boxes_from}",
                 f"frames read       {self.frames}",
                 f"tracklets         {self.tracklets_found} found, {self.tracklets_kept} kept "
                 f"(>= {self.min_track} frames), up to {self.per_track} crops each",
                 f"{'split':<20}{'ids':>6}{'images':>8}  camera",
                 f"{'bounding_box_train':<20}{self.ids['train']:>6}{self.images['train']:>8}  c1",
                 f"{'query':<20}{self.ids['query']:>6}{self.images['query']:>8}  "
                 f"c1 (earlier half of each test tracklet)",
                 f"{'bounding_box_test':<20}{self.ids['gallery']:>6}{self.images['gallery']:>8}  c2 (later half)"]
        return "\n".join(lines)


def _progress(iterable, total, desc, progress, unit="frame"):
    if not progress:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)


def _frame_total(video) -> int | None:
    """Frame count for the progress bar only (containers' counts are estimates; reading decides)."""
    p = Path(video)
    if p.is_dir():
        return None
    import cv2

    cap = cv2.VideoCapture(str(p))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    return n or None


def motion_boxes(video, params: MotionParams | None = None, progress: bool = True) -> tuple:
    """Background-subtraction boxes of every frame: ({frame_no: (N, 4) xyxy}, frames read)."""
    detect = MotionDetector(params)
    dets, n = {}, 0
    for no, frame in _progress(iter_frames(video), _frame_total(video), f"motion {Path(video).name}", progress):
        boxes = detect(frame)
        n += 1
        if len(boxes):
            dets[no] = boxes
    return dets, n


def write_mot(path, rows) -> None:
    """(frame, id, x1, y1, x2, y2[, score]) rows -> a MOT text file (x, y, w, h), written atomically."""
    from osnet_edge.atomic import write_text

    lines = []
    for r in rows:
        f, i, x1, y1, x2, y2 = r[:6]
        score = r[6] if len(r) > 6 else 1
        lines.append(f"{int(f)},{int(i)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{score:.4g},-1,-1,-1")
    write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def _check_boxes_fit(table: np.ndarray, frame_shape, boxes_path) -> None:
    fh, fw = frame_shape[:2]
    outside = (table[:, 2] >= fw) | (table[:, 3] >= fh) | (table[:, 4] <= 0) | (table[:, 5] <= 0)
    if outside.any():
        r = table[int(np.nonzero(outside)[0][0])]
        raise CalibrationError(f"boxes file {boxes_path} does not match the video: frame {int(r[0])} has box "
                               f"x1,y1,x2,y2={r[2]:.0f},{r[3]:.0f},{r[4]:.0f},{r[5]:.0f} outside the {fw}x{fh} frame")


def _preview(thumbs: dict, test_pids: set, per_track: int, seed: int):
    """One row per identity (up to PREVIEW_IDS, spread over the video), its crops in time order: a glance
    shows whether a pseudo-identity holds one person."""
    import cv2

    pids = sorted(thumbs)
    pids = [pids[i] for i in even_sample(len(pids), PREVIEW_IDS, seed)]
    w, h = THUMB
    rows = []
    for pid in pids:
        row = np.zeros((h, w * per_track, 3), np.uint8)
        for k, t in enumerate(thumbs[pid][:per_track]):
            row[:, k * w:(k + 1) * w] = t
        cv2.putText(row, f"{pid}{'t' if pid in test_pids else ''}", (1, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 255, 255), 1)
        rows.append(row)
    return np.vstack(rows)


def _plan(kept: list, per_track: int, test_frac: float, seed: int) -> list:
    """(pid, split, frame, box) for every crop to write; test tracklets chosen evenly over time."""
    n_test = int(round(test_frac * len(kept)))
    n_test = min(max(n_test, 1), len(kept) - 1)
    test = set(even_sample(len(kept), n_test, seed).tolist())
    plan = []
    for pid, t in enumerate(kept, 1):
        idx = even_sample(len(t), per_track, seed + pid)
        if pid - 1 in test:
            half = max(1, len(idx) // 2)
            parts = [("query", idx[:half]), ("gallery", idx[half:])]
        else:
            parts = [("train", idx)]
        for split, sel in parts:
            plan += [(pid, split, t.frames[i], t.boxes[i]) for i in sel]
    return plan


def build_crops_dataset(video, out, boxes=None, min_track: int = 10, per_track: int = 16, test_frac: float = 0.5,
                        seed: int = 0, params: MotionParams | None = None, write_boxes=None,
                        progress: bool = True) -> CropsSummary:
    """Write the Market-1501-layout dataset of `video` (file or frame folder) to `out`; see the module doc.

    write_boxes: also write every box found (before tracklet filtering) as a MOT det file, e.g. detections
    for a tracker when no detector is at hand.
    """
    import cv2

    video, out = Path(video), Path(out)
    if min_track < 2 or per_track < 2:
        raise CalibrationError(f"--min-track and --per-track must be >= 2 (a test tracklet gives a query and a "
                               f"gallery crop), got {min_track} and {per_track}")
    if not 0 < test_frac < 1:
        raise CalibrationError(f"test fraction must be in (0, 1), got {test_frac}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CalibrationError(f"--out {out} already exists and is not empty; give a new folder")
    read, close = frame_reader(video)          # a video that cannot be opened fails here, before any work
    close()

    if boxes is not None:
        table = read_mot_boxes(boxes)
        if (table[:, 0] < 1).any():
            raise CalibrationError(f"boxes file {boxes} has frame numbers below 1 (MOT frames are 1-based)")
        if (table[:, 1] > 0).all():
            found = tracklets_from_ids(table)
            boxes_from = f"{boxes} (its track ids)"
        else:
            dets = {}
            for row in table:
                dets.setdefault(int(row[0]), []).append(row[2:6])
            found = link_tracklets(dets)
            boxes_from = f"{boxes} (IoU tracklets)"
        n_frames = None
        det_rows = [(r[0], -1, *r[2:6]) for r in table]
    else:
        dets, n_frames = motion_boxes(video, params, progress)
        found = link_tracklets(dets)
        boxes_from = "background subtraction (static camera)"
        det_rows = [(no, -1, *b) for no in sorted(dets) for b in dets[no]]

    kept = [t for t in found if len(t) >= min_track]
    if len(kept) < 2:
        what = f"boxes file {boxes}" if boxes is not None else "background subtraction"
        raise CalibrationError(f"no moving people in {video}: {what} gave {len(found)} tracklets, {len(kept)} of at "
                               f"least {min_track} frames (need 2: one to train, one to test); a static camera "
                               f"with people walking through is needed, or pass --boxes det.txt / a lower --min-track")
    plan = _plan(kept, per_track, test_frac, seed)

    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for d in SPLIT_DIRS.values():
            (tmp / d).mkdir(parents=True)
        by_frame, thumbs = {}, {}
        for item in plan:
            by_frame.setdefault(int(item[2]), []).append(item)
        read, close = frame_reader(video)
        try:
            first = True
            for no in _progress(sorted(by_frame), len(by_frame), f"crops {video.name}", progress):
                try:
                    frame = read(no)
                except VideoEnded as exc:
                    raise CalibrationError(f"boxes file {boxes} does not match the video: {exc}") from None
                if first and boxes is not None:
                    _check_boxes_fit(table, frame.shape, boxes)
                first = False
                for pid, split, f, box in by_frame[no]:
                    try:
                        crop = crop_boxes(frame, np.asarray(box)[None])[0]
                    except InputError as exc:
                        raise CalibrationError(f"frame {no}, tracklet {pid}: {exc}") from None
                    name = tmp / SPLIT_DIRS[split] / f"{pid:04d}_c{SPLIT_CAM[split]}s1_{int(f):06d}_00.jpg"
                    if not cv2.imwrite(str(name), crop):
                        raise CalibrationError(f"could not write {name} (disk full or not writable?)")
                    thumbs.setdefault(pid, []).append(cv2.resize(crop, THUMB))
            if boxes is not None:       # every box must lie within the video, not only the sampled ones
                last = int(table[:, 0].max())
                try:
                    read(last)
                except VideoEnded as exc:
                    raise CalibrationError(f"boxes file {boxes} does not match the video: {exc}") from None
        finally:
            close()

        ids = {s: len({p for p, sp, _, _ in plan if sp == s}) for s in SPLIT_DIRS}
        images = {s: sum(1 for _, sp, _, _ in plan if sp == s) for s in SPLIT_DIRS}
        summary = CropsSummary(str(video), str(out), boxes_from, n_frames if n_frames is not None else
                               int(max(table[:, 0])), len(found), len(kept), min_track, per_track, ids, images)
        test_pids = {p for p, sp, _, _ in plan if sp != "train"}
        track_rows = [(f, pid, *b) for pid, t in enumerate(kept, 1) for f, b in zip(t.frames, t.boxes)]
        write_mot(tmp / "tracklets.txt", track_rows)
        info = {"summary": asdict(summary),
                "tracklets": [{"pid": pid, "source_track": t.track_id, "first_frame": t.first, "last_frame": t.last,
                               "frames": len(t), "split": "test" if pid in test_pids else "train"}
                              for pid, t in enumerate(kept, 1)]}
        (tmp / "osnet_crops.json").write_text(json.dumps(info, indent=1))
        cv2.imwrite(str(tmp / "preview.jpg"), _preview(thumbs, test_pids, per_track, seed),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        if out.exists():
            out.rmdir()                 # empty (checked above): replaced by the complete folder
        durable_replace(tmp, out)  # every crop's data on disk before the folder gets its name
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if write_boxes is not None:
        write_mot(write_boxes, det_rows)
    return summary
