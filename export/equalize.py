"""Activation equalization for OSNet's Lite 3x3 layers before INT8: exact in FP32, free under per-channel weights.

Where the INT8 error enters (layer_errors.layer_errors on a re-ID-trained osnet_x0_25): already inside the first
OSBlock, at the input of the depthwise 3x3 convolutions. Each Lite 3x3 is `1x1 conv (linear, no BN)` ->
`depthwise 3x3` -> BN -> ReLU, and the 1x1 conv's output channels span very different ranges (a few
channels carry large values, many carry small ones). Activations are quantized per tensor, so the small
channels get a handful of the 256 levels, and the depthwise layer (9 weights per channel, no averaging over
input channels) passes that error on undiminished; stacked up to four deep per stream, it compounds.

Because nothing sits between the 1x1 conv and the depthwise conv, channel k can be rescaled exactly:
    W1[k, :] /= s_k   and   W2[k] *= s_k        (y = W2 * (W1 x) unchanged)
With s_k = r_k / R (r_k: the channel's calibrated absolute range, R: the layer's largest), every channel
uses the full INT8 range of the shared per-tensor scale. The weights of both convolutions are quantized per
output channel, and row k of W1 / filter k of W2 have their own scales, so the weight side loses nothing.
This is the data-driven form of cross-layer equalization (Nagel et al., ICCV 2019) / SmoothQuant's
migration with alpha = 1, applied where it is exact.
"""
from __future__ import annotations

import copy

import numpy as np

MIN_RATIO = 1e-3  # channels quieter than this fraction of the layer's range (dead on the calibration set) stay as they are


def lite_pairs(model) -> list:
    """(conv1, conv2) of every Lite 3x3 layer: a linear 1x1 conv feeding a depthwise conv directly."""
    from osnet_edge.models.osnet import LightConv3x3

    return [(m.conv1, m.conv2) for m in model.modules() if isinstance(m, LightConv3x3)
            and m.conv2.groups == m.conv2.in_channels == m.conv1.out_channels]


def activation_ranges(model, batches) -> list:
    """Per-channel max |output| of each Lite 3x3's 1x1 conv over the calibration batches (NCHW float32)."""
    import torch

    pairs = lite_pairs(model)
    ranges = [torch.zeros(c1.out_channels) for c1, _ in pairs]
    hooks = []
    for i, (c1, _) in enumerate(pairs):
        def hook(_mod, _inp, out, i=i):
            ranges[i] = torch.maximum(ranges[i], out.detach().abs().amax(dim=(0, 2, 3)).float().cpu())
        hooks.append(c1.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for b in batches:
                model(torch.from_numpy(np.ascontiguousarray(b)))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return ranges


def equalize(model, batches) -> tuple:
    """A copy of `model` with every Lite 3x3 equalized on `batches`; returns (model, stats).

    The original is not modified (it stays the FP32 reference of the fidelity report).
    """
    import torch

    m = copy.deepcopy(model).eval()
    ranges = activation_ranges(m, batches)
    spread_before, n = [], 0
    with torch.no_grad():
        for (c1, c2), r in zip(lite_pairs(m), ranges):
            big = float(r.max())
            if big <= 0:
                continue
            s = (r / big).clamp(min=MIN_RATIO)
            s[r < MIN_RATIO * big] = 1.0
            c1.weight.div_(s.view(-1, 1, 1, 1))
            c2.weight.mul_(s.view(-1, 1, 1, 1))
            live = r[r >= MIN_RATIO * big]
            spread_before.append(float(big / live.median()) if len(live) else 1.0)
            n += 1
    stats = {"layers": n, "median_range_spread_before": float(np.median(spread_before)) if spread_before else 1.0}
    return m, stats
