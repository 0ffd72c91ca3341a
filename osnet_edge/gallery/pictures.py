"""Retrieval pictures of gallery searches, in the layout osnet-eval draws (osnet_edge.visualize): the query on
the left with a black border, then its matches. Border colour: green when a match carries the query's track
id, red otherwise; meaningful when both sides come from one labelled set (Market-1501, or osnet-crops'
pseudo-cameras, where a track id is an identity); across unlabelled cameras track ids are unrelated."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import GalleryError


def _image(cv2, path):
    img = cv2.imread(str(path), cv2.IMREAD_COLOR) if path else None
    if img is None:  # no thumbnail stored (or moved): a grey cell keeps the layout readable
        img = np.full((256, 128, 3), 160, np.uint8)
    return img


def write_pictures(queries, matches, out_dir, k=None) -> list[Path]:
    from osnet_edge.atomic import atomic_path
    from osnet_edge.deps import require
    from osnet_edge.visualize import check_output_dir, compose

    cv2 = require("cv2", "retrieval pictures")
    out_dir = check_output_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (q, ms) in enumerate(zip(queries, matches)):
        correct = np.array([q.track is not None and m.track == q.track for m in ms], bool)
        first = int(np.argmax(correct)) + 1 if correct.any() else None
        header = (f"query {q.name}  cam {q.camera}:  {int(correct.sum())} of top {len(ms)} share its track id"
                  + (f", first at rank {first}" if first else ""))
        captions = [(f"#{r} {m.camera}:{m.track}", f"cos {m.score:.3f}  t {m.t_first:.0f}")
                    for r, m in enumerate(ms, start=1)]
        pic = compose(_image(cv2, q.image), [_image(cv2, m.thumbnail) for m in ms], correct, header,
                      ("query", f"{q.camera}:{q.track if q.track is not None else '-'}"), captions,
                      k or max(len(ms), 1))
        stem = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in q.name)
        path = out_dir / f"q{i:05d}_{stem}.png"
        with atomic_path(path) as tmp:
            if not cv2.imwrite(str(tmp), pic):
                raise GalleryError(f"could not write {path}")
        written.append(path)
    return written
