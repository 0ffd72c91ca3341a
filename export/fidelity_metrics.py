"""What INT8 kept of FP32, as numbers: per-crop cosine, neighbour agreement (strict and on decisive neighbours),
correct matches kept, and retrieval mAP / rank-1 (Market-1501 protocol).

Decisive neighbours. On tracklet footage most crops have a near-duplicate (the next frame of the same person):
their FP32 1st and 2nd neighbours are a hair apart (median gap 0.012 cosine on vtest.avi) and swap under any
perturbation, which strict top-1 agreement counts as a failure. A neighbour is DECISIVE when FP32's 1st and 2nd
similarities differ by more than the INT8 artifact's own similarity noise can undo: sigma is the spread of
(INT8 similarity - FP32 similarity) over the pairs that compete for top-1 (each crop with its 10 nearest FP32
neighbours, centred per crop, since a shift common to a crop's row changes no ranking); the difference of two
such similarities has spread sqrt(2)*sigma, and a gap of 3*sqrt(2)*sigma flips with probability ~0.1% under
Gaussian noise. The gap is capped at MAX_DECISIVE_GAP so a noisy artifact cannot excuse itself by making
every neighbour "indecisive".
"""
from __future__ import annotations

import numpy as np

from osnet_edge.errors import InputError

GAP_LEVELS = (0.001, 0.005, 0.01)  # FP32 1st-vs-2nd neighbour cosine gaps the top-1 agreement is broken down by
CLEAR_GAP = 0.005                    # the one the summary prints
NOISE_NEIGHBOURS = 10                # pairs per crop the similarity noise is measured on
DECISIVE_SIGMAS = 3.0                # decisive gap = this many spreads of the difference of two similarities
MAX_DECISIVE_GAP = 0.02              # cosine; a noisier artifact is judged at this gap


def _unit(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def similarity_noise(s_ref: np.ndarray, s_test: np.ndarray, neighbours: np.ndarray) -> float:
    """Spread of INT8 - FP32 similarity over each crop's FP32 nearest neighbours, centred per crop."""
    rows = np.arange(len(s_ref))[:, None]
    d = s_test[rows, neighbours] - s_ref[rows, neighbours]
    return float(np.std(d - d.mean(axis=1, keepdims=True)))


def decisive_gap(sigma: float) -> float:
    return float(min(DECISIVE_SIGMAS * np.sqrt(2.0) * sigma, MAX_DECISIVE_GAP))


def embedding_agreement(ref, test, k: int = 5) -> dict:
    """Per-crop cosine and nearest-neighbour agreement between two embeddings of the same crops."""
    ref, test = _unit(ref), _unit(test)
    if ref.shape != test.shape:
        raise InputError(f"embeddings differ in shape: reference {ref.shape}, candidate {test.shape}")
    n = len(ref)
    if n < 2:
        raise InputError(f"nearest-neighbour agreement needs at least 2 crops, got {n}")
    cos = np.sum(ref * test, axis=1)
    k = min(k, n - 1)

    def similarities(f):
        s = f @ f.T
        np.fill_diagonal(s, -np.inf)  # a crop is not its own neighbour
        return s

    s_ref, s_test = similarities(ref), similarities(test)
    order_ref = np.argsort(-s_ref, axis=1, kind="stable")
    nr = order_ref[:, :k]
    nt = np.argsort(-s_test, axis=1, kind="stable")[:, :k]
    top1 = float(np.mean(nr[:, 0] == nt[:, 0]))
    topk = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(nr, nt)]))
    rows = np.arange(n)
    gap = s_ref[rows, nr[:, 0]] - s_ref[rows, nr[:, 1]] if k > 1 else np.full(n, np.inf)
    hit = nr[:, 0] == nt[:, 0]
    # near-ties (two gallery images of one person a hair apart) flip under any perturbation; the breakdown
    # shows whether disagreement is confined to them or reaches clear-cut neighbours
    by_gap = {f"{t:g}": {"crops": int(np.sum(gap >= t)),
                         "top1_agreement": float(np.mean(hit[gap >= t])) if np.any(gap >= t) else None}
              for t in GAP_LEVELS}
    sigma = similarity_noise(s_ref, s_test, order_ref[:, :min(NOISE_NEIGHBOURS, n - 1)])
    g = decisive_gap(sigma)
    dec = gap >= g
    decisive = {"gap": g, "similarity_noise": sigma, "crops": int(dec.sum()),
                "top1_agreement": float(np.mean(hit[dec])) if dec.any() else None}
    return {"nn_ref": nr[:, 0], "nn_test": nt[:, 0], "fp32_top1_top2_gap_median": float(np.median(gap)),
            "top1_agreement_by_fp32_gap": by_gap, "decisive": decisive,
            "cosine": cos, "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
            "cosine_p01": float(np.percentile(cos, 1)), "top1_agreement": top1, "top5_agreement": topk}


