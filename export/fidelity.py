"""The INT8 fidelity report: what quantization kept, measured on held-out crops, and refused when it is not enough.

For an INT8 artifact and its FP32 reference (the PyTorch model, or any FP32 artifact), on crops that were
NOT used for calibration (export/fidelity_metrics.py computes the numbers):
  - cosine between each crop's FP32 and INT8 embedding (min, mean, 1st percentile)
  - top-1 nearest-neighbour agreement, strict and on decisive neighbours (FP32's 1st and 2nd neighbour further
    apart than INT8's measured similarity noise); top-5: mean overlap of the two top-5 sets
  - when identities are known (a dataset split, an osnet-crops folder): correct matches kept, mAP and rank-1
    of FP32 and INT8, Market-1501 protocol (osnet_edge.evaluation.evaluate_rank)
  - given the calibration crops and a PyTorch reference: whether the calibration ranges cover the held-out
    crops' activations (export/coverage.py), since a crop past them is clipped at any bit width
The gates (export/gates.py) decide; the report lists which applied and which were lowered. The JSON goes next
to the artifact (<artifact>.fidelity.json) and a summary is printed. Where the error enters inside the
network: export/layer_errors.py.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from osnet_edge.errors import ArtifactError, InputError
from osnet_edge.export import gates as gt
from osnet_edge.evaluation import scored_queries
from osnet_edge.export.fidelity_metrics import (CLEAR_GAP, MAX_DECISIVE_GAP, correct_matches_kept,
                                                embedding_agreement, retrieval_metrics)

DEFAULT_MIN_COSINE = gt.BY_KEY["min_cosine"].default
DEFAULT_MIN_TOP1 = gt.BY_KEY["min_top1"].default   # None: strict top-1 is information unless given
REPORT_SUFFIX = ".fidelity.json"


class FidelityError(ArtifactError):
    """An INT8 artifact that lost too much against its FP32 reference; the report says what."""

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report


@dataclass
class FidelityReport:
    n_crops: int
    held_out: str                       # where the held-out crops came from
    generated: bool                     # held-out crops are generated, not real: say so wherever shown
    cosine_min: float
    cosine_mean: float
    cosine_p01: float
    top1_agreement: float
    top5_agreement: float
    # {"fp32": {"mAP", "rank1", "rank5"}, "int8": {...}, "n_query", "n_scored" (the protocol's), "n_gallery"}
    retrieval: dict | None = None
    thresholds: dict = field(default_factory=dict)    # every gate's threshold (export/gates.py)
    failures: list = field(default_factory=list)
    artifact: str = ""
    reference: str = ""
    calibration: dict = field(default_factory=dict)  # source, crops, method, settings
    extra: dict = field(default_factory=dict)        # e.g. int8 conv fraction, per-layer worst offenders
    decisive: dict = field(default_factory=dict)     # gap, similarity_noise, crops, top1_agreement
    correct_kept: dict | None = None                 # fidelity_metrics.correct_matches_kept
    gates: list = field(default_factory=list)        # one row per gate: applied, value, threshold, passed
    gates_lowered: list = field(default_factory=list)  # gates set looser than their default

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        d = asdict(self)
        d["passed"] = self.passed
        return d

    def verdict(self) -> str:
        """PASSED only against the default gates; with any gate lowered it says so, whatever the numbers."""
        if self.failures:
            return "FAILED: " + "; ".join(self.failures)
        if self.gates_lowered:
            return "ACCEPTED WITH GATES LOWERED (not a pass of the default gates): " + "; ".join(self.gates_lowered)
        return "PASSED the default gates"

    def summary(self) -> str:
        tag = " (GENERATED crops: not evidence of real-world accuracy)" if self.generated else ""
        lines = [f"INT8 fidelity on {self.n_crops} held-out crops from {self.held_out}{tag}:",
                 f"  cosine FP32 vs INT8: mean {self.cosine_mean:.4f}  min {self.cosine_min:.4f}  "
                 f"p1 {self.cosine_p01:.4f}",
                 f"  nearest-neighbour agreement: strict top-1 {100 * self.top1_agreement:.1f}%  "
                 f"top-5 {100 * self.top5_agreement:.1f}%"]
        d = self.decisive
        if d and d.get("top1_agreement") is not None:
            lines.append(f"  top-1 agreement on decisive neighbours: {100 * d['top1_agreement']:.1f}% of {d['crops']} "
                         f"crops (FP32 1st-2nd gap >= {d['gap']:.4f} = 3*sqrt(2) x INT8 similarity noise "
                         f"{d['similarity_noise']:.4f}, capped at {MAX_DECISIVE_GAP:g})")
        k = self.correct_kept
        if k and k.get("fp32_correct"):
            lines.append(f"  correct matches kept: {k['kept']} of {k['fp32_correct']} ({100 * k['share']:.1f}%) "
                         f"queries FP32 answers right ({k['protocol']}; {k['gained']} gained)")
            d = k.get("decisive")
            if d and d["fp32_correct"]:
                lines.append(f"    of those FP32 answers right decisively (ahead of the nearest wrong identity by "
                             f">= {d['gap']:.4f}): {d['kept']} of {d['fp32_correct']} ({100 * d['share']:.1f}%)")
        r = self.retrieval
        if r:
            scored = r.get("n_scored", r["n_query"])
            queries = f"{r['n_query']} queries" + (f", {scored} scored" if scored != r["n_query"] else "")
            lines.append(f"  retrieval ({queries}, {r['n_gallery']} gallery, Market-1501 protocol): "
                         f"FP32 mAP {100 * r['fp32']['mAP']:.1f} rank-1 {100 * r['fp32']['rank1']:.1f} | "
                         f"INT8 mAP {100 * r['int8']['mAP']:.1f} rank-1 {100 * r['int8']['rank1']:.1f}")
        if "top1_identity_agreement" in self.extra:
            lines.append(f"  top-1 neighbour keeps its identity: {100 * self.extra['top1_identity_agreement']:.1f}% "
                         f"(median FP32 gap between 1st and 2nd neighbour: "
                         f"{self.extra['fp32_top1_top2_gap_median']:.4f} cosine)")
        g = self.extra.get("top1_agreement_by_fp32_gap", {}).get(f"{CLEAR_GAP:g}")
        if g and g["top1_agreement"] is not None:
            lines.append(f"  top-1 agreement where FP32's 1st and 2nd neighbours differ by >= {CLEAR_GAP:g} cosine: "
                         f"{100 * g['top1_agreement']:.1f}% of {g['crops']} crops")
        if self.extra.get("calibration_coverage"):
            from osnet_edge.export.coverage import summary_line

            lines.append(summary_line(self.extra["calibration_coverage"]))
        if (self.extra.get("activation_spread") or {}).get("too_wide"):
            from osnet_edge.export.coverage import spread_reason

            lines.append("  activation spread: " + spread_reason(self.extra["activation_spread"]))
        if "int8_conv_fraction" in self.extra:
            lines.append(f"  convolutions executing in INT8: {100 * self.extra['int8_conv_fraction']:.0f}%")
        if self.extra.get("float_layers"):
            names = self.extra["float_layers"]
            lines.append(f"  kept in float (mixed precision, keep_fp32): {len(names)} layer(s): "
                         + ", ".join(names))
        if self.extra.get("speedup"):
            from osnet_edge.export.int8_speed import summary_line as speed_line

            lines.append(speed_line(self.extra["speedup"]))
        b = self.extra.get("weights_only_8bit")
        if b:
            lines.append(f"  {b['bits']}-bit weights alone, float activations (measured on this refusal): "
                         + ("pass the gates" if b["passed"] else "miss: " + "; ".join(b["failures"])))
        if self.gates:
            lines.append("  gates:")
            lines.extend(gt.row_line(row) for row in self.gates)
        lines.append("  " + self.verdict())
        return "\n".join(lines)


# --------------------------------------------------------------------------- embedding anything


def embedder_for(obj, meta=None, batch_size: int = 32):
    """A function crops -> (N, D) L2-normalised features for an Embedder, an artifact path or a torch model."""
    if hasattr(obj, "embed"):
        return obj.embed
    if isinstance(obj, (str, Path)):
        from osnet_edge.runtime import Embedder

        return Embedder(obj, batch_size=batch_size).embed
    # a torch module: the same preprocessing and normalisation as the Embedder, without writing a file
    import torch

    from osnet_edge.checkpoint import model_meta
    from osnet_edge.preprocess import to_batch
    from osnet_edge.runtime.embedder import l2_normalize

    m = model_meta(obj)  # the model's own FP32 input (float_nchw), whatever the artifact's input format

    def embed(crops):
        # eval for every call (a model in training mode returns logits), its mode given back after each
        was_training = obj.training
        obj.eval()
        out = []
        try:
            with torch.inference_mode():
                for s in range(0, len(crops), batch_size):
                    x = to_batch(crops[s:s + batch_size], m.input_size, m.mean, m.std, m.color_order)
                    out.append(obj(torch.from_numpy(x)).float().numpy())
        finally:
            obj.train(was_training)
        return l2_normalize(np.concatenate(out).astype(np.float32))

    return embed


# --------------------------------------------------------------------------- the report


def _as_function(obj, batch_size):
    plain = callable(obj) and not hasattr(obj, "embed") and not hasattr(obj, "eval")
    return obj if plain else embedder_for(obj, batch_size=batch_size)


def fidelity_report(reference, candidate, held_out, query=None, *, min_cosine: float | None = None,
                    min_top1: float | None = None, gates: dict | None = None, batch_size: int = 32,
                    artifact: str = "", calibration: dict | None = None, extra: dict | None = None,
                    calib=None) -> FidelityReport:
    """Compare `candidate` (INT8) with `reference` (FP32) on held-out crops.

    reference / candidate: Embedder, artifact path, torch model, or a function crops -> features.
    held_out: a CropSet (osnet_edge.calibration) not used for calibration; with identities it is the gallery.
    query: a CropSet of queries with identities; then mAP and rank-1 of both are reported too.
    gates: thresholds by gate key (export/gates.py; None or missing: the default); min_cosine / min_top1 are
    the same as gates={'min_cosine': ...}.
    calib: the calibration CropSet; with a torch reference, the report adds whether its activation ranges
    cover the held-out crops (export/coverage.py).
    """
    from osnet_edge.calibration.sources import CropSet
    from osnet_edge.export import coverage as cov

    th = gt.thresholds(**{**(gates or {}), **{k: v for k, v in (("min_cosine", min_cosine), ("min_top1", min_top1))
                                               if v is not None}})
    if not isinstance(held_out, CropSet):
        held_out = CropSet(list(held_out), "held-out crops")
    crops = list(held_out.crops) + (list(query.crops) if query is not None else [])
    if len(crops) < 2:
        raise InputError(f"the fidelity report needs at least 2 held-out crops, got {len(crops)}")
    f_ref, f_int = _as_function(reference, batch_size), _as_function(candidate, batch_size)
    # coverage needs the activations, so a torch reference: hooked while it embeds the held-out crops
    measure_coverage = calib is not None and hasattr(reference, "named_modules") and not hasattr(reference, "embed")
    if measure_coverage:
        with cov.recording_peaks(reference) as held_peaks:
            ref = f_ref(crops)
        with cov.recording_peaks(reference) as calib_peaks:
            f_ref(list(calib.crops))
    else:
        ref = f_ref(crops)
    test = f_int(crops)
    agree = embedding_agreement(ref, test)
    retrieval, kept = None, None
    ng = len(held_out)
    if query is not None and query.has_identities and held_out.has_identities:
        retrieval = {"n_query": len(query), "n_gallery": ng,
                     "n_scored": scored_queries(query.pids, held_out.pids, query.camids, held_out.camids)}
        for name, f in (("fp32", ref), ("int8", test)):
            retrieval[name] = retrieval_metrics(f[ng:], f[:ng], query.pids, held_out.pids, query.camids,
                                                held_out.camids)
        kept = correct_matches_kept(ref[ng:], test[ng:], ref[:ng], test[:ng], query.pids, held_out.pids,
                                    query.camids, held_out.camids, gap=agree["decisive"]["gap"])
    elif query is None and held_out.has_identities:
        cams = held_out.camids if held_out.camids is not None else np.zeros(ng, int)
        kept = correct_matches_kept(ref, test, ref, test, held_out.pids, held_out.pids, cams, cams,
                                    leave_one_out=True, gap=agree["decisive"]["gap"])
    extra = dict(extra or {})
    if measure_coverage:
        names = list(held_out.names) + (list(query.names) if query is not None else [])
        calib_stacked = cov.stacked(calib_peaks)
        extra["calibration_coverage"] = cov.coverage(calib_stacked, cov.stacked(held_peaks),
                                                     names if len(names) == len(crops) else None, agree["cosine"])
        extra["activation_spread"] = cov.spread(calib_stacked)
    extra["fp32_top1_top2_gap_median"] = agree["fp32_top1_top2_gap_median"]
    extra["top1_agreement_by_fp32_gap"] = agree["top1_agreement_by_fp32_gap"]
    if held_out.has_identities and (query is None or query.has_identities):
        # how many neighbour changes keep the identity: a flip between two images of the same person is
        # harmless to a tracker, a flip to another person is not
        pids = np.concatenate([held_out.pids] + ([query.pids] if query is not None else []))
        extra["top1_identity_agreement"] = float(np.mean(pids[agree["nn_ref"]] == pids[agree["nn_test"]]))
    rows, failures = gt.evaluate(th, cosine_mean=agree["cosine_mean"], cosine_min=agree["cosine_min"],
                                 top1_agreement=agree["top1_agreement"], decisive=agree["decisive"], kept=kept,
                                 retrieval=retrieval)
    return FidelityReport(
        n_crops=len(crops), held_out=held_out.source + (f" + {query.source}" if query is not None else ""),
        generated=bool(held_out.generated or (query is not None and query.generated)),
        cosine_min=agree["cosine_min"], cosine_mean=agree["cosine_mean"], cosine_p01=agree["cosine_p01"],
        top1_agreement=agree["top1_agreement"], top5_agreement=agree["top5_agreement"], retrieval=retrieval,
        thresholds=th, failures=failures, artifact=str(artifact),
        reference=getattr(reference, "arch", None) or str(getattr(reference, "path", "") or type(reference).__name__),
        calibration=dict(calibration or {}), extra=extra, decisive=agree["decisive"], correct_kept=kept,
        gates=rows, gates_lowered=gt.lowered(th))


def final_name(path) -> str:
    """The name an artifact will have once export_model renames it (writers see '.NAME.<hex>.partial.xml')."""
    import re

    name = Path(path).name
    m = re.fullmatch(r"\.(.+)\.[0-9a-f]+\.partial(\..+)", name)
    return m.group(1) + m.group(2) if m else name


def report_path(artifact) -> Path:
    a = Path(artifact)
    return a.with_name(a.stem + REPORT_SUFFIX)


def write_report(report: FidelityReport, path) -> Path:
    """Write the JSON atomically (temp file + rename)."""
    from osnet_edge.atomic import write_text

    return write_text(path, json.dumps(report.to_dict(), indent=2, default=_json_default))


def refusal(report: FidelityReport) -> str:
    """The one-line reason an INT8 artifact is refused, and what to do instead."""
    from osnet_edge.export.coverage import spread_reason

    head = f"INT8 artifact refused: {'; '.join(report.failures)} on {report.n_crops} held-out crops. "
    bound = report.extra.get("weights_only_8bit")
    tried_qat = "ptq" in (report.calibration or {})
    qat_left = "" if tried_qat else " (--qat, which retrains the weights, is the one INT8 left to try)"
    if bound and not bound["passed"]:
        return (head + f"8-bit weights alone (float activations) already miss: {'; '.join(bound['failures'])}, "
                f"so no activation recipe can bring INT8 up to the gates on this model: export "
                f"{bound['holds']} instead" + qat_left)
    where = " 8-bit weights alone pass the gates: the loss is in the 8-bit activations." if bound else ""
    wide = spread_reason(report.extra.get("activation_spread") or {})
    if bound and wide:
        return (head + f"8-bit weights alone pass the gates; the loss is in the activations: {wide}. "
                f"Export {bound['holds']} instead" + qat_left)
    return (head + f"FP16 (--half) keeps full fidelity.{where} For INT8 try "
            + ("--qat-epochs N (longer fine-tuning), " if tried_qat else
               "--qat (quantization-aware fine-tuning on the --calib crops) or ")
            + f"a larger, more representative --calib set, or lower a gate "
              f"({', '.join(g.flag for g in gt.GATES)}) if you accept the loss")


def check(report: FidelityReport, quiet: bool = False) -> FidelityReport:
    """Print the summary; raise FidelityError when a gate failed."""
    if not quiet:
        print(report.summary(), file=sys.stderr)
    if not report.passed:
        raise FidelityError(refusal(report), report)
    return report


def gate_artifact(files: list, artifact, make_report, quiet: bool = False, bound=None) -> list:
    """The tail every INT8 writer shares: compute the held-out report (make_report()), write it beside
    `artifact`, refuse on a failed gate. bound: gates -> what 8-bit weights alone keep (weight_bound.measure),
    measured only when a gate failed, so the refusal says whether INT8 can hold on this model at all. On any
    failure every file written so far is removed, so a refused artifact leaves nothing behind. Returns files +
    the report's path."""
    files = list(files)
    try:
        report = make_report()
        if bound is not None and not report.passed:
            report.extra["weights_only_8bit"] = bound(report.thresholds)
        out = report_path(artifact)
        write_report(report, out)
        files.append(out)
        check(report, quiet=quiet)
    except BaseException:
        for f in files:
            Path(f).unlink(missing_ok=True)
        raise
    return files


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
