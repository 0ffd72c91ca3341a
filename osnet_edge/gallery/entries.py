"""What a gallery stores: one embedding per crop, or per track (the renormalised mean of its crops' embeddings),
with the camera, the track id, when the person was first and last seen, and a thumbnail reference.

Per track is the default: one row per walk past a camera, so the gallery grows with people, not frames, and
the mean of a track's L2-normalised crop embeddings is a steadier description of the person than any one crop
(the same reason re-ID trackers keep a running mean). Per crop keeps every view: use it to rank crops the way
osnet-eval does, or when tracks are unreliable (crowds, long occlusions) and one wrong merge would blur a mean.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import numpy as np

from .errors import GalleryError

KINDS = ("crop", "track")


@dataclass
class Entry:
    vector: np.ndarray  # (D,) float32, unit length
    camera: str
    track: int
    t_first: float  # seconds (video time + the source's start offset) or frame numbers
    t_last: float
    thumbnail: str = ""  # path (or URL) of a crop image showing the person
    kind: str = "track"
    crops: int = 1  # crops behind the embedding
    id: int = field(default_factory=lambda: secrets.randbits(63))  # unique across writers without coordination


def unit_rows(x, what: str = "embeddings") -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or not len(x):
        raise GalleryError(f"{what}: expected a non-empty (N, D) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise GalleryError(f"{what}: row {int(np.argwhere(~np.isfinite(x))[0, 0])} is not finite")
    n = np.linalg.norm(x, axis=1, keepdims=True)
    if (n < 1e-12).any():
        raise GalleryError(f"{what}: row {int(np.argmin(n))} is all zeros")
    return x / n


def track_entry(feats, camera: str, track: int, times, thumbnail: str = "") -> Entry:
    """One entry for a track: the renormalised mean of its crops' embeddings, seen from min to max of times."""
    feats = unit_rows(feats, f"camera {camera} track {track}")
    times = np.asarray(times, np.float64)
    return Entry(unit_rows(feats.mean(0, keepdims=True), f"camera {camera} track {track}")[0], str(camera),
                 int(track), float(times.min()), float(times.max()), thumbnail, "track", len(feats))


def crop_entries(feats, camera: str, track: int, times, thumbnails) -> list[Entry]:
    """One entry per crop of a track."""
    feats = unit_rows(feats, f"camera {camera} track {track}")
    return [Entry(f, str(camera), int(track), float(t), float(t), str(th), "crop", 1)
            for f, t, th in zip(feats, times, thumbnails)]


def make_entries(feats, camera, track, times, thumbnails, per: str) -> list[Entry]:
    if per not in KINDS:
        raise GalleryError(f"entries per {per!r}: choose one of {', '.join(KINDS)}")
    if per == "track":
        return [track_entry(feats, camera, track, times, thumbnails[len(thumbnails) // 2] if thumbnails else "")]
    return crop_entries(feats, camera, track, times, thumbnails)
