"""Re-ID evaluation: distances, CMC/mAP with the Market-1501 and CUHK03 protocols, re-ranking, and
evaluating any model or artifact on a dataset's query/gallery. Torch-free at import.

    from osnet_edge.evaluation import evaluate_rank, evaluate
    cmc, mAP = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids)
    result = evaluate("osnet_x0_25_256x128_fp32.onnx", dataset)     # or a .pth, an .xml, a torch model

evaluate_rank reproduces torchreid's metrics/rank.py (same protocol, same numbers; tests check it
against torchreid 0.2.5 on the same distance matrices). Features come from an Embedder, so a
PyTorch checkpoint and its ONNX / OpenVINO / INT8 / TensorRT exports are scored by the same code:
the one preprocessing, the Embedder's batching, L2-normalised rows.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError

METRICS = ("euclidean", "cosine")
CHUNK = 256  # queries per block in evaluate_rank: bounds memory at 256 x num_gallery


# --------------------------------------------------------------------------- protocol


def _check_inputs(distmat, q_pids, g_pids, q_camids, g_camids):
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise InputError(f"distmat must be 2-D (num_query, num_gallery), got shape {distmat.shape}")
    num_q, num_g = distmat.shape
    arrays = []
    for name, arr, n in (("q_pids", q_pids, num_q), ("g_pids", g_pids, num_g), ("q_camids", q_camids, num_q),
                         ("g_camids", g_camids, num_g)):
        a = np.asarray(arr).reshape(-1)
        if len(a) != n:
            raise InputError(f"{name} has {len(a)} entries but distmat is {num_q}x{num_g}")
        arrays.append(a)
    if num_q == 0 or num_g == 0:
        raise InputError(f"distmat is {num_q}x{num_g}: the query and the gallery must both be non-empty")
    if not np.isfinite(distmat).all():
        bad = np.argwhere(~np.isfinite(distmat))[0]
        raise InputError(f"distmat has a non-finite distance at query {bad[0]}, gallery item {bad[1]}")
    return (distmat, *arrays)


def evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, use_metric_cuhk03=False):
    """CMC curve (max_rank entries, float32) and mAP, torchreid's protocol.

    For each query, gallery items with the same identity AND the same camera are removed (Market-1501,
    DukeMTMC-reID, MSMT17, CUHK03 767/700). Queries whose identity is then absent are skipped.
    Distractors (any pid not in the query) simply count as wrong matches.
    use_metric_cuhk03: CUHK03's classic single-gallery-shot protocol: per query, one randomly drawn
    image per gallery identity, CMC averaged over 10 draws (numpy's global RNG, as torchreid; seed
    np.random for repeatable numbers); mAP over the full gallery.
    Both rank-ordered with np.argsort, so ties break exactly as in torchreid.
    """
    distmat, q_pids, g_pids, q_camids, g_camids = _check_inputs(distmat, q_pids, g_pids, q_camids, g_camids)
    num_g = distmat.shape[1]
    if num_g < max_rank:
        max_rank = num_g
    if use_metric_cuhk03:
        return _eval_cuhk03(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
    return _eval_market(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)


def scored_queries(q_pids, g_pids, q_camids, g_camids) -> int:
    """How many queries the Market-1501 protocol scores: those whose identity is in the gallery under another
    camera (the rest are skipped, so one query moves rank-1 by 100 / this many points, not 100 / len(query))."""
    q_pids, g_pids = np.asarray(q_pids).reshape(-1, 1), np.asarray(g_pids).reshape(1, -1)
    other_cam = np.asarray(q_camids).reshape(-1, 1) != np.asarray(g_camids).reshape(1, -1)
    return int(np.sum(np.any((q_pids == g_pids) & other_cam, axis=1)))


def _eval_market(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    # Vectorised per block of queries: after removing same-pid-same-camera items, a gallery item's
    # rank is the number of kept items before it; CMC needs the first hit's rank, AP the precision
    # at each hit. Equivalent to torchreid's per-query loop, ~50x faster on Market-1501.
    num_q = distmat.shape[0]
    hit_at = np.zeros(max_rank, np.int64)
    aps = []
    for s in range(0, num_q, CHUNK):
        e = min(s + CHUNK, num_q)
        order = np.argsort(distmat[s:e], axis=1)
        gp, gc = g_pids[order], g_camids[order]
        same_pid = gp == q_pids[s:e, None]
        keep = ~(same_pid & (gc == q_camids[s:e, None]))
        hits = same_pid & keep
        num_rel = hits.sum(1)
        valid = num_rel > 0
        if not valid.any():
            continue
        hits, keep, num_rel = hits[valid], keep[valid], num_rel[valid]
        kept_rank = np.cumsum(keep, axis=1) - 1  # 0-based rank among kept items
        first = np.where(hits, kept_rank, np.iinfo(np.int64).max).min(1)
        hit_at += np.bincount(first[first < max_rank], minlength=max_rank)[:max_rank]
        precision = np.cumsum(hits, axis=1) / np.maximum(kept_rank + 1.0, 1.0)  # only read at hits
        aps.append((precision * hits).sum(1) / num_rel)
    if not aps:
        raise InputError("no query identity appears in the gallery under another camera: nothing to evaluate "
                         "(check that query and gallery share identities and that camera ids are parsed)")
    aps = np.concatenate(aps)
    cmc = np.cumsum(hit_at).astype(np.float32) / np.float32(len(aps))  # float32 division, as torchreid
    return cmc, float(np.mean(aps))


def _eval_cuhk03(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, num_repeats=10):
    indices = np.argsort(distmat, axis=1)
    all_cmc, all_ap = [], []
    for q in range(distmat.shape[0]):
        order = indices[q]
        keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        raw = (g_pids[order][keep] == q_pids[q]).astype(np.int32)
        if not raw.any():
            continue
        by_pid = OrderedDict()  # first-seen order: the RNG draws happen in torchreid's order
        for i, pid in enumerate(g_pids[order][keep]):
            by_pid.setdefault(pid, []).append(i)
        cmc = 0.0
        for _ in range(num_repeats):
            mask = np.zeros(len(raw), bool)
            for idxs in by_pid.values():
                mask[np.random.choice(idxs)] = True
            c = np.minimum(raw[mask].cumsum(), 1)
            cmc = cmc + c[:max_rank].astype(np.float32)
        all_cmc.append(cmc / num_repeats)
        cum = raw.cumsum()
        all_ap.append(float((cum / np.arange(1.0, len(raw) + 1) * raw).sum() / raw.sum()))
    if not all_ap:
        raise InputError("no query identity appears in the gallery under another camera: nothing to evaluate")
    if len({len(c) for c in all_cmc}) > 1:  # fewer gallery identities than max_rank
        n = min(len(c) for c in all_cmc)
        all_cmc = [c[:n] for c in all_cmc]
    cmc = np.asarray(all_cmc, np.float32).sum(0) / len(all_ap)
    return cmc, float(np.mean(all_ap))


# --------------------------------------------------------------------------- distances, re-ranking


def compute_distance_matrix(qf, gf, metric: str = "euclidean") -> np.ndarray:
    """(num_q, D), (num_g, D) features -> (num_q, num_g) float32 distances.

    'euclidean' is the squared Euclidean distance (torchreid's); 'cosine' is 1 - cosine similarity.
    On L2-normalised features (the Embedder's) both give the same ranking.
    """
    if metric not in METRICS:
        raise InputError(f"unknown distance metric {metric!r}; choose from {', '.join(METRICS)}")
    qf = np.asarray(qf, np.float32)
    gf = np.asarray(gf, np.float32)
    if qf.ndim != 2 or gf.ndim != 2 or qf.shape[1] != gf.shape[1]:
        raise InputError(f"query features {qf.shape} and gallery features {gf.shape} must be (N, D) with equal D")
    if metric == "cosine":
        qn = qf / np.maximum(np.linalg.norm(qf, axis=1, keepdims=True), 1e-12)
        gn = gf / np.maximum(np.linalg.norm(gf, axis=1, keepdims=True), 1e-12)
        return (1.0 - qn @ gn.T).astype(np.float32)
    d = (qf * qf).sum(1)[:, None] + (gf * gf).sum(1)[None, :] - 2.0 * (qf @ gf.T)
    return np.maximum(d, 0.0).astype(np.float32)  # rounding can push an identical pair below zero


def re_ranking(q_g_dist, q_q_dist, g_g_dist, k1: int = 20, k2: int = 6, lambda_value: float = 0.3) -> np.ndarray:
    """k-reciprocal re-ranking (Zhong et al., CVPR 2017), the form torchreid ships.

    Inputs are the query-gallery, query-query and gallery-gallery distance matrices; returns the
    re-ranked query-gallery distances. Memory is O((num_q + num_g)^2) float32.
    """
    q_g = np.asarray(q_g_dist, np.float32)
    nq = q_g.shape[0]
    dist = np.block([[np.asarray(q_q_dist, np.float32), q_g], [q_g.T, np.asarray(g_g_dist, np.float32)]])
    dist = np.power(dist, 2).astype(np.float32)
    dist = np.transpose(dist / np.max(dist, axis=0))  # column-normalised, then rows are probes
    n = dist.shape[0]
    rank = np.argsort(dist).astype(np.int32)
    half = int(np.around(k1 / 2.0))

    def reciprocal(i, k):
        forward = rank[i, :k + 1]
        backward = rank[forward, :k + 1]
        return forward[np.nonzero(backward == i)[0]]

    V = np.zeros_like(dist)
    for i in range(n):
        r = reciprocal(i, k1)
        expansion = r
        for cand in r:  # add a neighbour's own reciprocal set when it mostly agrees with ours
            rc = reciprocal(cand, half)
            if len(np.intersect1d(rc, r)) > 2.0 / 3 * len(rc):
                expansion = np.append(expansion, rc)
        expansion = np.unique(expansion)
        w = np.exp(-dist[i, expansion])
        V[i, expansion] = w / np.sum(w)
    dist = dist[:nq]
    if k2 != 1:  # local query expansion over the k2 nearest neighbours
        V = np.stack([V[rank[i, :k2]].mean(0) for i in range(n)]).astype(np.float32)
    jaccard = np.zeros_like(dist)
    for i in range(nq):
        nz = np.nonzero(V[i] != 0)[0]
        inter = np.minimum(V[i, nz][None, :], V[:, nz]).sum(1)  # V >= 0: min with a zero adds nothing
        jaccard[i] = 1 - inter / (2.0 - inter)
    final = jaccard * (1 - lambda_value) + dist * lambda_value
    return final[:, nq:]


# --------------------------------------------------------------------------- models and artifacts


class _ModuleBackend:
    """An in-memory PyTorch model as an Embedder backend (the training loop's evaluation)."""

    name = "pytorch (in memory)"
    thread_safe = False
    min_batch = 1
    max_batch = None

    def __init__(self, model, device=None):
        import torch

        from .checkpoint import model_meta

        self._torch = torch
        self.model = model
        self.device = device or next(model.parameters()).device
        self.path = Path(f"<in-memory {getattr(model, 'arch', type(model).__name__)}>")
        self.meta = model_meta(model)

    def run(self, batch):
        torch = self._torch
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
                return self.model(x).float().cpu().numpy()
        finally:
            self.model.train(was_training)

    def describe(self):
        return f"{self.name} ({self.device})"

    def close(self):
        pass


def as_embedder(obj, device=None, batch_size=None):
    """An Embedder for: an Embedder (as is), an artifact path (.onnx/.xml/.engine/.pth ...), or a torch model."""
    from .runtime import Embedder

    if hasattr(obj, "embed") and callable(obj.embed):
        return obj
    if isinstance(obj, (str, Path)):
        return Embedder(obj, device=device, batch_size=batch_size)
    if hasattr(obj, "state_dict") and hasattr(obj, "arch"):
        return Embedder.from_backend(_ModuleBackend(obj, device), batch_size=batch_size)
    raise InputError(f"cannot evaluate a {type(obj).__name__}: pass an Embedder, an artifact path or an OSNet model")


def load_images(paths) -> list:
    """Read images as BGR uint8 (OpenCV); a missing or unreadable file names its path."""
    from .deps import require

    cv2 = require("cv2", "reading images")
    out = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(f"cannot read image {p} (missing, unreadable or not an image)")
        out.append(img)
    return out


def extract_features(embedder, paths, chunk: int = 512, progress: bool = True, desc: str = "features") -> np.ndarray:
    """L2-normalised features of image files, read and embedded `chunk` at a time."""
    paths = list(paths)
    dim = embedder.feature_dim if hasattr(embedder, "feature_dim") else None
    parts = []
    bar = _progress(len(paths), desc, progress)
    for s in range(0, len(paths), chunk):
        imgs = load_images(paths[s:s + chunk])
        parts.append(embedder.embed(imgs))
        bar.update(len(imgs))
    bar.close()
    if not parts:
        return np.zeros((0, dim or 512), np.float32)
    return np.concatenate(parts)


def _progress(total, desc, enabled):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a base dependency; this only guards odd installs
        enabled = False
    if not enabled:
        class _Null:
            def update(self, n):
                pass

            def close(self):
                pass
        return _Null()
    return tqdm(total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True)


@dataclass
class EvalResult:
    """CMC (rank-1..max_rank) and mAP of one evaluation, plus what was evaluated."""

    cmc: np.ndarray
    mAP: float
    num_query: int
    num_gallery: int
    dataset: str = ""
    model: str = ""
    metric: str = "euclidean"
    rerank: bool = False
    extra: dict = field(default_factory=dict)
    distmat: np.ndarray | None = field(default=None, repr=False, compare=False)  # only with keep_distmat

    def rank(self, k: int) -> float:
        return float(self.cmc[min(k, len(self.cmc)) - 1])

    def to_dict(self) -> dict:
        d = {"dataset": self.dataset, "model": self.model, "metric": self.metric, "rerank": self.rerank,
             "mAP": self.mAP, "num_query": self.num_query, "num_gallery": self.num_gallery}
        for k in (1, 5, 10, 20):
            d[f"rank{k}"] = self.rank(k)
        d.update(self.extra)
        return d

    def summary(self) -> str:
        ranks = "  ".join(f"rank-{k} {100 * self.rank(k):5.1f}%" for k in (1, 5, 10, 20))
        return (f"{self.dataset or 'eval'}: mAP {100 * self.mAP:5.1f}%  {ranks}  "
                f"({self.num_query} query / {self.num_gallery} gallery, {self.metric}"
                f"{', re-ranked' if self.rerank else ''})")


def evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, metric="euclidean", rerank=False,
                      max_rank=50, use_metric_cuhk03=False, k1=20, k2=6, lambda_value=0.3):
    """(cmc, mAP) from query and gallery features."""
    distmat = ranking_distances(qf, gf, metric, rerank, k1, k2, lambda_value)
    return evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, use_metric_cuhk03)


def ranking_distances(qf, gf, metric="euclidean", rerank=False, k1=20, k2=6, lambda_value=0.3) -> np.ndarray:
    """The (num_q, num_g) distances the protocol ranks by: plain, or k-reciprocal re-ranked."""
    distmat = compute_distance_matrix(qf, gf, metric)
    if rerank:
        distmat = re_ranking(distmat, compute_distance_matrix(qf, qf, metric),
                             compute_distance_matrix(gf, gf, metric), k1, k2, lambda_value)
    return distmat


def evaluate(model, dataset, metric: str = "euclidean", rerank: bool = False, max_rank: int = 50,
             use_metric_cuhk03: bool | None = None, batch_size=None, device=None, progress: bool = True,
             embedders=None, keep_distmat: bool = False) -> EvalResult:
    """Evaluate a model or artifact on a dataset's query/gallery (a ReidDataset from training.datasets,
    or anything with .query/.gallery lists of samples with path, pid, camid).

    model: an Embedder, an artifact path (.onnx, .xml, .engine, .pth ...) or a torch OSNet; a list of
    them evaluates their concatenated features (the paper's DML ensemble).
    use_metric_cuhk03: None picks the dataset's own default (CUHK03's classic split) else Market-1501's.
    keep_distmat: keep the ranked distances in result.distmat (e.g. for osnet_edge.visualize).
    """
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    embs = embedders or [as_embedder(m, device=device, batch_size=batch_size) for m in models]
    if not dataset.query or not dataset.gallery:
        raise InputError(f"dataset {getattr(dataset, 'name', '')!r} has no query/gallery split to evaluate on")
    q_paths = [s.path for s in dataset.query]
    g_paths = [s.path for s in dataset.gallery]
    qf = np.concatenate([extract_features(e, q_paths, progress=progress, desc="query") for e in embs], 1)
    gf = np.concatenate([extract_features(e, g_paths, progress=progress, desc="gallery") for e in embs], 1)
    q_pids = np.array([s.pid for s in dataset.query])
    g_pids = np.array([s.pid for s in dataset.gallery])
    q_cams = np.array([s.camid for s in dataset.query])
    g_cams = np.array([s.camid for s in dataset.gallery])
    if use_metric_cuhk03 is None:
        use_metric_cuhk03 = bool(getattr(dataset, "cuhk03_metric", False))
    distmat = ranking_distances(qf, gf, metric, rerank)
    cmc, mAP = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank, use_metric_cuhk03)
    name = " + ".join(str(getattr(getattr(e, "backend", None), "path", e)) for e in embs)
    return EvalResult(cmc=cmc, mAP=mAP, num_query=len(q_paths), num_gallery=len(g_paths),
                      dataset=getattr(dataset, "name", ""), model=name, metric=metric, rerank=rerank,
                      distmat=distmat if keep_distmat else None)
