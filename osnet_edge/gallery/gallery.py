"""Gallery: tracks of many cameras in, "where else was this person seen" out.

    from osnet_edge.gallery import Gallery
    g = Gallery("galleries/site", model="osnet_x0_25_256x128_fp32.onnx")   # a folder: embedded, persistent
    g.add_source("cam2/bounding_box_test", camera="cam2")                   # or a video + MOT tracks file
    hits = g.search_crops(crops, camera="cam1", k=10)                      # other cameras only, by default

A local path is an embedded database (nothing to start); s3://, gs://, az:// or db:// run the same code
against shared storage or the engine's server. The model is part of the gallery: the first artifact that
writes to it fixes it, and an add or a search from another one is refused in one line naming both.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .entries import KINDS, Entry, make_entries, unit_rows
from .errors import GalleryError
from .identity import ModelIdentity
from .store import LanceStore, _quote, filter_sql, is_local

EMBED_CHUNK = 256  # crops read and embedded at a time


@dataclass
class Match:
    camera: str
    track: int
    score: float  # cosine similarity (embeddings are unit length)
    t_first: float
    t_last: float
    thumbnail: str
    kind: str
    id: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Query:
    """What was searched for: a name for the results, its camera (excluded by default), its embedding."""
    name: str
    camera: str | None
    vector: np.ndarray
    track: int | None = None
    t_first: float | None = None
    t_last: float | None = None
    image: str = ""  # a crop file showing the query, for the pictures


class Gallery:
    """model: an Embedder, an artifact path, or a ModelIdentity (embeddings computed elsewhere); None opens an
    existing gallery for stats and for searching by stored track only."""

    def __init__(self, uri, model=None, create: bool = True):
        self.uri = str(uri)
        self._embedder, self._own_embedder = None, False
        identity, self.model_name = None, None
        if isinstance(model, ModelIdentity):
            identity, self.model_name = model, "the given model"
        elif model is not None:
            from osnet_edge.evaluation import as_embedder

            self._own_embedder = isinstance(model, (str, Path))
            self._embedder = as_embedder(model)
            identity = ModelIdentity.of_embedder(self._embedder)
            self.model_name = str(model) if isinstance(model, (str, Path)) else "the embedder's model"
        self.store = LanceStore(self.uri, identity, create=create)
        if identity is not None:
            self.store.identity.check(identity, self.uri, self.model_name)
        self.identity = self.store.identity

    def close(self):
        if self._own_embedder and self._embedder is not None:
            self._embedder.close()
        self._embedder = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------------------------------- adding

    def _need_model(self, what: str):
        if self.model_name is None:
            raise GalleryError(f"{what} needs the model (--model ARTIFACT): gallery {self.uri} holds "
                               f"{self.identity.describe()}")

    def embed(self, crops=None, paths=None) -> np.ndarray:
        """Unit-length embeddings of crops (BGR images) or of crop files, through the gallery's model."""
        self._need_model("embedding crops")
        if self._embedder is None:
            raise GalleryError("this gallery was opened with a model identity only: pass embeddings, not crops")
        if paths is not None:
            from osnet_edge.evaluation import extract_features

            return extract_features(self._embedder, paths, chunk=EMBED_CHUNK, progress=False)
        return self._embedder.embed(crops)

    def add_entries(self, entries: list[Entry]) -> int:
        self._need_model("adding to a gallery")
        return self.store.add(entries)

    def add_embeddings(self, feats, camera: str, track: int, times, thumbnails=(), per: str = "track") -> int:
        """One track's crop embeddings -> one entry (per='track') or one per crop (per='crop')."""
        return self.add_entries(make_entries(feats, camera, track, times, list(thumbnails), per))

    def add_track(self, t, per: str = "track") -> int:
        """A sources.Track: embed its crops and add its entries (one commit)."""
        feats = self.embed(paths=t.paths) if t.paths else self.embed(crops=t.images)
        return self.add_embeddings(feats, t.camera, t.track, t.times, t.thumbnails, per)

    def add_tracks(self, tracks, per: str = "track", progress: bool = True) -> dict:
        """Add tracks (an iterable of sources.Track); entries are committed in batches of about EMBED_CHUNK
        crops, so a crash loses at most the batch in flight. Returns counts."""
        if per not in KINDS:
            raise GalleryError(f"entries per {per!r}: choose one of {', '.join(KINDS)}")
        bar = _bar(progress, "adding tracks")
        pending, pending_crops, n_tracks, n_entries, n_crops = [], 0, 0, 0, 0
        for t in tracks:
            feats = self.embed(paths=t.paths) if t.paths else self.embed(crops=t.images)
            pending += make_entries(feats, t.camera, t.track, t.times, list(t.thumbnails), per)
            pending_crops += len(feats)
            n_tracks, n_crops = n_tracks + 1, n_crops + len(feats)
            if pending_crops >= EMBED_CHUNK:
                n_entries += self.add_entries(pending)
                pending, pending_crops = [], 0
            bar.update(1)
        n_entries += self.add_entries(pending)
        bar.close()
        return {"tracks": n_tracks, "crops": n_crops, "entries": n_entries, "per": per}

    def add_source(self, source, camera: str | None = None, tracks_file=None, per: str = "track", fps=None,
                   start: float = 0.0, thumbs_dir=None, progress: bool = True) -> dict:
        """A Market-layout crops folder, or a video with its MOT tracks file (tracks_file)."""
        from .sources import folder_tracks, is_video_source, video_tracks

        self._need_model("adding to a gallery")
        if is_video_source(source) or tracks_file is not None:
            if tracks_file is None:
                raise GalleryError(f"{source} is a video: give its MOT tracks file too (--tracks tracks.txt, as "
                                   f"examples/track.py writes)")
            if thumbs_dir is None and is_local(self.uri):
                thumbs_dir = Path(self.uri.removeprefix("file://")) / "thumbnails"
            tracks = video_tracks(source, tracks_file, camera, thumbs_dir, fps, start, progress=progress)
        else:
            tracks = folder_tracks(source, camera, fps, start)
        return self.add_tracks(tracks, per, progress)

    def build_index(self) -> dict:
        return self.store.build_index()

    # ------------------------------------------------------------------------------------------- searching

    def search(self, queries: list[Query], k: int = 10, same_camera: bool = False, cameras=None, after=None,
               before=None, exact: bool | None = None) -> list[list[Match]]:
        """Top-k matches per query among other cameras' entries (same_camera=True: every camera), optionally
        only those seen within [after, before]. exact=None: exact when the gallery has no approximate index."""
        if k < 1:
            raise GalleryError(f"--top must be >= 1, got {k}")
        if exact is None:
            exact = not self.store.index_status()
        out = []
        for q in queries:
            v = unit_rows(np.asarray(q.vector, np.float32)[None], f"query {q.name}")[0]
            if v.shape[0] != self.identity.feature_dim:
                raise GalleryError(f"query {q.name} is {v.shape[0]}-D; gallery {self.uri} holds "
                                   f"{self.identity.feature_dim}-D embeddings")
            where = filter_sql(None if same_camera or q.camera is None else q.camera, cameras, after, before)
            res = self.store.search(v, k, where, exact)
            out.append([Match(c, int(t), float(s), float(a), float(b), th, kd, int(i)) for c, t, s, a, b, th, kd, i in
                        zip(*(res.column(n).to_pylist() for n in ("camera", "track", "score", "t_first", "t_last",
                                                                  "thumbnail", "kind", "id")))])
        return out

    def queries_from_crops(self, paths, camera=None, per: str = "track") -> list[Query]:
        """Queries from crop files: Market-layout names give camera and identity (per='track': one query per
        identity, its crops' renormalised mean; per='crop': one per file); other names are single crops."""
        from .sources import parse_crop_name

        self._need_model("searching with crops")
        paths = [Path(p) for p in paths]
        feats = self.embed(paths=paths)
        groups: dict = {}
        for p, f in zip(paths, feats):
            parsed = parse_crop_name(p)
            cam = camera or (f"c{parsed[1]}" if parsed else None)
            pid = parsed[0] if parsed else None
            key = (cam, pid) if per == "track" and pid is not None else (cam, pid, str(p))
            groups.setdefault(key, []).append((p, f, parsed[2] if parsed else None))
        out = []
        for key, items in groups.items():
            cam, pid = key[0], key[1]
            vec = unit_rows(np.mean([f for _, f, _ in items], 0)[None], "query")[0]
            frames = [fr for _, _, fr in items if fr is not None]
            name = items[0][0].name if len(items) == 1 else f"{cam}:{pid}"
            out.append(Query(name, cam, vec, pid, min(frames) if frames else None, max(frames) if frames else None,
                             str(items[len(items) // 2][0])))
        return out

    def query_from_track(self, camera: str, track: int) -> Query:
        """A stored track as the query: the renormalised mean of its entries."""
        rows = self.store.rows(f"camera = {_quote(camera)} AND track = {int(track)}", with_vectors=True)
        if rows.num_rows == 0:
            raise GalleryError(f"gallery {self.uri} has no track {track} on camera {camera!r}")
        vec = np.asarray(rows.column("vector").to_pylist(), np.float32)
        thumbs = [t for t in rows.column("thumbnail").to_pylist() if t]
        return Query(f"{camera}:{track}", camera, unit_rows(vec.mean(0, keepdims=True), "track")[0], int(track),
                     float(min(rows.column("t_first").to_pylist())), float(max(rows.column("t_last").to_pylist())),
                     thumbs[len(thumbs) // 2] if thumbs else "")

    # ------------------------------------------------------------------------------------------- stats

    def stats(self) -> dict:
        rows = self.store.rows(columns=("camera", "track", "t_first", "t_last", "kind", "crops"))
        n = rows.num_rows
        d = {"uri": self.uri, "model": self.identity.describe(), "entries": n, "cameras": {}}
        if n:
            cams = np.array(rows.column("camera").to_pylist())
            tracks = np.array(rows.column("track").to_pylist())
            for c in sorted(set(cams.tolist())):
                sel = cams == c
                d["cameras"][c] = {"entries": int(sel.sum()), "tracks": len(set(tracks[sel].tolist()))}
            kinds = rows.column("kind").to_pylist()
            d["kinds"] = {k: kinds.count(k) for k in KINDS if k in kinds}
            d["crops"] = int(np.sum(rows.column("crops").to_numpy()))
            d["time"] = [float(np.min(rows.column("t_first").to_numpy())), float(np.max(rows.column("t_last").to_numpy()))]
        d["index"] = self.store.index_status() or "none (exact search)"
        if is_local(self.uri):
            root = Path(self.uri.removeprefix("file://"))
            d["disk_mb"] = round(sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20, 2)
        return d


def results_json(queries: list[Query], matches: list[list[Match]]) -> list[dict]:
    return [{"query": q.name, "camera": q.camera, "track": q.track,
             "matches": [{"track": m.track, "camera": m.camera, "score": round(m.score, 6), "t_first": m.t_first,
                          "t_last": m.t_last, "thumbnail": m.thumbnail} for m in ms]} for q, ms in zip(queries, matches)]


def _bar(enabled, desc):
    from osnet_edge.evaluation import _progress

    bar = _progress(None, desc, enabled)
    if hasattr(bar, "unit"):
        bar.unit = "track"
    return bar
