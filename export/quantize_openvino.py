"""OpenVINO INT8 with NNCF post-training quantization, tuned for a re-ID embedding network, with its fidelity report.

Why not NNCF's defaults: measured on a re-ID-trained osnet_x0_25 (held-out crops, fidelity.py), NNCF's
defaults give mean cosine 0.987 but single embeddings destroyed (min cosine 0.67) and top-1 neighbour
agreement 73%. The per-layer comparison (layer_errors.py) and one-change-at-a-time runs located the
error: (1) range estimation: NNCF's default activation ranges average per-sample extremes, clipping the rare
large activations that a few crops carry in the sparse late stages; quantile ranges clip more and are
worse still (mean cosine 0.69). A re-ID embedding is carried by those rare activations. (2) the head:
fc -> BatchNorm1d -> ReLU; BN1d multiplies fc's output error by gamma/sigma and the ReLU turns it into
spurious active dimensions. (3) NNCF's overflow fix on every layer (7-bit weights) costs more than it
saves on this AVX2 CPU. The recipe therefore:
  - estimates activation ranges with min/max over the whole calibration set (MINMAX): nothing is clipped;
  - keeps the embedding head (the fc MatMul; BN1d and ReLU fold into it) in FP32 - one 128x512 (x0.25) or
    512x512 (x1.0) matrix-vector product per crop, well under 1% of the Mult-Adds;
  - full bias correction (fast_bias_correction=False): depthwise 3x3 filters have 9 weights per channel,
    so the mean shift their quantization introduces is large and worth measuring properly;
  - per-channel symmetric INT8 weights, NNCF's overflow fix on the first layer only;
  - asymmetric activations (NNCF's MIXED preset). Post-ReLU tensors are UINT8 over [0, max] either way, so
    this changes the signed ones only, chiefly the Lite 3x3 depthwise inputs, which come straight from a
    linear 1x1 convolution: a range fitted to their min and max instead of centred on zero. Measured on a model trained with torchreid's own code (held-out tracklets,
    benchmarks/results/int8_real/activation_sign.py): symmetric activations keep 94.5% of the correct
    matches and lose 3 points of rank-1 (refused); asymmetric keep 100% with rank-1 unchanged (accepted).
    On an osnet-train model, mean/min cosine are as good or better, correct matches kept move by two
    queries the other way (refused either way): within the noise of ~60 queries.
    `recipe="reid-symmetric"` is the symmetric variant, for comparison.
Cross-layer activation equalization of the Lite 3x3 layers (export/equalize.py, `equalize=True`,
`osnet-export --equalize`) is opt-in: on 1600 held-out crops it kept mean cosine (0.9967) and raised top-1
agreement by 1.7 points (78.8 -> 80.5%), within run-to-run variation; the 1x1 outputs' channel ranges differ by
<2x, and the error left is each channel's heavy tail (max/rms 7-11), which no per-channel rescaling removes.
What 8 bits can reach at all on OSNet-x0.25 is measured in benchmarks/results/int8/bitwidth_sim.py.
`recipe="nncf-default"` reproduces NNCF's defaults (`"nncf-mixed"`: with the MIXED preset), for comparison.
`max_drop` switches to nncf.quantize_with_accuracy_control, validated by embedding agreement (or retrieval mAP when identities
are known), which returns layers to FP32 one by one until the drop is within max_drop.
"""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import numpy as np

from osnet_edge.deps import require
from osnet_edge.errors import ModelConfigError
from osnet_edge.metadata import META_KEY, ModelMeta
from osnet_edge.runtime.openvino_backend import precision_config
from osnet_edge.export import fidelity as fid
from osnet_edge.export import weight_bound
from osnet_edge.export import gates as gt
from osnet_edge.export.fidelity_metrics import embedding_agreement, retrieval_metrics
from osnet_edge.export.openvino_ir_ops import check_layer_names, head_ops, int8_conv_fraction

