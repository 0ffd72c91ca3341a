"""The gallery's storage and search engine: LanceDB (see docs/gallery.md for why this engine, measured).

A local path is an embedded database: nothing to start, a folder on disk. Every add is one append commit: the
data files are written first and a new table version is published last, so a process killed mid-add leaves
the previous version intact and every add that returned is readable. Appends from several processes commute:
LanceDB retries a conflicting commit, so two writers on one folder both land. Other URIs go to the same
engine elsewhere with the same code: s3:// gs:// az:// (the embedded engine on object storage, shared by many
machines) and db:// (LanceDB Cloud / Enterprise; LANCEDB_API_KEY, LANCEDB_REGION, LANCEDB_HOST_OVERRIDE).

The model identity lives in the table schema's metadata, written in the same commit that creates the table,
so a gallery never exists without one.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from .entries import Entry
from .errors import GalleryError
from .identity import ModelIdentity

TABLE = "entries"
META_KEY = b"osnet_edge.gallery"
FORMAT = 1
COLUMNS = ("id", "camera", "track", "t_first", "t_last", "thumbnail", "kind", "crops")
# approximate index: IVF_FLAT by default, k-means partitions of the full float32 vectors: a search scans the
# NPROBES partitions nearest the query exactly. Chosen over IVF_PQ (64-byte codes, re-scored) and IVF_HNSW_SQ
# because on 2 busy cores those took 13 and 5 minutes to build at 10^5 rows and reached recall@10 0.76 / 0.45
# (benchmarks/results/gallery/NOTES.md); IVF_PQ stays available (build_index("IVF_PQ")) for galleries
# that outgrow memory.
NPROBES, REFINE = 10, 1
SUB_VECTORS = 64


def partitions_for(n: int) -> int:
    """~sqrt(n) partitions (1000 at 10^6 rows, 316 at 10^5), at least 1: at 10^6, 10 probes then scan ~1% of
    the rows (p50 9.6 ms, recall@10 0.999 on 2 cores) where sqrt(n) / 4 scanned 4% (14.9 ms)."""
    return max(1, int(np.sqrt(max(n, 1))))


def is_local(uri: str) -> bool:
    return "://" not in str(uri) or str(uri).startswith("file://")


def _lancedb():
    from osnet_edge.deps import require

    return require("lancedb", "the cross-camera gallery")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _quote(value: str) -> str:
    """A SQL string literal (the filter language LanceDB parses)."""
    return "'" + str(value).replace("'", "''") + "'"


def _connect(uri: str):
    lancedb = _lancedb()
    if is_local(uri):
        return lancedb.connect(str(uri))
    opts = {k: os.environ[e] for k, e in (("api_key", "LANCEDB_API_KEY"), ("region", "LANCEDB_REGION"),
                                          ("host_override", "LANCEDB_HOST_OVERRIDE")) if os.environ.get(e)}
    return lancedb.connect(str(uri), **(opts if str(uri).startswith("db://") else {}))


def _check_local_folder(uri: str, create: bool) -> None:
    """Refuse, before the engine touches it, a path that cannot be a gallery: a file, a foreign folder."""
    p = Path(str(uri).removeprefix("file://"))
    if p.exists() and not p.is_dir():
        raise GalleryError(f"gallery {uri} is a file, not a gallery folder (a gallery is a folder holding "
                           f"{TABLE}.lance/)")
    if p.is_dir() and not (p / f"{TABLE}.lance").exists():
        others = sorted(x.name for x in p.iterdir())
        if others:
            raise GalleryError(f"gallery {uri} is a folder of other files ({', '.join(others[:3])}"
                               f"{', ...' if len(others) > 3 else ''}), not an osnet-edge gallery")
    if not create and not (p / f"{TABLE}.lance").exists():
        raise GalleryError(f"gallery {uri} not found (add entries to create it)")


def schema(dim: int, identity: ModelIdentity):
    import pyarrow as pa

    meta = json.dumps({"format": FORMAT, "model": json.loads(identity.to_json())}, sort_keys=True)
    return pa.schema([pa.field("id", pa.int64()), pa.field("vector", pa.list_(pa.float32(), dim)),
                      pa.field("camera", pa.string()), pa.field("track", pa.int64()),
                      pa.field("t_first", pa.float64()), pa.field("t_last", pa.float64()),
                      pa.field("thumbnail", pa.string()), pa.field("kind", pa.string()),
                      pa.field("crops", pa.int32())], metadata={META_KEY: meta.encode()})


class LanceStore:
    """One gallery table. identity: the model whose embeddings it holds (read from the table when None)."""

    def __init__(self, uri, identity: ModelIdentity | None = None, create: bool = True):
        self.uri = str(uri)
        _lancedb()  # a missing client is the first thing to say
        if is_local(self.uri):
            _check_local_folder(self.uri, create and identity is not None)
        try:
            self.db = _connect(self.uri)
            self.table = self._open_or_create(identity, create)
        except GalleryError:
            raise
        except Exception as exc:  # the engine's own errors for a damaged folder vary: one line naming the file
            raise GalleryError(f"gallery {self.uri} cannot be read: {_first_line(exc)} (damaged, or written by "
                               f"something else)") from None
        self.identity = self._stored_identity()

    def _open_or_create(self, identity, create):
        try:
            return self.db.open_table(TABLE)
        except (ValueError, FileNotFoundError) as exc:
            if "not found" not in str(exc).lower() and "does not exist" not in str(exc).lower():
                raise
            if identity is None or not create:
                raise GalleryError(f"gallery {self.uri} not found (add entries to create it)") from None
        # two processes may create it at once: exist_ok opens the winner's, whose identity is then checked
        return self.db.create_table(TABLE, schema=schema(identity.feature_dim, identity), exist_ok=True)

    def _stored_identity(self) -> ModelIdentity:
        meta = (self.table.schema.metadata or {}).get(META_KEY)
        if meta is None:
            raise GalleryError(f"gallery {self.uri}: table {TABLE!r} carries no osnet-edge model identity; it was "
                               f"not written by osnet-gallery")
        try:
            doc = json.loads(meta)
        except ValueError:
            raise GalleryError(f"gallery {self.uri}: its model identity is not valid JSON") from None
        if doc.get("format") != FORMAT:
            raise GalleryError(f"gallery {self.uri} is format {doc.get('format')}; this osnet-edge reads format "
                               f"{FORMAT}")
        return ModelIdentity.from_json(json.dumps(doc.get("model")), f"gallery {self.uri}")

    @property
    def dim(self) -> int:
        return self.identity.feature_dim

    # ------------------------------------------------------------------------------------------- writing

    def add(self, entries: list[Entry]) -> int:
        """Append entries in one commit; returns how many. Once this returns they survive a crash."""
        import pyarrow as pa

        if not entries:
            return 0
        vec = np.stack([np.asarray(e.vector, np.float32) for e in entries])
        if vec.shape[1] != self.dim:
            raise GalleryError(f"gallery {self.uri} holds {self.dim}-D embeddings; got {vec.shape[1]}-D")
        sch = self.table.schema
        cols = {"id": [e.id for e in entries],
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1), pa.float32()), self.dim),
                "camera": [e.camera for e in entries], "track": [e.track for e in entries],
                "t_first": [e.t_first for e in entries], "t_last": [e.t_last for e in entries],
                "thumbnail": [e.thumbnail for e in entries], "kind": [e.kind for e in entries],
                "crops": [e.crops for e in entries]}
        data = pa.table({k: (v if isinstance(v, pa.Array) else pa.array(v, sch.field(k).type)) for k, v in cols.items()},
                        schema=sch)
        self.table.add(data)
        return len(entries)

    def build_index(self, kind: str = "IVF_FLAT") -> dict:
        """(Re)build the approximate index over every row, scalar indexes for the filter columns, then compact
        the small fragments that many adds leave. Returns what was built and how long each step took."""
        import time

        from lancedb.index import IvfFlat, IvfPq

        n = self.count()
        parts = partitions_for(n)
        if n < 256 * 4:  # k-means (and PQ codebooks) need a few hundred rows; below that exact search is instant
            raise GalleryError(f"gallery {self.uri} has {n} entries: an approximate index needs at least {256 * 4} "
                               f"(exact search is used, and is fast at this size)")
        configs = {"IVF_FLAT": lambda: IvfFlat(distance_type="dot", num_partitions=parts),
                   "IVF_PQ": lambda: IvfPq(distance_type="dot", num_partitions=parts, num_sub_vectors=SUB_VECTORS)}
        if kind not in configs:
            raise GalleryError(f"index kind {kind!r}: choose one of {', '.join(configs)}")
        times = {}
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.table.optimize()  # compact first: the index is then built over a few large fragments
        times["compact_s"] = time.perf_counter() - t
        t = time.perf_counter()
        self.table.create_index("vector", config=configs[kind](), replace=True)
        times["vector_index_s"] = time.perf_counter() - t
        t = time.perf_counter()
        for col, scalar in (("camera", "BITMAP"), ("t_first", "BTREE"), ("t_last", "BTREE")):
            self.table.create_scalar_index(col, index_type=scalar, replace=True)
        times["scalar_index_s"] = time.perf_counter() - t
        return {"rows": n, "partitions": parts, "index": f"{kind} (dot, {parts} partitions)", **times}

    # ------------------------------------------------------------------------------------------- reading

    def count(self, where: str | None = None) -> int:
        return int(self.table.count_rows(where)) if where else int(self.table.count_rows())

    def index_status(self) -> dict:
        for i in self.table.list_indices():
            if "vector" in (getattr(i, "columns", None) or []):
                s = self.table.index_stats(i.name)
                return {"name": i.name, "type": str(getattr(i, "index_type", "")),
                        "indexed": int(getattr(s, "num_indexed_rows", 0)),
                        "unindexed": int(getattr(s, "num_unindexed_rows", 0))}
        return {}

    def rows(self, where: str | None = None, columns=COLUMNS, with_vectors: bool = False):
        """Matching rows (no ranking) as a pyarrow table."""
        q = self.table.search().select(list(columns) + (["vector"] if with_vectors else []))
        q = q.where(where) if where else q
        return q.limit(max(self.count(where), 1)).to_arrow()

    def search(self, vector, k: int, where: str | None, exact: bool, nprobes: int = NPROBES, refine: int = REFINE):
        """Top-k by inner product (cosine: rows are unit length) among rows matching `where` (applied before
        ranking, so k results come back whenever k rows match). Returns a pyarrow table with a 'score' column."""
        q = self.table.search(np.asarray(vector, np.float32)).distance_type("dot").select(list(COLUMNS) + ["_distance"])
        q = q.limit(k)
        if where:
            q = q.where(where, prefilter=True)
        if exact:
            q = q.bypass_vector_index()
        else:
            q = q.nprobes(nprobes)
            q = q.refine_factor(refine) if refine > 1 else q
        res = q.to_arrow()
        import pyarrow as pa

        score = pa.array(1.0 - res.column("_distance").to_numpy(zero_copy_only=False).astype(np.float64))
        return res.drop(["_distance"]).append_column("score", score)


def filter_sql(exclude_camera=None, cameras=None, after=None, before=None, extra=None) -> str | None:
    """The SQL filter for a search: not the query's camera, only these cameras, seen in [after, before]."""
    parts = []
    if exclude_camera is not None:
        parts.append(f"camera != {_quote(exclude_camera)}")
    if cameras:
        parts.append(f"camera IN ({', '.join(_quote(c) for c in cameras)})")
    if after is not None:
        parts.append(f"t_last >= {float(after)!r}")
    if before is not None:
        parts.append(f"t_first <= {float(before)!r}")
    if extra:
        parts.append(extra)
    return " AND ".join(parts) or None
