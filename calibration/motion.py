"""Person boxes from a static camera without a detector: background subtraction (OpenCV's MOG2), morphology,
external contours, kept when their size and upright aspect look like a walking person.

Only for static cameras: a moving camera makes the whole frame foreground. Groups walking side by side come
out as one wide blob and are dropped by the aspect filter rather than kept as a mixed identity.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from osnet_edge.deps import require


@dataclass
class MotionParams:
    warmup: int = 25            # frames the background model learns before boxes are trusted
    history: int = 500          # MOG2 history (frames)
    var_threshold: float = 16.0  # MOG2 default: pixel-vs-model Mahalanobis distance for foreground
    min_area: float = 0.002     # box area as a fraction of the frame: smaller blobs are noise
    max_area: float = 0.25      # larger ones are lighting changes or a moving camera
    min_aspect: float = 1.1     # height / width of an upright person (1.2-4 typical)
    max_aspect: float = 5.0
    min_height: int = 24        # px: a re-ID crop shorter than this carries no identity
    pad: float = 0.05           # grow each box by this fraction of its size: blobs cut off limbs' edges


class MotionDetector:
    """Feed frames in order; each call returns (N, 4) xyxy boxes of moving person-sized blobs."""

    def __init__(self, params: MotionParams | None = None):
        self.cv2 = require("cv2", "background subtraction")
        self.p = params or MotionParams()
        self.sub = self.cv2.createBackgroundSubtractorMOG2(history=self.p.history,
                                                           varThreshold=self.p.var_threshold, detectShadows=True)
        self.seen = 0
        self._kernels = None

    def _morph(self, shape):
        if self._kernels is None:
            s = max(3, int(round(min(shape[:2]) / 100)) | 1)   # ~5 px at 576 rows, 3 px at 120
            ell = self.cv2.MORPH_ELLIPSE
            self._kernels = (self.cv2.getStructuringElement(ell, (s, s)),
                             self.cv2.getStructuringElement(ell, (3 * s, 3 * s)))
        return self._kernels

    def __call__(self, frame) -> np.ndarray:
        cv2, p = self.cv2, self.p
        fg = self.sub.apply(frame)
        self.seen += 1
        if self.seen <= p.warmup:
            return np.zeros((0, 4))
        mask = (fg == 255).astype(np.uint8) * 255      # 127 = shadow: not the person
        mask = cv2.medianBlur(mask, 5)                 # compression speckle around moving edges
        small, large = self._morph(frame.shape)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, small)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, large)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        fh, fw = frame.shape[:2]
        area = float(fh * fw)
        out = []
        for c in contours:
            x, y, w, h = cv2.boundingRect(c)
            if not (p.min_area * area <= w * h <= p.max_area * area) or h < p.min_height:
                continue
            if not p.min_aspect <= h / max(w, 1) <= p.max_aspect:
                continue
            dx, dy = p.pad * w, p.pad * h
            out.append((max(0.0, x - dx), max(0.0, y - dy), min(float(fw), x + w + dx), min(float(fh), y + h + dy)))
        return np.asarray(out, np.float64).reshape(-1, 4)
