"""Reading footage for crops: a video file or a MOT img1/ frame folder frame by frame, and MOT det/gt box files.
Shared by mot:VIDEO,BOXES calibration, osnet-crops and the tracker example."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from osnet_edge.calibration.errors import CalibrationError, VideoEnded

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
MIN_BOX_SIDE = 8        # boxes smaller than this (px) are detector noise, not people
MAX_COORD = 1e6         # no video frame is wider: past this a row is damaged (and float sums lose the box)


def read_mot_boxes(path, min_side: int = MIN_BOX_SIDE) -> np.ndarray:
    """MOT det/gt text (frame, id, x, y, w, h, conf, ...; frames 1-based) -> (N, 6) [frame, id, x1, y1, x2, y2].

    gt rows whose 7th column ('consider' flag) is 0 are ignored, as the MOT benchmark does; boxes with a
    side under min_side px are dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"MOT box file {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CalibrationError(f"{path} is not a MOT text file (byte {exc.start} is not UTF-8 text)") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = re.split(r"[,\s]+", line)
        try:
            vals = [float(v) for v in parts]
        except ValueError:
            raise CalibrationError(f"{path}:{lineno}: not a MOT row (frame, id, x, y, w, h, ...): {line[:80]!r}") \
                from None
        if len(vals) < 6:
            raise CalibrationError(f"{path}:{lineno}: a MOT row needs at least 6 values (frame, id, x, y, w, h), "
                                   f"got {len(vals)}")
        if not all(math.isfinite(v) for v in vals[:6]):
            raise CalibrationError(f"{path}:{lineno}: frame, id and box must be finite numbers: {line[:80]!r}")
        if "gt" in path.stem.lower() and len(vals) >= 7 and vals[6] == 0:
            continue
        f, i, x, y, w, h = vals[:6]
        if max(abs(x), abs(y), abs(w), abs(h)) > MAX_COORD:
            raise CalibrationError(f"{path}:{lineno}: box {x, y, w, h} is not in pixels of a video frame")
        if f < 1 or f != int(f):
            raise CalibrationError(f"{path}:{lineno}: frame {vals[0]} is not a frame number (MOT counts from 1)")
        if w >= min_side and h >= min_side:
            rows.append((f, i, x, y, x + w, y + h))
    if not rows:
        raise CalibrationError(f"{path} holds no boxes of at least {min_side}x{min_side} px")
    return np.asarray(rows, np.float64)


def frame_reader(video):
    """A function frame_no (1-based, increasing) -> BGR frame, for a video file or a folder of frame images."""
    read, close, _ = _open_frames(video)
    return read, close


def iter_frames(video):
    """(frame_no, BGR frame) for every frame of a video file (1-based) or a frame folder (the number in
    each file name), in order. The same reading as mot:VIDEO,BOXES calibration."""
    read, close, numbers = _open_frames(video)
    try:
        if numbers is not None:
            for no in numbers:
                yield no, read(no)
            return
        no = 1
        while True:
            try:
                frame = read(no)
            except VideoEnded:
                if no == 1:
                    raise CalibrationError(f"video {video} holds no decodable frame") from None
                return
            yield no, frame
            no += 1
    finally:
        close()


def _open_frames(video):
    """(read, close, frame numbers of a folder or None for a video); see frame_reader."""
    from osnet_edge.deps import require

    cv2 = require("cv2", "reading calibration video")
    video = Path(video)
    if video.is_dir():  # MOT layout: img1/000001.jpg ...
        frames = sorted(p for p in video.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not frames:
            raise CalibrationError(f"frame folder {video} holds no images")
        by_no = {}
        for k, p in enumerate(frames, 1):
            digits = re.sub(r"\D", "", p.stem)
            by_no[int(digits) if digits else k] = p

        def read(no):
            p = by_no.get(int(no))
            img = None if p is None else cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise CalibrationError(f"frame {int(no)} of {video} is missing or unreadable")
            return img

        return read, lambda: None, sorted(by_no)
    if not video.is_file():
        raise CalibrationError(f"video {video} not found")
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise CalibrationError(f"video {video} could not be opened by OpenCV")
    state = {"pos": 0, "frame": None}

    def read(no):
        no = int(no)
        while state["pos"] < no:  # sequential decoding: seeking is unreliable in many codecs
            ok, frame = cap.read()
            if not ok:
                raise VideoEnded(f"video {video} ended at frame {state['pos']} but the boxes ask for frame {no}")
            state["pos"] += 1
            state["frame"] = frame
        return state["frame"]

    return read, cap.release, None
