"""The INT8 fidelity report: what quantization kept, measured on held-out crops, and refused when it is not enough.

For an INT8 artifact and its FP32 reference (the PyTorch model, or any FP32 artifact), on crops that were
NOT used for calibration:
  - cosine between each crop's FP32 and INT8 embedding (min, mean, 1st percentile)
  - top-1 nearest-neighbour agreement: the fraction of crops whose nearest other crop is the same in FP32
    and INT8 space (what a tracker's association sees); top-5: mean overlap of the two top-5 sets
  - when identities are known (a dataset split): mAP and rank-1 of FP32 and INT8, Market-1501 protocol
    (osnet_edge.evaluation.evaluate_rank)
  - given the calibration crops and a PyTorch reference: whether the calibration ranges cover the held-out
    crops' activations (export/coverage.py), since a crop past them is clipped at any bit width
Defaults refuse mean cosine < 0.98 or top-1 agreement < 90%. The JSON goes next to the artifact
(<artifact>.fidelity.json) and a summary is printed.

layer_errors() is the tool that finds where the error enters: it runs the FP32 and the INT8 OpenVINO
model side by side and reports, per layer in network order, how far the INT8 tensor has drifted.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from osnet_edge.errors import ArtifactError, InputError

DEFAULT_MIN_COSINE = 0.98
DEFAULT_MIN_TOP1 = 0.90
REPORT_SUFFIX = ".fidelity.json"
GAP_LEVELS = (0.001, 0.005, 0.01)  # FP32 1st-vs-2nd neighbour cosine gaps the top-1 agreement is broken down by
CLEAR_GAP = 0.005                    # the one the summary prints


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
    retrieval: dict | None = None       # {"fp32": {"mAP", "rank1", "rank5"}, "int8": {...}, "n_query", "n_gallery"}
    thresholds: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    artifact: str = ""
    reference: str = ""
    calibration: dict = field(default_factory=dict)  # source, crops, method, settings
    extra: dict = field(default_factory=dict)        # e.g. int8 conv fraction, per-layer worst offenders

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        d = asdict(self)
        d["passed"] = self.passed
        return d

    def summary(self) -> str:
        tag = " (GENERATED crops: not evidence of real-world accuracy)" if self.generated else ""
        lines = [f"INT8 fidelity on {self.n_crops} held-out crops from {self.held_out}{tag}:",
                 f"  cosine FP32 vs INT8: mean {self.cosine_mean:.4f}  min {self.cosine_min:.4f}  "
                 f"p1 {self.cosine_p01:.4f}",
                 f"  nearest-neighbour agreement: top-1 {100 * self.top1_agreement:.1f}%  "
                 f"top-5 {100 * self.top5_agreement:.1f}%"]
        r = self.retrieval
        if r:
            lines.append(f"  retrieval ({r['n_query']} queries, {r['n_gallery']} gallery, Market-1501 protocol): "
                         f"FP32 mAP {100 * r['fp32']['mAP']:.1f} rank-1 {100 * r['fp32']['rank1']:.1f} | "
                         f"INT8 mAP {100 * r['int8']['mAP']:.1f} rank-1 {100 * r['int8']['rank1']:.1f}")
        if "top1_identity_agreement" in self.extra:
            lines.append(f"  top-1 neighbour keeps its identity: {100 * self.extra['top1_identity_agreement']:.1f}% "
                         f"(median FP32 gap between 1st and 2nd neighbour: "
                         f"{self.extra['fp32_top1_top2_gap_median']:.4f} cosine)")
        g = self.extra.get("top1_agreement_by_fp32_gap", {}).get(f"{CLEAR_GAP:g}")
        if g and g["top1_agreement"] is not None:
            lines.append(f"  top-1 agreement where FP32's 1st and 2nd neighbours differ by >= {CLEAR_GAP:g} cosine: "
                         f"{100 * g['top1_agreement']:.1f}% of {g['crops']} crops (the rest are near-ties)")
        if self.extra.get("calibration_coverage"):
            from osnet_edge.export.coverage import summary_line

            lines.append(summary_line(self.extra["calibration_coverage"]))
        if "int8_conv_fraction" in self.extra:
            lines.append(f"  convolutions executing in INT8: {100 * self.extra['int8_conv_fraction']:.0f}%")
        if self.extra.get("float_layers"):
            names = self.extra["float_layers"]
            lines.append(f"  kept in float (mixed precision, keep_fp32): {len(names)} layer(s): "
                         + ", ".join(names))
        t = self.thresholds
        lines.append(("  PASSED" if self.passed else "  FAILED: " + "; ".join(self.failures))
                     + f" (gates: mean cosine >= {t.get('min_cosine')}, top-1 agreement >= {t.get('min_top1')})")
        return "\n".join(lines)


# --------------------------------------------------------------------------- metrics


def _unit(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


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

    s_ref = similarities(ref)
    nr = np.argsort(-s_ref, axis=1, kind="stable")[:, :k]
    nt = np.argsort(-similarities(test), axis=1, kind="stable")[:, :k]
    top1 = float(np.mean(nr[:, 0] == nt[:, 0]))
    topk = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(nr, nt)]))
    rows = np.arange(n)
    gap = s_ref[rows, nr[:, 0]] - s_ref[rows, nr[:, 1]]  # FP32's 1st minus 2nd neighbour similarity
    hit = nr[:, 0] == nt[:, 0]
    # near-ties (two gallery images of one person a hair apart) flip under any perturbation; the breakdown
    # shows whether disagreement is confined to them or reaches clear-cut neighbours
    by_gap = {f"{t:g}": {"crops": int(np.sum(gap >= t)),
                         "top1_agreement": float(np.mean(hit[gap >= t])) if np.any(gap >= t) else None}
              for t in GAP_LEVELS}
    return {"nn_ref": nr[:, 0], "nn_test": nt[:, 0], "fp32_top1_top2_gap_median": float(np.median(gap)),
            "top1_agreement_by_fp32_gap": by_gap,
            "cosine": cos, "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
            "cosine_p01": float(np.percentile(cos, 1)), "top1_agreement": top1, "top5_agreement": topk}


def retrieval_metrics(q, g, q_pids, g_pids, q_camids, g_camids) -> dict:
    """mAP / rank-1 / rank-5 with the Market-1501 protocol (cosine distance on L2-normalised features)."""
    from osnet_edge.evaluation import evaluate_rank

    dist = 1.0 - _unit(q) @ _unit(g).T
    cmc, mAP = evaluate_rank(dist, q_pids, g_pids, q_camids, g_camids)
    return {"mAP": float(mAP), "rank1": float(cmc[0]), "rank5": float(cmc[min(4, len(cmc) - 1)])}


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


def fidelity_report(reference, candidate, held_out, query=None, *, min_cosine: float = DEFAULT_MIN_COSINE,
                    min_top1: float = DEFAULT_MIN_TOP1, batch_size: int = 32, artifact: str = "",
                    calibration: dict | None = None, extra: dict | None = None, calib=None) -> FidelityReport:
    """Compare `candidate` (INT8) with `reference` (FP32) on held-out crops.

    reference / candidate: Embedder, artifact path, torch model, or a function crops -> features.
    held_out: a CropSet (osnet_edge.calibration) not used for calibration; with identities it is the gallery.
    query: a CropSet of queries with identities; then mAP and rank-1 of both are reported too.
    calib: the calibration CropSet; with a torch reference, the report adds whether its activation ranges
    cover the held-out crops (export/coverage.py).
    """
    from osnet_edge.calibration.sources import CropSet
    from osnet_edge.export import coverage as cov

    if not isinstance(held_out, CropSet):
        held_out = CropSet(list(held_out), "held-out crops")
    crops = list(held_out.crops) + (list(query.crops) if query is not None else [])
    if len(crops) < 2:
        raise InputError(f"the fidelity report needs at least 2 held-out crops, got {len(crops)}")
    f_ref = reference if callable(reference) and not hasattr(reference, "embed") and not hasattr(reference, "eval") \
        else embedder_for(reference, batch_size=batch_size)
    f_int = candidate if callable(candidate) and not hasattr(candidate, "embed") and not hasattr(candidate, "eval") \
        else embedder_for(candidate, batch_size=batch_size)
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
    retrieval = None
    if query is not None and query.has_identities and held_out.has_identities:
        ng = len(held_out)
        retrieval = {"n_query": len(query), "n_gallery": ng}
        for name, f in (("fp32", ref), ("int8", test)):
            retrieval[name] = retrieval_metrics(f[ng:], f[:ng], query.pids, held_out.pids, query.camids,
                                                held_out.camids)
    extra = dict(extra or {})
    if measure_coverage:
        names = list(held_out.names) + (list(query.names) if query is not None else [])
        extra["calibration_coverage"] = cov.coverage(cov.stacked(calib_peaks), cov.stacked(held_peaks),
                                                     names if len(names) == len(crops) else None, agree["cosine"])
    extra["fp32_top1_top2_gap_median"] = agree["fp32_top1_top2_gap_median"]
    extra["top1_agreement_by_fp32_gap"] = agree["top1_agreement_by_fp32_gap"]
    if held_out.has_identities and (query is None or query.has_identities):
        # how many neighbour changes keep the identity: a flip between two images of the same person is
        # harmless to a tracker, a flip to another person is not
        pids = np.concatenate([held_out.pids] + ([query.pids] if query is not None else []))
        extra["top1_identity_agreement"] = float(np.mean(pids[agree["nn_ref"]] == pids[agree["nn_test"]]))
    rep = FidelityReport(
        n_crops=len(crops), held_out=held_out.source + (f" + {query.source}" if query is not None else ""),
        generated=bool(held_out.generated or (query is not None and query.generated)),
        cosine_min=agree["cosine_min"], cosine_mean=agree["cosine_mean"], cosine_p01=agree["cosine_p01"],
        top1_agreement=agree["top1_agreement"], top5_agreement=agree["top5_agreement"], retrieval=retrieval,
        thresholds={"min_cosine": min_cosine, "min_top1": min_top1}, artifact=str(artifact),
        reference=getattr(reference, "arch", None) or str(getattr(reference, "path", "") or type(reference).__name__),
        calibration=dict(calibration or {}), extra=extra)
    if rep.cosine_mean < min_cosine:
        rep.failures.append(f"mean cosine {rep.cosine_mean:.4f} < {min_cosine}")
    if rep.top1_agreement < min_top1:
        rep.failures.append(f"top-1 neighbour agreement {100 * rep.top1_agreement:.1f}% < {100 * min_top1:.0f}%")
    return rep


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


def check(report: FidelityReport, quiet: bool = False) -> FidelityReport:
    """Print the summary; raise FidelityError when a gate failed."""
    if not quiet:
        print(report.summary(), file=sys.stderr)
    if not report.passed:
        raise FidelityError(
            f"INT8 artifact refused: {'; '.join(report.failures)} on {report.n_crops} held-out crops. "
            f"Use --qat (quantization-aware fine-tuning on the --calib crops), a larger or more representative "
            f"--calib set, --max-drop for accuracy-controlled quantization, "
            f"or lower the gates (--min-cosine / --min-top1) if you accept the loss", report)
    return report


def gate_artifact(files: list, artifact, make_report, quiet: bool = False) -> list:
    """The tail every INT8 writer shares: compute the held-out report (make_report()), write it beside
    `artifact`, refuse on a failed gate. On any failure every file written so far is removed, so a refused
    artifact leaves nothing behind. Returns files + the report's path."""
    files = list(files)
    try:
        report = make_report()
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


