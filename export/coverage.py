"""Does the calibration set cover the held-out crops? INT8 activation ranges are the calibration crops' min/max
(per tensor); a held-out crop whose activations go past them is clipped, whatever the bit width.

Measured on vtest.avi (benchmarks/results/int8_real/NOTES.md, "What 8 bits can reach"): the x0_25 triplet
model's min cosine of 0.91 is one held-out person in a light coat whose stage-4 activations reach 3.8x the
largest seen in the 300 calibration crops; with 16-bit activations and the same ranges the min is still 0.945,
with ranges that cover it 1.0. The remedy is calibration crops that look like what the camera will see, which
only the report can tell the user: so the report measures it, on the FP32 PyTorch model, per quantized
convolution input (the channel gates' 1x1 convolutions on pooled vectors stay float and are left out).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

WARN_RATIO = 1.5  # held-out peak / calibration peak past which the summary says the calibration misses crops
TOP_LAYERS = 5
# highest / median crop peak inside the calibration set past which one static 8-bit range per tensor cannot serve
# both: a range over the highest crop leaves the median crop's peak 256 / SPREAD_LIMIT = 4 levels at that layer
SPREAD_LIMIT = 64.0
OUTLIER_FACTOR = 10.0  # a crop whose peak passes this many times the median crop's is counted as outlying


def quantized_conv_modules(model) -> list:
    """(name, Conv2d) of every torch convolution whose input the INT8 recipes quantize: all but the channel
    gates'. (openvino_ir_ops.quantized_convs answers the same question for an INT8 IR, by op name.)"""
    import torch

    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and ".gate." not in n]


@contextmanager
def recording_peaks(model):
    """While active, every forward pass of `model` appends each crop's largest |input| per quantized
    convolution to peaks[name] (one array per batch)."""
    peaks: dict = {}

    def hook(name):
        def record(_module, inputs):
            peaks.setdefault(name, []).append(inputs[0].detach().abs().amax(dim=(1, 2, 3)).float().cpu().numpy())
        return record

    handles = [conv.register_forward_pre_hook(hook(name)) for name, conv in quantized_conv_modules(model)]
    try:
        yield peaks
    finally:
        for h in handles:
            h.remove()


def stacked(peaks: dict) -> dict:
    """peaks from recording_peaks -> {layer: (n_crops,) array}."""
    return {n: np.concatenate(v) for n, v in peaks.items()}


def coverage(calib_peaks: dict, held_peaks: dict, names=None, cosine=None) -> dict:
    """Compare per-crop activation peaks of held-out crops with the calibration set's range, layer by layer.

    Returns the worst layers (held-out peak / calibration peak), how many held-out crops go past the
    calibration range by more than WARN_RATIO at any layer, and, given per-crop cosines, where the
    lowest-cosine crop stands."""
    layers = [n for n in held_peaks if n in calib_peaks]
    if not layers:
        return {}
    cmax = {n: max(float(calib_peaks[n].max()), 1e-12) for n in layers}
    ratio = np.stack([held_peaks[n] / cmax[n] for n in layers], axis=1)   # (crops, layers)
    worst_layer = ratio.argmax(axis=1)
    crop_ratio = ratio.max(axis=1)
    rows = sorted(({"layer": n, "calibration_max": round(cmax[n], 4),
                    "held_out_max": round(float(held_peaks[n].max()), 4), "ratio": round(float(ratio[:, j].max()), 3),
                    "crops_beyond": int(np.sum(ratio[:, j] > 1.0))}
                   for j, n in enumerate(layers)), key=lambda r: -r["ratio"])
    out = {"max_ratio": round(float(crop_ratio.max()), 3), "warn_ratio": WARN_RATIO, "n_crops": int(len(crop_ratio)),
           "crops_beyond_warn": int(np.sum(crop_ratio > WARN_RATIO)), "crops_beyond": int(np.sum(crop_ratio > 1.0)),
           "layers": rows[:TOP_LAYERS]}
    if cosine is not None:
        i = int(np.argmin(cosine))
        out["lowest_cosine_crop"] = {"index": i, "name": names[i] if names is not None and i < len(names) else "",
                                     "cosine": round(float(cosine[i]), 5), "ratio": round(float(crop_ratio[i]), 3),
                                     "layer": layers[int(worst_layer[i])]}
    return out


def spread(calib_peaks: dict) -> dict:
    """How far apart the calibration crops' activation peaks lie, layer by layer (highest / median crop).

    A static INT8 range is one per tensor for every crop. Where a few crops peak hundreds of times higher than
    the rest (a triplet-trained network can give some people's features a far larger norm), the range either
    covers them, and the median crop's activations get under one level, or clips them: measured on the
    vtest.avi osnet_x1_0 triplet model (benchmarks/results/int8_real/NOTES.md), neither post-training ranges
    nor fine-tuning held. Returns the worst layers and, where the spread passes SPREAD_LIMIT, `too_wide`."""
    rows = []
    for n, p in calib_peaks.items():
        med = float(np.median(p))
        if med <= 0:
            continue  # the median crop has nothing there to lose (an input most crops leave at zero)
        rows.append({"layer": n, "median_peak": round(med, 4), "highest_peak": round(float(p.max()), 4),
                     "spread": round(float(p.max()) / med, 2), "crops_outlying": int(np.sum(p > OUTLIER_FACTOR * med))})
    if not rows:
        return {}
    rows.sort(key=lambda r: -r["spread"])
    n = int(len(next(iter(calib_peaks.values()))))
    top = rows[0]
    return {"spread": top["spread"], "limit": SPREAD_LIMIT, "too_wide": top["spread"] > SPREAD_LIMIT,
            "n_crops": n, "layers": rows[:TOP_LAYERS]}


def spread_reason(s: dict) -> str:
    """The refusal's words for a spread past SPREAD_LIMIT ('' otherwise)."""
    if not s or not s.get("too_wide"):
        return ""
    top = s["layers"][0]
    levels = 256.0 / top["spread"]
    return (f"its activations span {top['spread']:.0f}x between calibration crops (input of {top['layer']}: median "
            f"crop peak {top['median_peak']:.3g}, highest {top['highest_peak']:.4g}; {top['crops_outlying']} of "
            f"{s['n_crops']} crops past {OUTLIER_FACTOR:g}x the median), so one static 8-bit range there either "
            f"clips those crops or leaves the median crop {levels:.1g} of 256 levels")


def summary_line(cov: dict) -> str:
    if not cov:
        return ""
    top = cov["layers"][0]
    if cov["max_ratio"] <= WARN_RATIO:
        return (f"  calibration coverage: held-out activations stay within {cov['max_ratio']:.2f}x of the "
                f"calibration range")
    line = (f"  calibration coverage: {cov['crops_beyond_warn']} of {cov['n_crops']} held-out crops go past "
            f"{WARN_RATIO:g}x the calibration range (up to {top['ratio']:.1f}x at {top['layer']}) and are clipped "
            f"in INT8; calibrate with crops that look like them (other people, clothing, light)")
    low = cov.get("lowest_cosine_crop")
    if low and low["ratio"] > WARN_RATIO:
        line += (f"\n  the lowest-cosine crop ({low['name'] or '#' + str(low['index'])}, cosine {low['cosine']:.4f}) "
                 f"is one of them: {low['ratio']:.1f}x at {low['layer']}")
    return line
