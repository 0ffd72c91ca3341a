"""Deterministic person-like crops for verification, benchmarks, calibration smoke tests and demos.

No data is downloaded at run time, so the SDK makes its own: upright figures (head, torso, legs)
with per-crop clothing colours and textures over a cluttered background, at varied detector-like
sizes and aspect ratios. They are not a substitute for real crops when measuring accuracy, but they
exercise what random noise does not: smooth regions, edges, and the resize path at many sizes.
Torch-free.
"""
from __future__ import annotations

import numpy as np

# typical detector boxes of standing people: height 64..320 px, width/height 0.3..0.6
_MIN_H, _MAX_H = 64, 320
_MIN_AR, _MAX_AR = 0.3, 0.6


def synthetic_crop(rng: np.random.Generator, size=None) -> np.ndarray:
    """One HxWx3 uint8 BGR person-like crop; size=(H, W) fixes its size, else it is drawn at random."""
    from .deps import require

    cv2 = require("cv2", "drawing synthetic crops")
    if size is None:
        h = int(rng.integers(_MIN_H, _MAX_H + 1))
        w = max(16, int(round(h * rng.uniform(_MIN_AR, _MAX_AR))))
    else:
        h, w = (int(v) for v in size)
    # background: a vertical gradient plus low-frequency blobs and sensor noise
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    img = (top * (1 - t) + bottom * t) * np.ones((1, w, 1), np.float32)
    for _ in range(int(rng.integers(2, 6))):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        r = int(rng.integers(max(2, w // 8), max(3, w // 2)))
        cv2.circle(img, c, r, rng.integers(0, 256, 3).tolist(), -1)
    # the figure: centred with jitter, as a detector box would place it
    cx = w / 2 + rng.normal(0, w * 0.05)
    bw = w * rng.uniform(0.45, 0.75)
    head_r = max(2, int(h * 0.065))
    head_y = int(h * 0.1)
    skin = np.array([rng.uniform(60, 120), rng.uniform(90, 170), rng.uniform(140, 230)])  # BGR skin tones
    shirt, pants, shoes = (rng.integers(0, 256, 3) for _ in range(3))
    cv2.ellipse(img, (int(cx), head_y), (int(head_r * 0.85), head_r), 0, 0, 360, skin.tolist(), -1)
    torso = (int(cx - bw / 2), int(h * 0.17), int(cx + bw / 2), int(h * 0.55))
    cv2.rectangle(img, torso[:2], torso[2:], shirt.tolist(), -1)
    if rng.random() < 0.5:  # stripes or a logo: texture the network can tell apart
        step = max(2, int(rng.integers(3, 9)))
        stripe = np.clip(shirt.astype(int) + rng.integers(-90, 90, 3), 0, 255).tolist()
        for y in range(torso[1], torso[3], 2 * step):
            cv2.rectangle(img, (torso[0], y), (torso[2], min(torso[3], y + step)), stripe, -1)
    leg_w = bw * 0.42
    for side in (-1, 1):
        x0 = cx + side * bw * 0.26 - leg_w / 2
        cv2.rectangle(img, (int(x0), int(h * 0.55)), (int(x0 + leg_w), int(h * 0.92)), pants.tolist(), -1)
        cv2.rectangle(img, (int(x0), int(h * 0.92)), (int(x0 + leg_w), h - 1), shoes.tolist(), -1)
    for side in (-1, 1):  # arms
        x0 = cx + side * (bw / 2 + bw * 0.06)
        cv2.line(img, (int(x0), int(h * 0.19)), (int(x0 + side * w * 0.04), int(h * 0.5)), shirt.tolist(),
                 max(1, int(bw * 0.12)))
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    img = cv2.GaussianBlur(img, (3, 3), 0)
    return np.clip(img, 0, 255).astype(np.uint8)


def synthetic_crops(n: int, seed: int = 0, size=None) -> list:
    """n person-like HxWx3 uint8 BGR crops of varied sizes (or all of size=(H, W)); same seed, same crops."""
    rng = np.random.default_rng(seed)
    return [synthetic_crop(rng, size) for _ in range(int(n))]
