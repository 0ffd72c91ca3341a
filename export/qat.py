"""INT8 by quantization-aware fine-tuning (QAT) with NNCF, distilled towards the FP32 network's embeddings.

When post-training quantization misses the fidelity gates (re-ID networks trained with a triplet loss have
sparse post-ReLU embeddings whose few active dimensions carry the identity), the fake-quantized network is
fine-tuned for a few epochs so that its embeddings match the frozen FP32 network's on the calibration crops:
  - student: nncf.quantize(torch model) - NNCF's own fake-quantizers (per-channel symmetric weights, min/max
    activation ranges, the embedding head kept FP32 as in the PTQ recipe), trainable scales and weights;
  - teacher: the same FP32 network, frozen;
  - loss: 1 - cosine(student, teacher) on the same augmented crop (flip, translate: the training
    augmentations), no labels: calibration crops are all it needs;
  - BatchNorm statistics stay frozen (eval mode): a few hundred crops must not re-estimate them.
The student is the very graph that is exported (the uint8 input with normalisation inside, when the artifact
takes uint8), so what was fine-tuned is what runs. Export: OpenVINO IR via ov.convert_model (NNCF quantizers
become FakeQuantize, the CPU plugin runs them in INT8) or ONNX Q/DQ (QuantizeLinear/DequantizeLinear; for
TensorRT's explicit-quantization form either post-ReLU quantizers trained unsigned and shifted to zero point 0
on export (export/qdq_shift.py), or every quantizer forced signed).
"""
from __future__ import annotations

import copy
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from osnet_edge.deps import require
from osnet_edge.metadata import META_KEY, ModelMeta

DEFAULT_EPOCHS = 10
DEFAULT_LR = 1e-5  # measured on vtest.avi osnet_x0_25 (triplet): 1e-4 drifted away from FP32 (cosine 0.99 -> 0.94)
DEFAULT_BATCH = 32
# steps that raise the learning rate from 0: the first updates of freshly initialised quantizer scales are large
WARMUP_STEPS = 5


@dataclass
class QATResult:
    model: object                     # the fine-tuned fake-quantized torch module (NNCF-wrapped)
    epochs: int
    crops: int
    seconds: float
    threads: int
    history: list = field(default_factory=list)   # per epoch: {"epoch", "loss", "cosine"}
    signed_activations: bool = False

    def facts(self) -> dict:
        return {"method": "nncf.quantize + quantization-aware fine-tuning (distilled to FP32 embeddings)",
                "qat_epochs": self.epochs, "qat_crops": self.crops, "qat_seconds": round(self.seconds, 1),
                "qat_threads": self.threads, "qat_history": self.history,
                "signed_activations": self.signed_activations}


class QATInterrupted(KeyboardInterrupt):
    """Ctrl-C during fine-tuning; its message says what to re-run."""


def _augment(crops, rng):
    from osnet_edge.training.transforms import RandomCrop, RandomFlip

    flip, crop = RandomFlip(0.5), RandomCrop(0.5)
    return [crop(flip(c, rng), rng) for c in crops]


def _batch(crops, meta: ModelMeta):
    import torch

    from osnet_edge.calibration.sources import CropSet

    return torch.from_numpy(CropSet.preprocess(crops, meta))


def _settings() -> dict:
    nncf = require("nncf", "INT8 quantization-aware training")
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    adv = AdvancedQuantizationParameters(
        overflow_fix=OverflowFix.FIRST_LAYER,
        activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)
    # the embedding head (fc; its BN1d and ReLU follow) stays FP32, as in the PTQ recipe (quantize_openvino.py)
    return {"preset": nncf.QuantizationPreset.PERFORMANCE, "advanced_parameters": adv,
            "ignored_scope": nncf.IgnoredScope(types=["linear"], validate=False)}


def force_signed(qmodel) -> int:
    """Make every unsigned (post-ReLU) activation quantizer signed INT8 with the same range: TensorRT's
    explicit quantization takes INT8 with zero point 0 only. (NNCF's signedness_to_force for activations is
    refused by its CPU hardware config, so it is set on the quantizers.) Returns how many were changed."""
    from nncf.torch.quantization.layers import SymmetricQuantizer

    changed = 0
    for mod in qmodel.modules():
        if isinstance(mod, SymmetricQuantizer) and not mod.signed:
            mod.signed = True
            changed += 1
    return changed


def quantization_aware_finetune(model, calib, meta: ModelMeta, *, epochs: int = DEFAULT_EPOCHS,
                                lr: float = DEFAULT_LR, batch_size: int = DEFAULT_BATCH,
                                signed_activations: bool = False, seed: int = 0, threads: int | None = None,
                                quiet: bool = False, rerun_hint: str = "") -> QATResult:
    """Fake-quantize `model` (the network that will be exported, in meta.input_format) with NNCF and fine-tune
    it towards its own FP32 embeddings on `calib` (a CropSet of unlabeled crops). Returns a QATResult."""
    from osnet_edge.runtime.torch_backend import torch_threads

    torch = require("torch", "INT8 quantization-aware training")
    # torch's thread count is process-wide: set for the fine-tuning only, restored for whatever runs next
    with torch_threads(torch, threads):
        return _finetune(model, calib, meta, epochs, lr, batch_size, signed_activations, seed, quiet, rerun_hint)


