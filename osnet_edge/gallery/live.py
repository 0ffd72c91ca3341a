"""A tracker's tracks into a gallery as it runs: each track's crop embeddings are kept while it is alive and
added (one entry per track, or per crop) once the tracker has not seen it for max_age frames, so the gallery
grows during the video, not only at its end.

    feed = LiveTracks(Gallery(uri, model=embedder), camera="gate", fps=25)
    for no, frame in frames:
        ids = tracker.update(boxes, feats)
        feed.update(no, frame, boxes, ids, feats)
    feed.close()                                    # adds the tracks still running
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .sources import write_thumbnail
from .store import is_local


class LiveTracks:
    def __init__(self, gallery, camera: str, fps: float | None = None, start: float = 0.0, max_age: int = 30,
                 per: str = "track", thumbs_dir=None):
        self.gallery, self.camera, self.fps, self.start = gallery, str(camera), fps, start
        self.max_age, self.per = max_age, per
        if thumbs_dir is None and is_local(gallery.uri):
            thumbs_dir = Path(gallery.uri.removeprefix("file://")) / "thumbnails"
        self.thumbs_dir = thumbs_dir
        self._open: dict = {}  # track id -> {"feats", "times", "last", "thumb"}
        self.added = {"tracks": 0, "entries": 0}

    def update(self, frame_no: int, frame, boxes, ids, feats) -> None:
        from osnet_edge.preprocess import crop_boxes

        t = frame_no / self.fps + self.start if self.fps else frame_no + self.start
        for tid, box, f in zip(ids, np.asarray(boxes).reshape(-1, 4), feats):
            s = self._open.setdefault(int(tid), {"feats": [], "times": [], "thumb": None})
            s["feats"].append(np.asarray(f, np.float32))
            s["times"].append(t)
            s["last"] = frame_no
            if s["thumb"] is None or len(s["feats"]) == 5:  # the 5th crop, past the entry edge (else the first)
                s["thumb"] = crop_boxes(frame, box[None])[0]
        ended = [tid for tid, s in self._open.items() if frame_no - s["last"] > self.max_age]
        self._flush(ended)

    def _flush(self, tids) -> None:
        for tid in tids:
            s = self._open.pop(tid)
            thumb = write_thumbnail(self.thumbs_dir, self.camera, tid, s["thumb"]) if s["thumb"] is not None else ""
            self.added["entries"] += self.gallery.add_embeddings(np.stack(s["feats"]), self.camera, tid, s["times"],
                                                                 [thumb] * len(s["feats"]), self.per)
            self.added["tracks"] += 1

    def close(self) -> dict:
        self._flush(list(self._open))
        return self.added
