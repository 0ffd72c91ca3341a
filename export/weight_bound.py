"""What 8-bit weights alone keep: the bound no activation recipe, range or calibration set can beat.

When an INT8 artifact misses a gate, the refusal should say whether INT8 can hold on this model at all. The
torch model's quantized convolutions (coverage.quantized_conv_modules: the ones the recipes quantize) get 8-bit
per-output-channel symmetric weights, rounded to nearest as NNCF and onnxruntime write them; activations and
the head stay float; the same gates are measured on the same held-out crops. Per output channel, the rounding
is the same whether BatchNorm is folded in first (folding scales a whole output channel). When this already
misses, post-training INT8 cannot reach the gates on this model: the refusal says so and names the float
precision that holds. (--qat moves the weights themselves, so it is not bounded by this.)
"""
from __future__ import annotations

import copy

from osnet_edge.export.coverage import quantized_conv_modules

BITS = 8


def weights_only(model, bits: int = BITS):
    """A copy of `model` whose quantized convolutions carry `bits`-bit per-output-channel symmetric weights."""
    import torch

    q = copy.deepcopy(model).eval()
    levels = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for _name, conv in quantized_conv_modules(q):
            w = conv.weight
            scale = w.abs().flatten(1).amax(1).clamp_min(1e-12).view(-1, *([1] * (w.dim() - 1))) / levels
            w.copy_(torch.clamp(torch.round(w / scale), -levels, levels) * scale)
    return q


def bound_report(model, split, gates: dict | None = None):
    """The fidelity report of `model` with 8-bit weights only, on the split's held-out crops and gates."""
    from osnet_edge.export import fidelity as fid

    return fid.fidelity_report(model, weights_only(model), split.held_out, split.query, gates=gates,
                               artifact=f"{BITS}-bit weights only (round to nearest), float activations")


def facts(report) -> dict:
    """What the refusal and the JSON carry about the bound, and the float precision that holds on this CPU."""
    kept = next((g["value"] for g in report.gates if g["gate"] == "min_correct_kept"), None)
    return {"passed": report.passed, "failures": report.failures, "cosine_mean": report.cosine_mean,
            "cosine_min": report.cosine_min, "decisive_top1": (report.decisive or {}).get("top1_agreement"),
            "correct_kept": kept, "rounding": "round to nearest, per output channel, symmetric", "bits": BITS,
            "holds": holding_precision()}


def measure(model, split, gates: dict | None = None) -> dict:
    """facts(bound_report(...)): what a refusal records (fidelity.gate_artifact's `bound`)."""
    return facts(bound_report(model, split, gates))


def cpu_has_bf16() -> bool:
    from osnet_edge.export.int8_speed import cpu_flags

    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def holding_precision() -> str:
    """The float precision to export instead, on this CPU."""
    if cpu_has_bf16():
        return "FP16 (--half), or bf16 on this CPU, which has it: Embedder('model.xml', precision='bf16')"
    return "FP16 (--half)"