def retrieval_metrics(q, g, q_pids, g_pids, q_camids, g_camids) -> dict:
    """mAP / rank-1 / rank-5 with the Market-1501 protocol (cosine distance on L2-normalised features)."""
    from osnet_edge.evaluation import evaluate_rank

    dist = 1.0 - _unit(q) @ _unit(g).T
    cmc, mAP = evaluate_rank(dist, q_pids, g_pids, q_camids, g_camids)
    return {"mAP": float(mAP), "rank1": float(cmc[0]), "rank5": float(cmc[min(4, len(cmc) - 1)])}


def _top1_margins(q, g, q_pids, g_pids, q_camids, g_camids, leave_one_out: bool) -> np.ndarray:
    """Per query: similarity of its best right-identity gallery match minus its best wrong-identity one (> 0:
    top-1 is right). Gallery images of the query's identity on the query's own camera are not candidates
    (Market-1501 protocol); leave_one_out: q is g, self excluded. -inf where the query has no right match."""
    s = _unit(q) @ _unit(g).T
    same = q_pids[:, None] == g_pids[None, :]
    invalid = same & (q_camids[:, None] == g_camids[None, :])
    if leave_one_out:
        invalid = np.eye(len(q), dtype=bool)
    s = np.where(invalid, -np.inf, s)
    best_same = np.where(same, s, -np.inf).max(axis=1)
    best_other = np.where(~same, s, -np.inf).max(axis=1)
    with np.errstate(invalid="ignore"):  # -inf - -inf where a query has no candidate at all: masked out
        return np.where(np.isfinite(best_same), best_same - best_other, -np.inf)


def correct_matches_kept(ref_q, test_q, ref_g, test_g, q_pids, g_pids, q_camids, g_camids,
                         leave_one_out: bool = False, gap: float | None = None) -> dict:
    """Of the queries whose FP32 top-1 is the right identity, how many INT8 still answers right.

    gap: the decisive gap (embedding_agreement's): the same count over the queries whose FP32 right answer is
    ahead of the nearest wrong identity by at least `gap` ('decisive'). A right answer that won by less than
    the artifact's similarity noise can undo is a coin flip FP32 happened to win; losing it (and gaining the
    like elsewhere) is noise, not lost accuracy."""
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    m32 = _top1_margins(ref_q, ref_g, q_pids, g_pids, q_camids, g_camids, leave_one_out)
    m8 = _top1_margins(test_q, test_g, q_pids, g_pids, q_camids, g_camids, leave_one_out)
    right32, right8 = m32 > 0, m8 > 0
    n = int(right32.sum())
    kept = int((right32 & right8).sum())
    out = {"queries": int(len(q_pids)), "fp32_correct": n, "kept": kept, "lost": n - kept,
           "gained": int((~right32 & right8).sum()), "share": kept / n if n else None,
           "protocol": "leave-one-out over the held-out crops" if leave_one_out else "query -> gallery"}
    if gap is not None:
        dec = right32 & (m32 >= gap)
        nd, kd = int(dec.sum()), int((dec & right8).sum())
        out["decisive"] = {"gap": float(gap), "fp32_correct": nd, "kept": kd, "lost": nd - kd,
                           "share": kd / nd if nd else None}
    return out