# calibration crops by default (all a smaller source has): on real-footage models of both training pipelines
# 600 kept every OpenVINO INT8 post-training where 300 lost an osnet-train triplet model 3 points of rank-1; on
# the Q/DQ ONNX (quantize_onnx.py) 600 won nothing, so it keeps 300 (benchmarks/results/int8_real/NOTES.md)
CALIB_SIZE = 600

RECIPES = ("reid", "reid-symmetric", "nncf-default", "nncf-mixed")
CALIB_BATCH = 1  # NNCF collects statistics per sample; batch 1 keeps them exact (no batch-wise approximation)


# --------------------------------------------------------------------------- FP32 IR


def fp32_ov_model(model, meta: ModelMeta):
    """The FP32 OpenVINO model of a torch OSNet, written by the export layer's OpenVINO writer (same graph,
    input/output names and rt_info as `--format openvino`), read back for NNCF."""
    ov = require("openvino", "OpenVINO INT8 export")
    import tempfile

    from osnet_edge.export.openvino_writer import export_openvino

    with tempfile.TemporaryDirectory(prefix="osnet_int8_") as d:
        xml = export_openvino(model, Path(d) / "fp32.xml", meta=_with_precision(meta, "fp32"))[0]
        m = ov.Core().read_model(str(xml))
        m = m.clone()  # detach from the files about to be deleted (weights are read lazily otherwise)
    return m


def _with_precision(meta: ModelMeta, precision: str) -> ModelMeta:
    d = meta.to_dict()
    d["precision"] = precision
    return ModelMeta.from_dict(d)


# --------------------------------------------------------------------------- NNCF


def _nncf_dataset(calib, meta: ModelMeta):
    nncf = require("nncf", "OpenVINO INT8 quantization")
    items = list(calib.batches(meta, batch_size=CALIB_BATCH))
    return nncf.Dataset(items)


