"""IoU tracklets: per-frame boxes linked into short, confident tracks of one person each.

A tracklet is linked greedily, best IoU first (numpy only; the O(n^3) optimal assignment buys nothing at
the dozens of boxes a frame holds, and scipy is not a dependency). A track that finds no box for more than
`max_gap` frames ends; a new box starts a new track. Tracks never merge, so a tracklet is cut rather than
allowed to jump to another person: for a pseudo-identity dataset a short pure tracklet is worth more than
a long mixed one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def iou_matrix(a, b) -> np.ndarray:
    """IoU of every box in a (N, 4) with every box in b (M, 4), both xyxy -> (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def greedy_match(score: np.ndarray, min_score: float) -> list:
    """Pairs (row, col) taken best score first, each row and column at most once, score >= min_score."""
    score = np.asarray(score, np.float64)
    if score.size == 0:
        return []
    rows, cols = np.nonzero(score >= min_score)
    order = np.argsort(-score[rows, cols], kind="stable")
    used_r, used_c, pairs = set(), set(), []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    return pairs


@dataclass
class Tracklet:
    """One linked track: frame numbers and their xyxy boxes, in frame order."""

    track_id: int
    frames: list = field(default_factory=list)
    boxes: list = field(default_factory=list)

    def __len__(self):
        return len(self.frames)

    @property
    def first(self) -> int:
        return self.frames[0]

    @property
    def last(self) -> int:
        return self.frames[-1]


def size_change(a, b) -> np.ndarray:
    """Largest relative change of width or height between every box of a (N, 4) and of b (M, 4) -> (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    wa, ha = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    wb, hb = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    rw = np.maximum(wa[:, None], wb[None]) / np.maximum(np.minimum(wa[:, None], wb[None]), 1e-9)
    rh = np.maximum(ha[:, None], hb[None]) / np.maximum(np.minimum(ha[:, None], hb[None]), 1e-9)
    return np.maximum(rw, rh) - 1.0


def link_tracklets(detections: dict, min_iou: float = 0.3, max_gap: int = 3, max_size_change: float = 0.3) -> list:
    """{frame_no: (N, 4) xyxy boxes} -> Tracklets (every one, short ones included), ordered by first frame.

    A box whose width or height differs from the track's last box by more than max_size_change does not
    continue it: with background subtraction that jump is two people's blobs merging or splitting, the
    moment an IoU tracker would otherwise switch identity.
    """
    active, done, next_id = [], [], 1
    for no in sorted(detections):
        boxes = np.asarray(detections[no], np.float64).reshape(-1, 4)
        still = []
        for t in active:  # tracks unseen for more than max_gap frames end before matching
            (still if no - t.last <= max_gap + 1 else done).append(t)
        active = still
        last = np.array([t.boxes[-1] for t in active]).reshape(-1, 4)
        matched = set()
        score = np.where(size_change(last, boxes) <= max_size_change, iou_matrix(last, boxes), 0.0)
        for r, c in greedy_match(score, min_iou):
            active[r].frames.append(int(no))
            active[r].boxes.append(boxes[c].copy())
            matched.add(c)
        for c in range(len(boxes)):
            if c not in matched:
                active.append(Tracklet(next_id, [int(no)], [boxes[c].copy()]))
                next_id += 1
    done += active
    return sorted(done, key=lambda t: (t.first, t.track_id))


def tracklets_from_ids(table: np.ndarray) -> list:
    """A MOT track table (frame, id, x1, y1, x2, y2) whose ids are already identities -> Tracklets."""
    out = []
    for tid in np.unique(table[:, 1]).astype(int):
        rows = table[table[:, 1] == tid]
        rows = rows[np.argsort(rows[:, 0], kind="stable")]
        out.append(Tracklet(int(tid), rows[:, 0].astype(int).tolist(), [r for r in rows[:, 2:6]]))
    return sorted(out, key=lambda t: (t.first, t.track_id))
