"""The INT8 fidelity gates: what a tracker and a gallery need from an INT8 artifact, and which of them applied.

Always: mean cosine to FP32, the lowest crop's cosine, and top-1 agreement on DECISIVE neighbours (FP32's 1st
and 2nd neighbour further apart than the artifact's measured similarity noise can undo; fidelity_metrics.py).
With identities (a dataset split, an osnet-crops folder): correct matches kept (of the queries FP32 answers
right, the share INT8 still answers right; judged on the queries whose FP32 right answer is ahead of the nearest
wrong identity by the decisive gap, as top-1 agreement is, when at least MIN_DECISIVE_CROPS are), retrieval
rank-1 and mAP drop. One query on a small query set moves rank-1 by 100/n points (n: the queries the protocol
scores): the drop tolerance is max(threshold, one query), and losing one correct match is always tolerated.
Strict top-1 agreement (which of two frames of one person comes first) is information by default; given a
threshold (--min-top1) it is a gate too.

Each gate is one keyword option of the INT8 writers and one osnet-export flag (key with dashes). A threshold
looser than its default is recorded as "lowered", and a report with lowered gates never reads "passed".
"""
from __future__ import annotations

from dataclasses import dataclass

from osnet_edge.errors import ModelConfigError


@dataclass(frozen=True)
class Gate:
    key: str             # writer option / fidelity_report keyword; CLI flag --key-with-dashes
    label: str
    default: float | None
    kind: str            # "min": value >= threshold; "drop": FP32 - INT8 <= threshold
    identities: bool = False   # needs held-out crops with identities
    help: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


GATES = (
    Gate("min_cosine", "mean cosine", 0.99, "min", help="least mean cosine to FP32 on held-out crops"),
    Gate("min_crop_cosine", "min cosine", 0.95, "min", help="least cosine of any held-out crop"),
    Gate("min_decisive_top1", "decisive top-1 agreement", 0.95, "min",
         help="least top-1 agreement where FP32's 1st and 2nd neighbours differ by more than INT8's noise"),
    Gate("min_correct_kept", "correct matches kept", 0.97, "min", True,
         help="least share of FP32's correct top-1 matches INT8 keeps (identities needed)"),
    Gate("max_rank1_drop", "rank-1 drop", 0.01, "drop", True, help="largest rank-1 drop, 0.01 = 1 point"),
    Gate("max_map_drop", "mAP drop", 0.01, "drop", True, help="largest mAP drop, 0.01 = 1 point"),
    Gate("min_top1", "strict top-1 agreement", None, "min",
         help="least strict top-1 nearest-neighbour agreement (default: reported, not gated)"),
)
BY_KEY = {g.key: g for g in GATES}
MIN_DECISIVE_CROPS = 10   # fewer decisive neighbours than this: the gate cannot be judged, so it fails


def gate_options(options: dict) -> dict:
    """The gate thresholds among a writer's keyword options (those given, not None)."""
    return {k: v for k, v in options.items() if k in BY_KEY and v is not None}


def thresholds(**given) -> dict:
    """Every gate's threshold: the defaults, overridden by what was given (None: the default)."""
    unknown = set(given) - set(BY_KEY)
    if unknown:
        raise ModelConfigError(f"unknown INT8 gate(s) {', '.join(sorted(unknown))}; gates are "
                               f"{', '.join(BY_KEY)}")
    return {g.key: float(given[g.key]) if given.get(g.key) is not None else g.default for g in GATES}


def _show(g: Gate, t) -> str:
    return f"{g.label} {'>=' if g.kind == 'min' else '<='} {t:g}"


def lowered(th: dict) -> list:
    """Gates set looser than their default, as 'mean cosine >= 0 (default 0.99)'."""
    out = []
    for g in GATES:
        t = th.get(g.key)
        if g.default is None or t is None:
            continue
        if (g.kind == "min" and t < g.default) or (g.kind == "drop" and t > g.default):
            out.append(f"{_show(g, t)} (default {g.default:g})")
    return out