def quantize_settings(recipe: str, ov_model, keep_fp32=()) -> dict:
    """nncf.quantize keyword arguments for a recipe."""
    nncf = require("nncf", "OpenVINO INT8 quantization")
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    if recipe not in RECIPES:
        raise ModelConfigError(f"unknown INT8 recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if recipe == "nncf-default":
        kw = {}
    elif recipe == "nncf-mixed":
        kw = {"preset": nncf.QuantizationPreset.MIXED}
    else:
        # MIXED: symmetric weights, asymmetric activations (see the module docstring)
        preset = nncf.QuantizationPreset.PERFORMANCE if recipe == "reid-symmetric" else nncf.QuantizationPreset.MIXED
        kw = {"preset": preset, "fast_bias_correction": False,
              "advanced_parameters": AdvancedQuantizationParameters(
                  overflow_fix=OverflowFix.FIRST_LAYER,
                  activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)}
        keep_fp32 = tuple(keep_fp32) + tuple(head_ops(ov_model))
    if keep_fp32:
        kw["ignored_scope"] = nncf.IgnoredScope(names=sorted(set(keep_fp32)), validate=False)
    return kw


def quantize(ov_model, calib, meta: ModelMeta, *, recipe: str = "reid", max_drop: float | None = None,
             validation=None, validation_query=None, keep_fp32=(), subset_size: int | None = None):
    """INT8 ov.Model from an FP32 one. calib/validation: CropSets (osnet_edge.calibration)."""
    nncf = require("nncf", "OpenVINO INT8 quantization")
    kw = quantize_settings(recipe, ov_model, keep_fp32)
    data = _nncf_dataset(calib, meta)
    subset = int(subset_size or len(calib))
    if max_drop is None:
        return nncf.quantize(ov_model, data, subset_size=subset, **kw)
    if validation is None:
        raise ModelConfigError("--max-drop needs held-out validation crops")
    val_items, val_fn = validation_function(ov_model, validation, meta, query=validation_query)
    adv = kw.pop("advanced_parameters", None)
    return nncf.quantize_with_accuracy_control(
        ov_model, data, nncf.Dataset(val_items), val_fn, max_drop=float(max_drop), subset_size=subset,
        advanced_quantization_parameters=adv, **kw)


def validation_function(fp32_ov_model, held_out, meta: ModelMeta, query=None):
    """(validation items, validation_fn) for nncf.quantize_with_accuracy_control.

    With identities (query + gallery): the metric is retrieval mAP (Market-1501 protocol) of the candidate.
    Without: the metric is embedding agreement with FP32 on the held-out crops: mean cosine and top-1
    neighbour agreement, averaged, so a drop of 0.01 means about one point of either. Per-item values
    (the mean cosine of each item, a batch of 32 crops) let NNCF rank which layers to return to FP32.
    """
    crops = list(held_out.crops) + (list(query.crops) if query is not None else [])
    items = [CropBatch(b) for b in _batches(crops, meta, 32)]
    reference = compile_cpu(fp32_ov_model)
    ng = len(held_out)
    use_map = query is not None and query.has_identities and held_out.has_identities

    def val_fn(compiled_model, validation_data):
        data = list(validation_data)
        feats = _run_all(compiled_model, data)
        if use_map:
            m = retrieval_metrics(feats[ng:], feats[:ng], query.pids, held_out.pids, query.camids,
                                      held_out.camids)
            return m["mAP"], None
        # NNCF may pass a subset of the items: the FP32 reference is computed on what was passed, and the
        # per-item values NNCF ranks layers by are one per item (a batch), not one per crop
        a = embedding_agreement(_run_all(reference, data), feats)
        ends = np.cumsum([len(b) for b in data])
        per_item = [float(np.mean(c)) for c in np.split(np.asarray(a["cosine"], np.float64), ends[:-1])]
        return 0.5 * (a["cosine_mean"] + a["top1_agreement"]), per_item

    return items, val_fn


class CropBatch(np.ndarray):
    """A preprocessed batch, as NNCF's validation dataset item."""

    def __new__(cls, a):
        return np.asarray(a).view(cls)


def _batches(crops, meta, bs):
    from osnet_edge.preprocess import to_batch

    for s in range(0, len(crops), bs):
        yield to_batch(crops[s:s + bs], meta.input_size, meta.mean, meta.std, meta.color_order, meta.input_format)


def compile_cpu(ov_model):
    """An in-memory model compiled for the CPU in f32, the precision the artifacts declare (not its bf16 default)."""
    ov = require("openvino", "OpenVINO INT8 quantization")
    core = ov.Core()
    return core.compile_model(ov_model, "CPU", precision_config(core, "CPU", "fp32"))


def _run_all(compiled, items) -> np.ndarray:
    out = compiled.output(0)
    return np.concatenate([compiled(np.asarray(b))[out] for b in items]).astype(np.float32)


# --------------------------------------------------------------------------- the export writer


def equalized(model, calib, enabled: bool = False) -> tuple:
    """(model to quantize, facts for the report): Lite 3x3 activation equalization on the calibration crops
    (export/equalize.py), exact in FP32; the caller keeps the original as the fidelity reference."""
    if not enabled:
        return model, {"equalization": None}
    from osnet_edge.checkpoint import model_meta
    from osnet_edge.export.equalize import equalize

    eq, stats = equalize(model, calib.batches(model_meta(model), 32))
    return eq, {"equalization": stats}


def set_meta(ov_model, meta: ModelMeta) -> None:
    ov_model.set_rt_info(meta.to_json(), [META_KEY])


def write_openvino_int8(model, tmp_path, meta: ModelMeta, *, calib=None, max_drop=None, recipe: str = "reid",
                        calib_size: int | None = None, holdout_size: int | None = None, seed: int = 0,
                        keep_fp32=(), holdout=None, equalize: bool = False, quiet: bool = False,
                        layer_report: bool = True, qat: bool = False, qat_epochs: int | None = None,
                        measure_speed: bool = True, **_options) -> list:
    """INT8 writer for export_model(..., fmt='openvino', int8=True): IR + fidelity JSON at the temporary stem.

    calib: a calibration SOURCE (osnet_edge.calibration.load_source) or a CropSet; holdout: optional separate
    SOURCE for the held-out crops of the fidelity report (default: crops of the same source never used for
    calibration). Refuses (FidelityError, nothing kept) when the held-out report fails its gates.
    keep_fp32: IR op names left unquantized (mixed precision), checked against the FP32 IR and listed in the
    report (extra.float_layers); on the vtest.avi models a few float layers did not reach the goals
    (benchmarks/results/int8_real/NOTES.md, "Mixed precision"), so no CLI option exposes it.
    qat: when the post-training result misses the gates, fine-tune it (export/qat.py: NNCF quantization-aware
    training distilled towards the FP32 embeddings on the calibration crops) and gate that instead.
    Gate thresholds (export/gates.py: min_cosine, min_crop_cosine, ...) come as keyword options.
    measure_speed: time the INT8 IR against the FP32 one on this CPU (int8_speed.py) for the report.
    """
    ov = require("openvino", "OpenVINO INT8 export")
    from osnet_edge.calibration import sources
    from osnet_edge.export.layer_errors import layer_errors

    if calib is None:
        raise ModelConfigError(NO_CALIB)
    keep_fp32 = [keep_fp32] if isinstance(keep_fp32, str) else list(keep_fp32)
    if keep_fp32 and qat:
        raise ModelConfigError("keep_fp32 and qat do not combine (fine-tuning quantizes every layer); choose one")
    meta = _with_precision(meta, "int8")
    split = sources.calibration_split(calib, n_calib=calib_size or CALIB_SIZE,
                                      n_holdout=holdout_size or sources.DEFAULT_SIZE, seed=seed, holdout=holdout)
    split.calib.check_size(CALIB_BATCH)
    if not quiet:
        print(f"INT8: calibrating on {len(split.calib)} crops from {split.calib.source}"
              + (" (GENERATED crops: demo only)" if split.calib.generated else "")
              + f"; {len(split.held_out) + (len(split.query) if split.query is not None else 0)} held-out crops "
                f"for the fidelity report", file=sys.stderr)
    source_model, calibration = equalized(model, split.calib, equalize)
    fp32 = fp32_ov_model(source_model, meta)
    check_layer_names(fp32, keep_fp32)
    q = quantize(fp32, split.calib, meta, recipe=recipe, max_drop=max_drop, validation=split.held_out,
                 validation_query=split.query, keep_fp32=keep_fp32)
    set_meta(q, meta)
    tmp_path = Path(tmp_path)
    xml = tmp_path.with_suffix(".xml")
    ov.save_model(q, str(xml), compress_to_fp16=False)
    floats = {"float_layers": keep_fp32} if keep_fp32 else {}
    gates = gt.gate_options(_options)

    def speed():
        if not measure_speed:
            return {}
        from osnet_edge.export import int8_speed

        batch = next(split.held_out.batches(meta, int8_speed.BATCH))
        return {"speedup": int8_speed.measure(*int8_speed.openvino_runners(fp32, xml), batch)}

    def make_report(layers=layer_report):
        conv = int8_conv_fraction(xml)
        report = fid.fidelity_report(model, str(xml), split.held_out, split.query, calib=split.calib,
                                     gates=gates, artifact=fid.final_name(xml),
                                     calibration={"source": split.calib.source, "crops": len(split.calib),
                                                  "generated": split.calib.generated, "recipe": recipe,
                                                  "max_drop": max_drop, "method": "nncf.quantize_with_accuracy_control"
                                                  if max_drop is not None else "nncf.quantize", **calibration},
                                     extra={"int8_conv_fraction": conv["fraction"], **conv, **floats, **speed()})
        if layers and not report.passed:
            rows = layer_errors(fp32, q, next(split.held_out.batches(meta, 16)))
            report.extra["worst_layers"] = sorted(rows, key=lambda r: r["cosine"])[:10]
        return report

    bound = partial(weight_bound.measure, model, split)  # on a refusal only: can 8-bit weights hold at all?

    if qat:
        report = make_report()  # a miss carries its per-layer breakdown: where PTQ's error entered
        if not report.passed:
            report = _finetuned(model, meta, split, xml, report, qat_epochs, quiet,
                                lambda: fid.fidelity_report(model, str(xml), split.held_out, split.query,
                                                            calib=split.calib, gates=gates,
                                                            artifact=fid.final_name(xml), extra=speed()))
        return fid.gate_artifact([xml, xml.with_suffix(".bin")], xml, lambda: report, quiet=quiet, bound=bound)
    return fid.gate_artifact([xml, xml.with_suffix(".bin")], xml, make_report, quiet=quiet, bound=bound)


def _finetuned(model, meta, split, xml, ptq_report, epochs, quiet, report_fn):
    """PTQ missed the gates: quantization-aware fine-tuning (export/qat.py), the IR at `xml` replaced by the
    fine-tuned one; returns its report, which keeps the PTQ numbers under calibration['ptq']."""
    ov = require("openvino", "OpenVINO INT8 export")
    from osnet_edge.export import qat as qat_mod

    if not quiet:
        print(ptq_report.summary(), file=sys.stderr)
        print(f"post-training INT8 missed the gates; quantization-aware fine-tuning on {len(split.calib)} "
              f"calibration crops ({epochs or qat_mod.DEFAULT_EPOCHS} epochs)", file=sys.stderr)
    res = qat_mod.quantization_aware_finetune(model, split.calib, meta, epochs=epochs or qat_mod.DEFAULT_EPOCHS,
                                              quiet=quiet)
    ov.save_model(qat_mod.to_openvino(res.model, meta), str(xml), compress_to_fp16=False)
    report = report_fn()
    conv = int8_conv_fraction(xml)
    report.calibration = {**ptq_report.calibration, **res.facts(),
                          "method": "NNCF quantization-aware fine-tuning (FakeQuantize IR)",
                          "ptq": {k: getattr(ptq_report, k) for k in ("cosine_mean", "cosine_min", "top1_agreement",
                                                                       "top5_agreement", "retrieval")}
                          | {"identity": ptq_report.extra.get("top1_identity_agreement"),
                             "failures": ptq_report.failures, "worst_layers": ptq_report.extra.get("worst_layers")}}
    report.extra.update({"int8_conv_fraction": conv["fraction"], **conv})
    if not quiet:
        print(f"INT8 fine-tuning took {res.seconds / 60:.1f} min on {res.threads} threads", file=sys.stderr)
    return report


# as the FP32 OpenVINO artifact: the graph normalises resized uint8 BGR crops; the host only resizes
write_openvino_int8.default_input_format = "uint8_nhwc"


def preflight(calib=None, **_options):
    """What the CLI calls before building the model: INT8 without calibration crops is refused at once."""
    if calib is None:
        raise ModelConfigError(NO_CALIB)


write_openvino_int8.preflight = preflight

NO_CALIB = ("INT8 needs calibration crops: pass --calib SOURCE (a folder of person crops, market1501:ROOT, "
            "or mot:VIDEO,BOXES.txt; up to 600 crops are sampled for OpenVINO, 300 for ONNX). Crops from your own "
            "cameras give the best INT8 model. For a smoke test only, --calib generated:300 uses generated crops "
            "(the report says so)")


def register() -> None:
    from osnet_edge.export.api import SUFFIXES, register_writer

    register_writer("openvino", write_openvino_int8, None if "openvino" in SUFFIXES else ".xml", int8=True)


# --------------------------------------------------------------------------- make demo


def demo_int8(workdir, model=None, n_calib: int = 300, seed: int = 0):
    """`make demo` step: OpenVINO INT8 export of osnet_x0_25 on GENERATED crops, and its fidelity report.

    The demo model and crops are not re-ID-trained/real: the report is printed with that caveat.
    """
    from osnet_edge.models import build_model
    from osnet_edge.export.api import export_model

    register()
    model = model or build_model("osnet_x0_25")
    print("INT8 demo: calibration and held-out crops are GENERATED (osnet_edge.synthetic), "
          "so the fidelity below shows the path works, not real-world accuracy", file=sys.stderr)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)  # export_model treats a missing path as a file name
    res = export_model(model, "openvino", workdir, int8=True, calib=f"generated:{n_calib}", seed=seed)
    print(res.summary(), file=sys.stderr)
    return res


register()
