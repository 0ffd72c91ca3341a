"""Evaluation: torchreid parity of evaluate_rank / re_ranking, distances, evaluate() through an Embedder."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from osnet_edge.errors import InputError, OsnetEdgeError
from osnet_edge.evaluation import (EvalResult, compute_distance_matrix, evaluate, evaluate_rank, re_ranking)


def _problem(seed, nq=120, ng=500, ids=60, cams=6, distractors=40):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, ids, nq)
    g_pids = np.concatenate([rng.integers(1, ids, ng - distractors), np.zeros(distractors, int)])  # pid 0 distractors
    q_cams, g_cams = rng.integers(0, cams, nq), rng.integers(0, cams, ng)
    dist = rng.random((nq, ng)).astype(np.float32)
    dist[q_pids[:, None] == g_pids[None, :]] -= 0.25  # make true matches likelier, not certain
    return dist, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_market_protocol_equals_torchreid(torchreid_rank, seed):
    dist, qp, gp, qc, gc = _problem(seed)
    cmc, mAP = evaluate_rank(dist, qp, gp, qc, gc)
    ref_cmc, ref_map = torchreid_rank.evaluate_rank(dist, qp, gp, qc, gc, use_cython=False)
    assert cmc.shape == ref_cmc.shape == (50,)
    np.testing.assert_allclose(cmc, ref_cmc, rtol=0, atol=1e-7)
    assert mAP == pytest.approx(float(ref_map), abs=1e-12)
    assert 0 < mAP < 1


def test_market_protocol_with_ties_and_small_gallery(torchreid_rank):
    # integer distances: many ties (argsort breaks them as torchreid does); gallery smaller than max_rank
    rng = np.random.default_rng(5)
    dist = rng.integers(0, 4, (30, 20)).astype(np.float32)
    qp, gp = rng.integers(0, 6, 30), rng.integers(0, 6, 20)
    qc, gc = rng.integers(0, 3, 30), rng.integers(0, 3, 20)
    cmc, mAP = evaluate_rank(dist, qp, gp, qc, gc, max_rank=50)
    # torchreid's Python path cannot stack CMC rows shorter than max_rank, so compare at rank <= 10
    ref_cmc, ref_map = torchreid_rank.evaluate_rank(dist, qp, gp, qc, gc, max_rank=10, use_cython=False)
    assert len(cmc) == 20 and cmc[-1] == 1.0
    np.testing.assert_allclose(cmc[:10], ref_cmc, atol=1e-7)
    assert mAP == pytest.approx(float(ref_map), abs=1e-12)


def test_cuhk03_single_gallery_shot_equals_torchreid(torchreid_rank, monkeypatch):
    import numpy.ma  # noqa: F401  (import before the shim below: numpy.ma needs the real np.bool)

    monkeypatch.setattr(np, "bool", bool, raising=False)  # torchreid 0.2.5 still uses the removed alias
    dist, qp, gp, qc, gc = _problem(3, nq=40, ng=200, ids=25, cams=2, distractors=0)
    np.random.seed(11)
    cmc, mAP = evaluate_rank(dist, qp, gp, qc, gc, max_rank=10, use_metric_cuhk03=True)
    np.random.seed(11)
    ref_cmc, ref_map = torchreid_rank.evaluate_rank(dist, qp, gp, qc, gc, max_rank=10, use_metric_cuhk03=True,
                                                    use_cython=False)
    np.testing.assert_allclose(cmc, ref_cmc, atol=1e-6)
    assert mAP == pytest.approx(float(ref_map), abs=1e-12)
    # single-gallery-shot CMC differs from the Market protocol's on the same distances
    assert not np.allclose(cmc, evaluate_rank(dist, qp, gp, qc, gc, max_rank=10)[0])


def test_same_camera_matches_are_removed():
    # the only true match is under the query's camera -> no valid query
    dist = np.array([[0.1, 0.5]], np.float32)
    with pytest.raises(InputError, match="another camera"):
        evaluate_rank(dist, [7], [7, 3], [0], [0, 1])
    # under another camera it counts: ranked 1st -> rank-1 = 1, AP = 1
    cmc, mAP = evaluate_rank(dist, [7], [7, 3], [0], [1, 1])
    assert cmc[0] == 1 and mAP == 1
    # ranked 2nd behind a distractor (pid 0) -> AP 0.5
    cmc, mAP = evaluate_rank(np.array([[0.5, 0.1]], np.float32), [7], [7, 0], [0], [1, 1])
    assert cmc[0] == 0 and cmc[1] == 1 and mAP == pytest.approx(0.5)


def test_bad_inputs_name_the_problem():
    with pytest.raises(InputError, match="g_pids has 3 entries"):
        evaluate_rank(np.zeros((2, 2)), [1, 2], [1, 2, 3], [0, 1], [0, 1])
    with pytest.raises(InputError, match="non-finite"):
        evaluate_rank(np.array([[np.nan, 1.0]]), [1], [1, 2], [0], [1, 1])
    with pytest.raises(InputError, match="unknown distance metric"):
        compute_distance_matrix(np.zeros((1, 4)), np.zeros((1, 4)), "manhattan")
    assert issubclass(InputError, OsnetEdgeError)


def test_rerank_equals_torchreid():
    from conftest import load_torchreid_module

    ref = load_torchreid_module("utils/rerank.py")
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(25, 8)).astype(np.float32), rng.normal(size=(70, 8)).astype(np.float32)
    qg, qq, gg = (compute_distance_matrix(a, b) for a, b in ((q, g), (q, q), (g, g)))
    for k1, k2, lam in ((20, 6, 0.3), (8, 1, 0.5)):
        ours = re_ranking(qg, qq, gg, k1, k2, lam)
        np.testing.assert_allclose(ours, ref.re_ranking(qg, qq, gg, k1, k2, lam), rtol=1e-5, atol=1e-6)
    assert ours.shape == (25, 70)


def test_distances():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 16)), rng.normal(size=(7, 16))
    sq = ((a[:, None] - b[None]) ** 2).sum(-1)
    np.testing.assert_allclose(compute_distance_matrix(a, b), sq, rtol=1e-4, atol=1e-4)
    cos = 1 - (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    np.testing.assert_allclose(compute_distance_matrix(a, b, "cosine"), cos, atol=1e-5)
    assert (compute_distance_matrix(a, a).diagonal() >= 0).all()


class _ColourEmbedder:
    """A stand-in artifact: torso and leg colours under a grey-world white balance (which undoes the
    cameras' colour casts), L2-normalised. Any object with embed() is evaluated like an Embedder."""

    feature_dim = 6

    def embed(self, crops):
        feats = []
        for c in crops:
            c = c.astype(np.float32) / (c.reshape(-1, 3).mean(0) + 1)
            h, w = c.shape[:2]
            mid = slice(int(0.42 * w), int(0.58 * w))
            feats.append(np.concatenate([c[int(0.25 * h):int(0.45 * h), mid].mean((0, 1)),
                                         c[int(0.6 * h):int(0.85 * h), mid].mean((0, 1))]))
        f = np.stack(feats).astype(np.float32)
        return f / np.linalg.norm(f, axis=1, keepdims=True)


def test_evaluate_any_embedder_on_a_dataset(tmp_path):
    from osnet_edge.training.datasets import market1501
    from osnet_edge.training.synthetic_dataset import make_market_dataset

    make_market_dataset(tmp_path, num_ids=16, images_per_id=6, cams=3, size=(64, 32), num_distractors=5, num_junk=3)
    ds = market1501(tmp_path)
    res = evaluate(_ColourEmbedder(), ds, progress=False)
    assert isinstance(res, EvalResult) and res.num_query == len(ds.query) and res.num_gallery == len(ds.gallery)
    # chance level for this gallery, from random distances under the same protocol
    rng = np.random.default_rng(0)
    qp, gp = np.array([s.pid for s in ds.query]), np.array([s.pid for s in ds.gallery])
    qc, gc = np.array([s.camid for s in ds.query]), np.array([s.camid for s in ds.gallery])
    chance = np.mean([evaluate_rank(rng.random((len(qp), len(gp))), qp, gp, qc, gc)[1] for _ in range(5)])
    assert res.mAP > 2 * chance  # colours carry identity in the rendered data
    d = res.to_dict()
    assert d["rank1"] <= d["rank5"] <= d["rank10"] <= d["rank20"]
    reranked = evaluate(_ColourEmbedder(), ds, rerank=True, progress=False)
    assert reranked.rerank and reranked.mAP != res.mAP
    assert "mAP" in res.summary()


def test_evaluation_imports_without_torch(tmp_path):
    # evaluating an ONNX artifact on a torch-free box: osnet_edge.evaluation must not import torch
    code = ("import sys; sys.modules['torch'] = None\n"
            "import osnet_edge.evaluation as e, numpy as np\n"
            "print(e.evaluate_rank(np.array([[0.1, 0.9]]), [1], [1, 2], [0], [1, 1])[1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip()) == 1.0


def test_test_only_dataset_copy_is_evaluated(tmp_path):
    """Evaluation reads query and gallery only; training still needs its split and says which folder is missing."""
    import shutil

    from osnet_edge.training.datasets import DatasetError, load_dataset
    from osnet_edge.training.synthetic_dataset import make_market_dataset

    make_market_dataset(tmp_path / "full", num_ids=8, images_per_id=6, cams=3, size=(64, 32), num_distractors=2)
    for split in ("query", "bounding_box_test"):
        shutil.copytree(tmp_path / "full" / split, tmp_path / "test_only" / split)
    full = load_dataset(f"market1501:{tmp_path / 'full'}", train=False)
    ds = load_dataset(f"market1501:{tmp_path / 'test_only'}", train=False)
    assert ds.train == [] and [s.pid for s in ds.query] == [s.pid for s in full.query]
    assert len(ds.gallery) == len(full.gallery) > 0
    res = evaluate(_ColourEmbedder(), ds, progress=False)
    assert res.num_query == len(ds.query) and res.mAP == evaluate(_ColourEmbedder(), full, progress=False).mAP
    with pytest.raises(DatasetError, match="does not hold bounding_box_train"):
        load_dataset(f"market1501:{tmp_path / 'test_only'}")
