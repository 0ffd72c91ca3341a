"""A small multi-object tracker whose appearance part is the Embedder: IoU + embedding cosine, greedy.

    from osnet_edge import Embedder
    from osnet_edge.tracking import Tracker

    emb, tracker = Embedder("osnet_x0_25_int8.xml"), Tracker()
    for frame, boxes in frames_and_detections:             # boxes: (N, 4) xyxy from any detector
        ids = tracker.update(boxes, emb.embed_frame(frame, boxes))

Why not a tracking library: the maintained ones that take appearance features (norfair, boxmot, trackers /
supervision's ByteTrack) pull scipy, filterpy, torch/torchvision or numpy<2 into a runtime whose
dependencies are numpy and OpenCV. This one is the DeepSORT-style association without the Kalman filter:
a detection continues the track it overlaps (IoU) and looks like (cosine to the track's running-mean
embedding); a track missing for a few frames is found again by appearance alone. Numpy only, no torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from osnet_edge.calibration.tracklets import greedy_match, iou_matrix


@dataclass
class Track:
    track_id: int
    box: np.ndarray          # last matched xyxy box
    feature: np.ndarray      # running mean of the embeddings, L2-normalised
    last_frame: int
    hits: int = 1


class Tracker:
    """Associate each frame's boxes with tracks; update() returns one track id per box.

    iou_weight: share of IoU in the match score (the rest is cosine similarity).
    min_cosine: a box never continues a track it looks less similar to than this.
    min_iou: a track seen in the previous frame is continued only by a box overlapping it this much;
      a track missing for 1..max_age frames may be continued by appearance alone (min_cosine_lost), by a box
      whose centre is within reach: (0.5 + reach_per_frame * frames missing) x the track's box height.
    ema: weight of a track's past in its appearance (new embedding weighs 1 - ema).
    """

    def __init__(self, iou_weight: float = 0.5, min_cosine: float = 0.5, min_iou: float = 0.2,
                 min_cosine_lost: float = 0.8, max_age: int = 30, ema: float = 0.9, reach_per_frame: float = 0.1):
        self.iou_weight, self.min_cosine, self.min_iou = iou_weight, min_cosine, min_iou
        self.min_cosine_lost, self.max_age, self.ema = min_cosine_lost, max_age, ema
        self.reach_per_frame = reach_per_frame
        self.tracks: list = []
        self.frame = 0
        self._next_id = 1

    def update(self, boxes, features) -> np.ndarray:
        """boxes (N, 4+) xyxy (extra columns ignored), features (N, D) L2-normalised -> (N,) int track ids."""
        self.frame += 1
        boxes = np.asarray(boxes, np.float64).reshape(len(boxes), -1)[:, :4] if len(boxes) else np.zeros((0, 4))
        feats = np.asarray(features, np.float32).reshape(len(boxes), -1) if len(boxes) else np.zeros((0, 1))
        self.tracks = [t for t in self.tracks if self.frame - t.last_frame <= self.max_age]
        ids = np.zeros(len(boxes), int)
        if self.tracks and len(boxes):
            iou = iou_matrix(np.array([t.box for t in self.tracks]), boxes)
            cos = np.array([t.feature for t in self.tracks]) @ feats.T
            last = np.array([t.box for t in self.tracks])
            missing = np.array([self.frame - t.last_frame for t in self.tracks])[:, None]
            # a person walks a bounded distance while unseen: appearance alone never links across the frame
            centre = lambda b: np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)  # noqa: E731
            dist = np.linalg.norm(centre(last)[:, None] - centre(boxes)[None], axis=2)
            reach = (last[:, 3] - last[:, 1])[:, None] * (0.5 + self.reach_per_frame * missing)
            allowed = np.where(missing == 1, (iou >= self.min_iou) & (cos >= self.min_cosine),
                               (cos >= self.min_cosine_lost) & (dist <= reach))
            score = np.where(allowed, self.iou_weight * iou + (1 - self.iou_weight) * cos, -1.0)
            for r, c in greedy_match(score, 0.0):
                t = self.tracks[r]
                t.box, t.last_frame, t.hits = boxes[c], self.frame, t.hits + 1
                f = self.ema * t.feature + (1 - self.ema) * feats[c]
                t.feature = f / max(float(np.linalg.norm(f)), 1e-12)
                ids[c] = t.track_id
        for c in np.nonzero(ids == 0)[0]:
            self.tracks.append(Track(self._next_id, boxes[c], feats[c].copy(), self.frame))
            ids[c] = self._next_id
            self._next_id += 1
        return ids


def track_colour(track_id: int) -> tuple:
    """A stable, well-spread BGR colour per track id (golden-ratio hue steps)."""
    import cv2

    hue = int((track_id * 0.618033988749895 % 1.0) * 180)
    return tuple(int(v) for v in cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0])


def draw_tracks(frame, boxes, ids, label: str = "") -> np.ndarray:
    """A copy of the frame with each box drawn in its track's colour and its id written above it."""
    import cv2

    out = frame.copy()
    for b, i in zip(np.asarray(boxes).reshape(-1, 4), ids):
        x1, y1, x2, y2 = (int(round(v)) for v in b[:4])
        col = track_colour(int(i))
        cv2.rectangle(out, (x1, y1), (x2, y2), col, 2)
        cv2.putText(out, str(int(i)), (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, col, 2)
    if label:
        cv2.putText(out, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2)
    return out