def evaluate(th: dict, *, cosine_mean, cosine_min, top1_agreement, decisive: dict, kept: dict | None = None,
             retrieval: dict | None = None) -> tuple:
    """(rows, failures): one row per gate {gate, label, threshold, value, applied, passed, note}."""
    rows, failures = [], []

    def add(g, value, passed, note="", applied=True, limit=None):
        """limit: the bound actually applied, where it is wider than the threshold (one query)."""
        limit = th.get(g.key) if limit is None else limit
        rows.append({"gate": g.key, "flag": g.flag, "label": g.label, "threshold": th.get(g.key), "limit": limit,
                     "value": value, "applied": applied, "passed": passed if applied else None, "note": note})
        if applied and not passed:
            failures.append(f"{g.label} {_fmt(g, value)} {'<' if g.kind == 'min' else '>'} {_fmt(g, limit)}"
                            + (f" ({note})" if note else ""))

    for key, value in (("min_cosine", cosine_mean), ("min_crop_cosine", cosine_min)):
        add(BY_KEY[key], value, value >= th[key])
    g = BY_KEY["min_decisive_top1"]
    n_dec, agr = decisive["crops"], decisive["top1_agreement"]
    note = f"{n_dec} crops with FP32 gap >= {decisive['gap']:.4f}"
    if n_dec < MIN_DECISIVE_CROPS and th[g.key] > 0:
        add(g, agr, False, f"only {n_dec} decisive crops (need {MIN_DECISIVE_CROPS}): INT8 similarity noise "
                           f"{decisive['similarity_noise']:.4f} leaves too few to judge")
    else:
        add(g, agr, (agr if agr is not None else 0.0) >= th[g.key], note)
    g = BY_KEY["min_top1"]
    if th.get("min_top1") is None:
        add(g, top1_agreement, True, "information, not gated", applied=False)
    else:
        add(g, top1_agreement, top1_agreement >= th["min_top1"])
    g = BY_KEY["min_correct_kept"]
    if not kept or not kept.get("fp32_correct"):
        add(g, None, True, "held-out crops carry no identities", applied=False)
    else:
        d = kept.get("decisive")
        everything = f"{kept['kept']} of {kept['fp32_correct']} kept"
        if d and d["fp32_correct"] >= MIN_DECISIVE_CROPS:
            # judged where FP32's right answer was not a coin flip under the artifact's noise
            share, lost = d["share"], d["lost"]
            note = (f"{d['kept']} of {d['fp32_correct']} decisive kept (FP32's right answer ahead of the nearest "
                    f"wrong identity by >= {d['gap']:.4f}); all: {everything}, {kept['gained']} gained")
        else:
            share, lost, note = kept["share"], kept["lost"], everything
        # one lost match is always tolerated: on a small query set it is several percent
        add(g, share, share >= th[g.key] or lost <= 1, note)
    for key, metric in (("max_rank1_drop", "rank1"), ("max_map_drop", "mAP")):
        g = BY_KEY[key]
        if not retrieval:
            add(g, None, True, "no query/gallery split with identities", applied=False)
            continue
        drop = retrieval["fp32"][metric] - retrieval["int8"][metric]
        # the protocol skips queries whose identity the gallery lacks under another camera: one query is
        # 1 / the scored ones
        scored = retrieval.get("n_scored", retrieval["n_query"])
        tol = max(th[key], 1.0 / max(scored, 1))
        add(g, drop, drop <= tol + 1e-6,  # rank-1 is float32 (torchreid's CMC)
            f"limit: the larger of the {100 * th[key]:g}-point threshold and one of {scored} scored queries",
            limit=tol)
    return rows, failures


def _fmt(g: Gate, v) -> str:
    if v is None:
        return "n/a"
    if g.kind == "drop":
        return f"{100 * v:.1f} points"
    return f"{v:.4f}" if "cosine" in g.label else f"{100 * v:.1f}%"


def row_line(r: dict) -> str:
    g = BY_KEY[r["gate"]]
    if not r["applied"]:
        return f"    -    {g.label} {_fmt(g, r['value'])}: not applied ({r['note']})"
    return (f"    {'ok  ' if r['passed'] else 'FAIL'} {g.label} {_fmt(g, r['value'])} "
            f"{'>=' if g.kind == 'min' else '<='} {_fmt(g, r.get('limit', r['threshold']))}"
            + (f" ({r['note']})" if r["note"] else ""))