# --------------------------------------------------------------------------- where does the error enter


_TAG = "osnet_edge_cmp:"
_COMPARED_TYPES = ("Convolution", "GroupConvolution", "Add", "Multiply", "MatMul", "Relu", "Clamp", "ReduceMean",
                   "AvgPool", "MaxPool", "Sigmoid")


def layer_errors(fp32_model, int8_model, batch: np.ndarray, types=_COMPARED_TYPES, max_layers: int | None = 30,
                 names=None) -> list:
    """Per-layer FP32-vs-INT8 drift for two OpenVINO models of the same network (ov.Model or .xml path).

    Every op of `types` that exists under the same friendly name in both models (at most max_layers of them,
    evenly spaced; `names`: only those) is compared: both models are cut at that op and run on `batch`.
    Returns, in FP32 topological order, dicts: name, type, cosine (flattened per sample, mean over the batch),
    rel_err (||int8 - fp32|| / ||fp32||) and sqnr_db. The first layer where cosine drops or rel_err jumps is
    where the error enters.
    """
    from osnet_edge.deps import require

    ov = require("openvino", "the per-layer INT8 comparison")
    core = ov.Core()
    m32 = core.read_model(str(fp32_model)) if isinstance(fp32_model, (str, Path)) else fp32_model.clone()
    m8 = core.read_model(str(int8_model)) if isinstance(int8_model, (str, Path)) else int8_model.clone()
    ops8 = {op.get_friendly_name(): op for op in m8.get_ordered_ops()}
    only = None if names is None else set(names)
    names = []
    for op in m32.get_ordered_ops():
        n = op.get_friendly_name()
        if op.get_type_name() in types and n in ops8 and ops8[n].get_type_name() == op.get_type_name() \
                and (only is None or n in only):
            names.append((n, op.get_type_name()))
    if not names:
        raise ArtifactError("no layers share a name between the FP32 and INT8 models; were they made from the same IR?")
    ops32 = {op.get_friendly_name(): op for op in m32.get_ordered_ops()}
    if max_layers and len(names) > max_layers:  # evenly spaced through the network, always the last one
        keep = np.unique(np.linspace(0, len(names) - 1, max_layers).round().astype(int))
        names = [names[i] for i in keep]

    # one truncated model per layer: extra outputs in the middle of an INT8 chain are not dequantized reliably
    # by the CPU plugin's low-precision transformations, a model that ends at the layer is
    def run(ops, params, n):
        sub = ov.Model([ops[n].output(0)], params, f"upto_{n}")
        cm = core.compile_model(sub, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return cm(batch)[cm.output(0)]

    # the FP32 model has no low-precision transformations: one compile with every compared output is exact
    # and halves the compiles
    sub32 = ov.Model([ops32[n].output(0) for n, _ in names], m32.get_parameters(), "fp32_compared")
    cm32 = core.compile_model(sub32, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    res32 = cm32(batch)
    r32 = {n: res32[cm32.output(i)] for i, (n, _) in enumerate(names)}
    r8 = {}
    for n, _ in _progress(names, "per-layer comparison"):
        r8[n] = run(ops8, m8.get_parameters(), n)
    rows = []
    for n, t in names:
        a, b = r32.get(n), r8.get(n)
        if a is None or b is None:
            continue
        a = a.reshape(len(a), -1).astype(np.float64)
        b = b.reshape(len(b), -1).astype(np.float64)
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        cos = np.sum(a * b, axis=1) / np.maximum(na * nb, 1e-12)
        cos[(na < 1e-12) & (nb < 1e-12)] = 1.0  # both all-zero (a dead ReLU on this batch): identical
        err = np.linalg.norm(a - b)
        rel = float(err / max(np.linalg.norm(a), 1e-12))
        rows.append({"name": n, "type": t, "cosine": float(cos.mean()), "cosine_min": float(cos.min()),
                     "rel_err": rel, "sqnr_db": float(-20 * np.log10(max(rel, 1e-12)))})
    return rows


def _progress(items, desc):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="layer", file=sys.stderr, leave=False)


def print_layer_errors(rows, top: int = 10, file=sys.stderr) -> None:
    worst = sorted(rows, key=lambda r: r["cosine"])[:top]
    print(f"per-layer FP32 vs INT8 ({len(rows)} layers compared); worst {len(worst)} by cosine:", file=file)
    for r in worst:
        print(f"  {r['cosine']:.4f}  rel_err {r['rel_err']:.3f}  {r['type']:<16} {r['name']}", file=file)
