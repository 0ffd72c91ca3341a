"""The fidelity report's metrics and gates, on embeddings whose agreement is known by construction."""
import json

import numpy as np
import pytest

from osnet_edge.calibration import CropSet
from osnet_edge.export import fidelity as fid


def _clustered(n_ids=20, per_id=5, dim=64, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    feats = np.repeat(centres, per_id, axis=0) + spread * rng.normal(size=(n_ids * per_id, dim))
    pids = np.repeat(np.arange(n_ids), per_id)
    return feats.astype(np.float32), pids


def test_identical_embeddings_agree_fully():
    f, _ = _clustered()
    a = fid.embedding_agreement(f, f.copy())
    assert a["cosine_min"] == pytest.approx(1.0) and a["top1_agreement"] == 1.0 and a["top5_agreement"] == 1.0


def test_noise_lowers_cosine_and_agreement_monotonically():
    f, _ = _clustered()
    rng = np.random.default_rng(1)
    small = fid.embedding_agreement(f, f + 0.05 * rng.normal(size=f.shape))
    large = fid.embedding_agreement(f, f + 1.0 * rng.normal(size=f.shape))
    assert 1.0 > small["cosine_mean"] > large["cosine_mean"]
    assert small["top1_agreement"] > large["top1_agreement"]
    assert large["cosine_min"] <= large["cosine_p01"] <= large["cosine_mean"]


def test_one_destroyed_row_shows_in_min_not_mean():
    f, _ = _clustered()
    g = f.copy()
    g[3] = np.abs(np.random.default_rng(2).normal(size=f.shape[1]))  # one embedding replaced
    a = fid.embedding_agreement(f, g)
    assert a["cosine_min"] < 0.5 < 0.95 < a["cosine_mean"]



def test_agreement_breakdown_separates_near_ties_from_clear_neighbours():
    # crops 0 and 1 are a near-tie for crop 2 (gap 1e-4); every other crop has a clear nearest neighbour
    f, _ = _clustered(spread=0.3)
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    f[1] = f[0] + 1e-4 * np.random.default_rng(3).normal(size=f.shape[1])
    f[2] = f[0] + 0.02 * np.random.default_rng(4).normal(size=f.shape[1])
    g = f.copy()
    g[0], g[1] = f[1], f[0]  # swap the twins: crop 2's top-1 flips, nothing clear-cut does
    a = fid.embedding_agreement(f, g)
    by_gap = a["top1_agreement_by_fp32_gap"]
    assert a["top1_agreement"] < 1.0
    clear = by_gap[f"{fid.CLEAR_GAP:g}"]
    assert clear["top1_agreement"] == 1.0 and 0 < clear["crops"] < len(f)

def _fake_embedder(table):
    """crops are indices into table: crops -> rows."""
    return lambda crops: np.asarray([table[int(c[0, 0, 0])] for c in crops])


def _crops(idx):
    return [np.full((4, 2, 3), i, np.uint8) for i in idx]


def test_report_passes_fails_and_writes_json(tmp_path):
    f, pids = _clustered(n_ids=10, per_id=6)
    ref = _fake_embedder(f)
    noisy = _fake_embedder(f + 2.0 * np.random.default_rng(3).normal(size=f.shape))
    gallery_idx = [i for i in range(60) if i % 6]
    query_idx = list(range(0, 60, 6))
    held = CropSet(_crops(gallery_idx), "test gallery", pids=pids[gallery_idx], camids=np.ones(len(gallery_idx), int))
    query = CropSet(_crops(query_idx), "test query", pids=pids[query_idx], camids=np.zeros(len(query_idx), int))

    good = fid.fidelity_report(ref, ref, held, query)
    assert good.passed and good.retrieval["fp32"] == good.retrieval["int8"]
    assert good.retrieval["fp32"]["rank1"] == 1.0 and good.n_crops == 60

    bad = fid.fidelity_report(ref, noisy, held, query, artifact="x.xml")
    assert not bad.passed and len(bad.failures) == 2
    assert bad.retrieval["int8"]["mAP"] < bad.retrieval["fp32"]["mAP"]
    with pytest.raises(fid.FidelityError, match="mean cosine .* < 0.98"):
        fid.check(bad, quiet=True)
    # gates are flags: a user who accepts the loss can lower them
    lenient = fid.fidelity_report(ref, noisy, held, query, min_cosine=0.0, min_top1=0.0)
    assert lenient.passed

    path = fid.write_report(bad, fid.report_path(tmp_path / "osnet_x0_25_int8.xml"))
    assert path.name == "osnet_x0_25_int8.fidelity.json"
    d = json.loads(path.read_text())
    assert d["passed"] is False and d["thresholds"] == {"min_cosine": 0.98, "min_top1": 0.9}
    assert d["cosine_mean"] == pytest.approx(bad.cosine_mean) and "retrieval" in d


def test_generated_crops_are_labelled():
    f, _ = _clustered(n_ids=3, per_id=2)
    held = CropSet(_crops(range(6)), "generated:6", generated=True)
    rep = fid.fidelity_report(_fake_embedder(f), _fake_embedder(f), held)
    assert rep.generated and "GENERATED" in rep.summary() and rep.retrieval is None


def test_report_needs_two_crops():
    with pytest.raises(fid.InputError, match="at least 2"):
        fid.fidelity_report(lambda c: np.ones((len(c), 4)), lambda c: np.ones((len(c), 4)), _crops([0]))


def test_identity_agreement_separates_harmless_flips_from_identity_changes():
    # 10 identities x 6 crops; the candidate swaps two crops of identity 0 (a flip inside one person) and
    # moves a crop of identity 1 onto identity 2 (a flip to another person)
    f, pids = _clustered(n_ids=10, per_id=6, spread=0.2)
    held = CropSet(_crops(range(60)), "test", pids=pids, camids=np.zeros(60, int))
    g = f.copy()
    g[0], g[1] = f[1].copy(), f[0].copy()
    same_id = fid.fidelity_report(_fake_embedder(f), _fake_embedder(g), held, min_cosine=0, min_top1=0)
    assert same_id.top1_agreement < 1.0
    assert same_id.extra["top1_identity_agreement"] == 1.0
    assert "keeps its identity: 100.0%" in same_id.summary()
    g[6] = f[12] + 0.01
    other_id = fid.fidelity_report(_fake_embedder(f), _fake_embedder(g), held, min_cosine=0, min_top1=0)
    assert other_id.extra["top1_identity_agreement"] < 1.0
    d = other_id.to_dict()
    assert d["extra"]["top1_identity_agreement"] == pytest.approx(other_id.extra["top1_identity_agreement"])
    # without identities there is nothing to compare
    anon = fid.fidelity_report(_fake_embedder(f), _fake_embedder(g), CropSet(_crops(range(60)), "anon"))
    assert "top1_identity_agreement" not in anon.extra
