"""Where a gallery's tracks come from: a folder of crops in Market-1501 / osnet-crops layout (identities are
tracks), or a video with a MOT tracks file (what examples/track.py writes). Each source yields Track items:
one camera's one track, its crops (file paths, or images cut from the video), their times and a thumbnail.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from osnet_edge.training.datasets import IMAGE_SUFFIXES, MARKET_NAME

from .errors import GalleryError

MARKET_SPLITS = ("bounding_box_test", "query", "bounding_box_train")


@dataclass
class Track:
    camera: str
    track: int
    times: np.ndarray  # one per crop
    paths: list = field(default_factory=list)  # crop files (folder sources)
    images: list = field(default_factory=list)  # BGR crops (video sources)
    thumbnails: list = field(default_factory=list)  # one reference per crop


def is_video_source(source) -> bool:
    from osnet_edge.calibration.video import VIDEO_SUFFIXES

    p = Path(source)
    return p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES


def crop_files(folder) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise GalleryError(f"crops folder {folder} not found" if not folder.exists() else
                           f"{folder} is not a folder of crops (nor a video with --tracks)")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        splits = [s for s in MARKET_SPLITS if (folder / s).is_dir()]
        if splits:
            raise GalleryError(f"{folder} is a dataset root: give one of its split folders, e.g. "
                               f"{folder / splits[0]}")
        raise GalleryError(f"crops folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def parse_crop_name(path) -> tuple[int, int, int] | None:
    """(identity, camera number, frame) from a Market-1501 file name; None when it does not parse."""
    m = MARKET_NAME.match(Path(path).name)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3)) if m.group(3) else 0


def folder_tracks(folder, camera: str | None = None, fps: float | None = None, start: float = 0.0) -> list[Track]:
    """Tracks of a Market-layout crops folder: one per (camera, identity), crops in frame order.

    camera: the name to store (default: 'c<N>' from each file name). Times are frame / fps + start (frame
    numbers when fps is None). Junk boxes (identity -1) are skipped, as every re-ID protocol does.
    """
    groups: dict = {}
    for p in crop_files(folder):
        parsed = parse_crop_name(p)
        if parsed is None:
            raise GalleryError(f"cannot parse identity and camera from {p} (expected Market-1501 names like "
                               f"0002_c1s1_000451_03.jpg, as osnet-crops writes)")
        pid, cam, frame = parsed
        if pid == -1:
            continue
        groups.setdefault((camera or f"c{cam}", pid), []).append((frame, str(p.resolve())))
    out = []
    for (cam, pid), items in sorted(groups.items()):
        items.sort()
        times = np.array([f for f, _ in items], np.float64)
        times = times / fps + start if fps else times + start
        paths = [p for _, p in items]
        out.append(Track(cam, pid, times, paths=paths, thumbnails=list(paths)))
    if not out:
        raise GalleryError(f"crops folder {folder} holds only junk crops (identity -1)")
    return out


def video_tracks(video, tracks_file, camera: str | None = None, thumbs_dir=None, fps: float | None = None,
                 start: float = 0.0, per_track: int | None = 16, progress: bool = True):
    """Tracks of a video and its MOT tracks file, yielded as each track ends (one pass over the video; only
    running tracks' crops are held). per_track: crops kept per track, spread evenly over it (None: all).
    The middle crop of each track is written to thumbs_dir/<camera>/<track>.jpg (when thumbs_dir is given)."""
    from osnet_edge.calibration.errors import CalibrationError, VideoEnded
    from osnet_edge.calibration.sources import even_sample
    from osnet_edge.calibration.video import frame_reader, read_mot_boxes
    from osnet_edge.deps import require
    from osnet_edge.preprocess import crop_boxes

    cv2 = require("cv2", "reading video")
    video = Path(video)
    camera = camera or video.stem
    table = read_mot_boxes(tracks_file)
    if (table[:, 1] <= 0).any():
        raise GalleryError(f"{tracks_file} has rows without a track id (id <= 0): it is a detections file; run a "
                           f"tracker first (examples/track.py writes tracks)")
    if fps is None and video.is_file():
        cap = cv2.VideoCapture(str(video))
        fps = cap.get(cv2.CAP_PROP_FPS) or None
        cap.release()
    by_track: dict = {}
    for row in table:
        by_track.setdefault(int(row[1]), []).append(row)
    keep = {}  # (frame, track) -> box, for the crops each track keeps
    ends: dict = {}  # last frame -> tracks that end there
    for tid, rows in by_track.items():
        rows = sorted(rows, key=lambda r: r[0])
        sel = range(len(rows)) if per_track is None else even_sample(len(rows), min(per_track, len(rows)), tid)
        sel = sorted(set(int(i) for i in sel) | {0, len(rows) - 1})  # the first and last sighting fix its times
        for i in sel:
            keep[(int(rows[i][0]), tid)] = rows[i][2:6]
        ends.setdefault(int(rows[-1][0]), []).append(tid)
    by_frame: dict = {}
    for (f, tid), box in keep.items():
        by_frame.setdefault(f, []).append((tid, box))
    running: dict = {}
    read, close = frame_reader(video)
    frames = sorted(set(by_frame) | set(ends))
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, desc=f"crops {video.name}", unit="frame", leave=False)
    try:
        for no in frames:
            if no in by_frame:
                try:
                    frame = read(no)
                except VideoEnded:
                    raise GalleryError(f"{tracks_file} has tracks up to frame {int(table[:, 0].max())}, but {video} "
                                       f"ends before frame {no}") from None
                except CalibrationError as exc:
                    raise GalleryError(str(exc)) from None
                items = sorted(by_frame[no], key=lambda t: t[0])
                crops = crop_boxes(frame, np.array([b for _, b in items]))
                for (tid, _), crop in zip(items, crops):
                    t = running.setdefault(tid, Track(camera, tid, []))
                    t.images.append(crop)
                    t.times.append(no / fps + start if fps else no + start)
            for tid in ends.get(no, []):
                t = running.pop(tid, None)
                if t is None:
                    continue
                t.times = np.asarray(t.times, np.float64)
                thumb = write_thumbnail(thumbs_dir, camera, tid, t.images[len(t.images) // 2])
                t.thumbnails = [thumb] * len(t.images)
                yield t
    finally:
        close()


def write_thumbnail(thumbs_dir, camera: str, track: int, image) -> str:
    """thumbs_dir/<camera>/<track>.jpg (written atomically); its absolute path, or "" without a thumbs_dir."""
    if thumbs_dir is None:
        return ""
    from osnet_edge.atomic import atomic_path
    from osnet_edge.deps import require

    cv2 = require("cv2", "thumbnails")
    path = Path(thumbs_dir) / _safe(camera) / f"{int(track)}.jpg"
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise GalleryError(f"could not write thumbnail {path}")
    return str(path.resolve())


def _safe(name: str) -> str:
    """A camera name as one folder name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "camera"