def _finetune(model, calib, meta, epochs, lr, batch_size, signed_activations, seed, quiet, rerun_hint) -> QATResult:
    torch = require("torch", "INT8 quantization-aware training")
    nncf = require("nncf", "INT8 quantization-aware training")
    from tqdm import tqdm

    from osnet_edge.export.graph import traceable

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    crops = list(calib.crops)
    if len(crops) < 2:
        raise ValueError("quantization-aware training needs at least 2 calibration crops")
    bs = min(int(batch_size), len(crops))
    teacher = traceable(model, meta)
    teacher = copy.deepcopy(teacher).eval() if teacher is model else teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student_fp32 = copy.deepcopy(teacher)
    calib_items = [_batch(crops[s:s + bs], meta) for s in range(0, len(crops), bs)]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        student = nncf.quantize(student_fp32, nncf.Dataset(calib_items), subset_size=len(calib_items),
                                **_settings())
    if signed_activations:
        force_signed(student)
    student.eval()  # frozen BN statistics; NNCF quantizers fake-quantize in both modes
    params = [p for p in student.parameters() if p.is_floating_point()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    steps_per_epoch = int(np.ceil(len(crops) / bs))
    total = max(1, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / WARMUP_STEPS) * 0.5 * (1 + np.cos(np.pi * min(s, total) / total)))
    history = []
    bar = tqdm(total=total, desc="INT8 QAT", unit="step", file=sys.stderr, disable=quiet)
    epoch = 0
    try:
        for epoch in range(1, epochs + 1):
            order = rng.permutation(len(crops))
            losses, coss = [], []
            for s in range(0, len(crops), bs):
                idx = order[s:s + bs]
                if len(idx) < 2:
                    continue
                x = _batch(_augment([crops[i] for i in idx], rng), meta)
                with torch.no_grad():
                    t = teacher(x)
                y = student(x)
                cos = torch.nn.functional.cosine_similarity(y, t, dim=1, eps=1e-8)
                loss = (1.0 - cos).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
                coss.append(float(cos.detach().mean()))
                bar.update(1)
                bar.set_postfix(epoch=f"{epoch}/{epochs}", cosine=f"{np.mean(coss):.4f}")
            history.append({"epoch": epoch, "loss": float(np.mean(losses)), "cosine": float(np.mean(coss))})
    except KeyboardInterrupt:
        bar.close()
        raise QATInterrupted(f"INT8 fine-tuning interrupted in epoch {epoch}/{epochs}; nothing was written. "
                             f"It restarts from the FP32 weights: re-run {rerun_hint or 'the same command'}"
                             f" (or fewer --qat-epochs)") from None
    bar.close()
    student.eval()
    for p in params:
        p.requires_grad_(False)
    return QATResult(student, epochs, len(crops), time.perf_counter() - t0, torch.get_num_threads(), history,
                     signed_activations)


# --------------------------------------------------------------------------- export of the fine-tuned network


def _name_io(ov_model, meta: ModelMeta):
    from osnet_edge.export.graph import INPUT_NAME, OUTPUT_NAME

    ov_model.inputs[0].get_tensor().set_names({INPUT_NAME[meta.input_format]})
    ov_model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    ov_model.set_friendly_name(meta.stem())
    ov_model.set_rt_info(meta.to_json(), [META_KEY])
    return ov_model


def to_openvino(qmodel, meta: ModelMeta):
    """ov.Model of the fine-tuned network: NNCF quantizers become FakeQuantize (INT8 on the CPU plugin)."""
    ov = require("openvino", "OpenVINO INT8 export")
    torch = require("torch", "OpenVINO INT8 export")
    from osnet_edge.export.graph import example_input

    x = example_input(meta)
    dtype = ov.Type.u8 if meta.input_format == "uint8_nhwc" else ov.Type.f32
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = ov.convert_model(qmodel, example_input=x, input=[(ov.PartialShape([-1, *x.shape[1:]]), dtype)])
    return _name_io(m, meta)


def write_onnx_qdq(qmodel, path, meta: ModelMeta, opset: int = 17) -> Path:
    """ONNX of the fine-tuned network with QuantizeLinear/DequantizeLinear pairs (NNCF's Q/DQ export mode)."""
    onnx = require("onnx", "ONNX INT8 export")
    torch = require("torch", "ONNX INT8 export")
    import io

    from nncf.torch.quantization.layers import BaseQuantizer, QuantizerExportMode

    from osnet_edge.export.graph import INPUT_NAME, OUTPUT_NAME, example_input
    from osnet_edge.export.onnx_writer import _set_metadata

    m = copy.deepcopy(qmodel).eval()
    for mod in m.modules():
        if isinstance(mod, BaseQuantizer):
            mod.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
    x = example_input(meta)
    in_name = INPUT_NAME[meta.input_format]
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), buf, dynamo=False, opset_version=int(opset), input_names=[in_name],
                          output_names=[OUTPUT_NAME], do_constant_folding=True,
                          dynamic_axes={in_name: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    proto = onnx.load_from_string(buf.getvalue())
    _set_metadata(proto, meta)
    onnx.checker.check_model(proto)
    path = Path(path)
    onnx.save(proto, str(path))
    return path
