"""The fidelity report's metrics and gates, on embeddings whose agreement is known by construction."""
import json

import numpy as np
import pytest

from osnet_edge.calibration import CropSet
from osnet_edge.export import fidelity as fid
from osnet_edge.export import gates
from osnet_edge.export.fidelity_metrics import CLEAR_GAP, embedding_agreement


def _clustered(n_ids=20, per_id=5, dim=64, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    feats = np.repeat(centres, per_id, axis=0) + spread * rng.normal(size=(n_ids * per_id, dim))
    pids = np.repeat(np.arange(n_ids), per_id)
    return feats.astype(np.float32), pids


def test_identical_embeddings_agree_fully():
    f, _ = _clustered()
    a = embedding_agreement(f, f.copy())
    assert a["cosine_min"] == pytest.approx(1.0) and a["top1_agreement"] == 1.0 and a["top5_agreement"] == 1.0


def test_noise_lowers_cosine_and_agreement_monotonically():
    f, _ = _clustered()
    rng = np.random.default_rng(1)
    small = embedding_agreement(f, f + 0.05 * rng.normal(size=f.shape))
    large = embedding_agreement(f, f + 1.0 * rng.normal(size=f.shape))
    assert 1.0 > small["cosine_mean"] > large["cosine_mean"]
    assert small["top1_agreement"] > large["top1_agreement"]
    assert large["cosine_min"] <= large["cosine_p01"] <= large["cosine_mean"]


def test_one_destroyed_row_shows_in_min_not_mean():
    f, _ = _clustered()
    g = f.copy()
    g[3] = np.abs(np.random.default_rng(2).normal(size=f.shape[1]))  # one embedding replaced
    a = embedding_agreement(f, g)
    assert a["cosine_min"] < 0.5 < 0.95 < a["cosine_mean"]



def test_agreement_breakdown_separates_near_ties_from_clear_neighbours():
    # crops 0 and 1 are a near-tie for crop 2 (gap 1e-4); every other crop has a clear nearest neighbour
    f, _ = _clustered(spread=0.3)
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    f[1] = f[0] + 1e-4 * np.random.default_rng(3).normal(size=f.shape[1])
    f[2] = f[0] + 0.02 * np.random.default_rng(4).normal(size=f.shape[1])
    g = f.copy()
    g[0], g[1] = f[1], f[0]  # swap the twins: crop 2's top-1 flips, nothing clear-cut does
    a = embedding_agreement(f, g)
    by_gap = a["top1_agreement_by_fp32_gap"]
    assert a["top1_agreement"] < 1.0
    clear = by_gap[f"{CLEAR_GAP:g}"]
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
    # every default gate applies (identities known) and every one fails on this much noise
    assert not bad.passed and {r["gate"] for r in bad.gates if r["applied"] and not r["passed"]} == \
        {"min_cosine", "min_crop_cosine", "min_decisive_top1", "min_correct_kept", "max_rank1_drop", "max_map_drop"}
    assert bad.retrieval["int8"]["mAP"] < bad.retrieval["fp32"]["mAP"]
    with pytest.raises(fid.FidelityError, match="mean cosine .* < 0.99") as info:
        fid.check(bad, quiet=True)
    assert "FP16 (--half)" in str(info.value) and "\n" not in str(info.value)
    # gates are flags: a user who accepts the loss can lower them, and the report says so instead of "passed"
    off = {g.key: (0.0 if g.kind == "min" else 1.0) for g in gates.GATES if g.default is not None}
    off["min_crop_cosine"] = off["min_cosine"] = -1.0
    lenient = fid.fidelity_report(ref, noisy, held, query, gates=off)
    assert lenient.passed and len(lenient.gates_lowered) == 6
    assert "PASSED" not in lenient.summary() and "ACCEPTED WITH GATES LOWERED" in lenient.summary()

    path = fid.write_report(bad, fid.report_path(tmp_path / "osnet_x0_25_int8.xml"))
    assert path.name == "osnet_x0_25_int8.fidelity.json"
    d = json.loads(path.read_text())
    assert d["passed"] is False and d["thresholds"] == {g.key: g.default for g in gates.GATES}
    assert d["cosine_mean"] == pytest.approx(bad.cosine_mean) and "retrieval" in d and d["gates_lowered"] == []


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


def test_decisive_gap_follows_the_measured_similarity_noise():
    # the same embeddings perturbed by small and by larger noise: the larger noise measures a larger spread of
    # INT8-minus-FP32 similarity, so fewer neighbours count as decisive
    f, _ = _clustered(n_ids=20, per_id=5, spread=0.3)
    rng = np.random.default_rng(7)
    small = embedding_agreement(f, f + 0.01 * rng.normal(size=f.shape))["decisive"]
    large = embedding_agreement(f, f + 0.1 * rng.normal(size=f.shape))["decisive"]
    assert 0 < small["similarity_noise"] < large["similarity_noise"]
    assert small["gap"] == pytest.approx(3 * np.sqrt(2) * small["similarity_noise"])
    assert small["gap"] < large["gap"] <= 0.02 and small["crops"] >= large["crops"]
    # a candidate whose only change is a swap of near-twins: strict top-1 drops, decisive top-1 does not
    g = f / np.linalg.norm(f, axis=1, keepdims=True)
    g[1] = g[0] + 1e-4 * rng.normal(size=f.shape[1])
    g[2] = g[0] + 0.02 * rng.normal(size=f.shape[1])
    swapped = g.copy()
    swapped[0], swapped[1] = g[1], g[0]
    a = embedding_agreement(g, swapped + 1e-3 * rng.normal(size=f.shape))
    assert a["top1_agreement"] < 1.0 and a["decisive"]["top1_agreement"] == 1.0


def _gallery_split(f, pids, noisy, absent=()):
    """Query = the first crop of each identity (camera 0), gallery = the rest (camera 1), less the identities
    `absent` (their queries have nothing to find: the protocol skips them)."""
    q_idx = [i for i in range(len(f)) if i % 5 == 0]
    g_idx = [i for i in range(len(f)) if i % 5 and pids[i] not in absent]
    held = CropSet(_crops(g_idx), "gallery", pids=pids[g_idx], camids=np.ones(len(g_idx), int))
    query = CropSet(_crops(q_idx), "query", pids=pids[q_idx], camids=np.zeros(len(q_idx), int))
    return fid.fidelity_report(_fake_embedder(f), _fake_embedder(noisy), held, query)


def test_correct_matches_kept_tolerates_one_query_not_two():
    f, pids = _clustered(n_ids=20, per_id=5, spread=0.2)
    g = f.copy()
    g[0] = f[5] + 0.01  # query of identity 0 now lands on identity 1
    one = _gallery_split(f, pids, g)
    kept = one.correct_kept
    assert kept["fp32_correct"] == 20 and kept["lost"] == 1 and kept["share"] == pytest.approx(0.95)
    row = next(r for r in one.gates if r["gate"] == "min_correct_kept")
    assert row["applied"] and row["passed"]  # 95% < 97%, but one query is one query
    rank1 = next(r for r in one.gates if r["gate"] == "max_rank1_drop")
    assert rank1["value"] == pytest.approx(0.05) and rank1["passed"]  # 5 points = one of 20 queries
    g[10] = f[15] + 0.01
    two = _gallery_split(f, pids, g)
    assert two.correct_kept["lost"] == 2
    assert any(x.startswith("correct matches kept 90.0%") for x in two.failures)
    assert any(x.startswith("rank-1 drop 10.0 points > 5.0 points") for x in two.failures)


def test_rank1_tolerance_counts_the_queries_the_protocol_scores():
    """A query whose identity the gallery lacks is skipped by the Market-1501 protocol, so one of the 19 scored
    queries moves rank-1 by 5.3 points: that one query is tolerated (1 / 20 queries would not cover it)."""
    f, pids = _clustered(n_ids=20, per_id=5, spread=0.2)
    g = f.copy()
    g[0] = f[5] + 0.01  # query of identity 0 now lands on identity 1
    rep = _gallery_split(f, pids, g, absent={19})
    assert rep.retrieval["n_query"] == 20 and rep.retrieval["n_scored"] == 19
    rank1 = next(r for r in rep.gates if r["gate"] == "max_rank1_drop")
    assert rank1["value"] == pytest.approx(1 / 19) and rank1["passed"], rank1
    assert "one of 19 scored queries" in rank1["note"] and "20 queries, 19 scored" in rep.summary()
    g[10] = f[15] + 0.01
    two = _gallery_split(f, pids, g, absent={19})
    assert any(x.startswith("rank-1 drop 10.5 points > 5.3 points") for x in two.failures)


def test_correct_matches_kept_is_judged_on_decisive_answers():
    """Two queries FP32 answers right by a hair flip to the wrong identity: counted among all queries, not by the
    gate, which judges the queries whose FP32 right answer is ahead by the decisive gap."""
    from osnet_edge.export.fidelity_metrics import _unit, correct_matches_kept

    f, pids = _clustered(n_ids=20, per_id=5, spread=0.2)
    f = _unit(f)
    g = f.copy()
    for qi in (0, 10):  # queries of identities 0 and 2, halfway to the next identity's gallery crop
        a, b = f[qi + 1], f[qi + 6]
        f[qi] = _unit((0.5 * (a + b) + 0.002 * (a - b))[None])[0]
        g[qi] = _unit((0.5 * (a + b) - 0.002 * (a - b))[None])[0]
    q_idx, g_idx = np.arange(0, 100, 5), np.array([i for i in range(100) if i % 5])
    k = correct_matches_kept(f[q_idx], g[q_idx], f[g_idx], g[g_idx], pids[q_idx], pids[g_idx],
                             np.zeros(20, int), np.ones(80, int), gap=0.01)
    assert k["fp32_correct"] == 20 and k["lost"] == 2 and k["share"] == pytest.approx(0.9)
    assert k["decisive"] == {"gap": 0.01, "fp32_correct": 18, "kept": 18, "lost": 0, "share": 1.0}
    th = gates.thresholds()
    decisive = {"crops": 50, "top1_agreement": 1.0, "gap": 0.01, "similarity_noise": 0.002}
    rows, failures = gates.evaluate(th, cosine_mean=0.999, cosine_min=0.99, top1_agreement=0.9, decisive=decisive,
                                    kept=k)
    row = next(r for r in rows if r["gate"] == "min_correct_kept")
    assert row["passed"] and row["value"] == 1.0 and "all: 18 of 20 kept" in row["note"] and not failures
    # a decisive answer lost still counts: the same flips on decisive answers fail
    few = {**k, "decisive": {**k["decisive"], "kept": 16, "lost": 2, "share": 16 / 18}}
    _, failures = gates.evaluate(th, cosine_mean=0.999, cosine_min=0.99, top1_agreement=0.9, decisive=decisive,
                                 kept=few)
    assert any(x.startswith("correct matches kept 88.9%") for x in failures)
    # too few decisive answers to judge on: judged on all of them
    thin = {**k, "decisive": {**k["decisive"], "fp32_correct": 5, "kept": 5, "share": 1.0}}
    _, failures = gates.evaluate(th, cosine_mean=0.999, cosine_min=0.99, top1_agreement=0.9, decisive=decisive,
                                 kept=thin)
    assert any(x.startswith("correct matches kept 90.0%") for x in failures)


def test_identity_gates_not_applied_without_identities_and_the_report_says_so():
    f, _ = _clustered(n_ids=10, per_id=6)
    rep = fid.fidelity_report(_fake_embedder(f), _fake_embedder(f), CropSet(_crops(range(60)), "anon"))
    applied = {r["gate"]: r["applied"] for r in rep.gates}
    assert applied == {"min_cosine": True, "min_crop_cosine": True, "min_decisive_top1": True, "min_top1": False,
                       "min_correct_kept": False, "max_rank1_drop": False, "max_map_drop": False}
    assert rep.passed and "PASSED the default gates" in rep.summary()
    assert "correct matches kept n/a: not applied (held-out crops carry no identities)" in rep.summary()
    # strict top-1 is information unless a threshold is given; then it is a gate
    strict = fid.fidelity_report(_fake_embedder(f), _fake_embedder(f), CropSet(_crops(range(60)), "anon"),
                                 min_top1=0.99)
    assert next(r for r in strict.gates if r["gate"] == "min_top1")["applied"] and strict.gates_lowered == []


def test_every_gate_is_one_cli_flag():
    from osnet_edge.export.cli import build_parser

    argv = [x for g in gates.GATES for x in (g.flag, "0.5")]
    args = build_parser().parse_args(argv)
    assert {g.key: getattr(args, g.key) for g in gates.GATES} == {g.key: 0.5 for g in gates.GATES}
    assert gates.lowered(gates.thresholds(min_top1=0.5)) == []  # a strict-top-1 gate is added, nothing lowered
    assert gates.lowered(gates.thresholds(max_map_drop=0.02)) == ["mAP drop <= 0.02 (default 0.01)"]
    with pytest.raises(gates.ModelConfigError, match="unknown INT8 gate"):
        gates.thresholds(min_cosin=0.9)
