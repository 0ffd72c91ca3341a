"""How many activation bits would the top-1 neighbour bar need? A PyTorch fake-quantization model of the INT8 IR.

Simulates what the OpenVINO INT8 model does at every convolution (ChannelGate fc layers and the head stay
FP32, as in the `reid` recipe): per-tensor activation quantization with min/max ranges over the calibration
crops (unsigned 8-bit after ReLU, symmetric signed otherwise) and per-output-channel symmetric weights (7-bit
for the first layer, NNCF's overflow fix). Activation bits and the Lite 3x3 equalization are varied, one at a
time, and each setting is compared with the FP32 model on held-out crops, with the fidelity report's metrics.
Tracks the real OpenVINO INT8 model closely (8 bits: mean cosine 0.995-0.997, top-1 78-84%, IR 0.996-0.997 / 79-81%).

    python benchmarks/results/int8/bitwidth_sim.py CHECKPOINT.pth market1501:CALIB_ROOT market1501:HELDOUT_ROOT
"""
import copy
import sys

import numpy as np
import torch

from osnet_edge import build_model
from osnet_edge.calibration import calibration_split
from osnet_edge.checkpoint import model_meta
from osnet_edge.export.fidelity_metrics import CLEAR_GAP, embedding_agreement
from osnet_edge.export.coverage import quantized_conv_modules as quantized_convs
from osnet_edge.export.equalize import equalize
from osnet_edge.preprocess import to_batch


def input_ranges(m, batches):
    rng, hooks = {}, []
    for n, c in quantized_convs(m):
        def hook(_c, inp, n=n):
            lo, hi = rng.get(n, (0.0, 0.0))
            rng[n] = (min(lo, float(inp[0].min())), max(hi, float(inp[0].max())))
        hooks.append(c.register_forward_pre_hook(hook))
    with torch.no_grad():
        for b in batches:
            m(b)
    for h in hooks:
        h.remove()
    return rng


def fake_quantize(m, ranges, act_bits, weight_bits=8):
    m = copy.deepcopy(m)
    levels = 2 ** act_bits if act_bits else 0
    for n, c in quantized_convs(m):
        if weight_bits:
            q = 2 ** ((7 if n == "conv1.conv" else weight_bits) - 1) - 1
            w = c.weight.data
            s = (w.abs().amax(dim=(1, 2, 3), keepdim=True) / q).clamp_min(1e-12)
            c.weight.data = torch.round(w / s).clamp(-q, q) * s
        if act_bits is None:
            continue
        lo, hi = ranges[n]
        if lo >= 0:
            s, a, b = hi / (levels - 1), 0, levels - 1
        else:
            s, a, b = max(-lo, hi) / (levels // 2 - 1), -(levels // 2), levels // 2 - 1
        c.register_forward_pre_hook(lambda _c, inp, s=s, a=a, b=b: (torch.clamp(torch.round(inp[0] / s), a, b) * s,))
    return m


def fp16_rounded(m):
    """FP16 storage of every weight and every convolution input: the reference point for the metrics."""
    m = copy.deepcopy(m)
    for _n, c in quantized_convs(m):
        c.weight.data = c.weight.data.half().float()
        c.register_forward_pre_hook(lambda _c, inp: (inp[0].half().float(),))
    return m


def main(checkpoint, calib, held_out):
    torch.set_num_threads(2)
    model = build_model(weights=checkpoint).eval()
    meta = model_meta(model)
    split = calibration_split(calib, 300, 1200, seed=0, progress=False, holdout=held_out)

    def batches(crops):
        return [torch.from_numpy(to_batch(crops[i:i + 64], meta.input_size, meta.mean, meta.std, meta.color_order))
                for i in range(0, len(crops), 64)]

    cal = batches(list(split.calib.crops))
    test = batches(list(split.held_out.crops) + (list(split.query.crops) if split.query is not None else []))

    def embed(m):
        with torch.no_grad():
            return np.concatenate([m(b).numpy() for b in test])

    ref = embed(model)
    eq, _ = equalize(model, [b.numpy() for b in cal])
    print(f"{len(ref)} held-out crops; columns: mean cosine, min cosine, top-1 agreement, "
          f"top-1 agreement where FP32's gap >= {CLEAR_GAP}")
    def show(label, a):
        clear = a["top1_agreement_by_fp32_gap"][f"{CLEAR_GAP:g}"]["top1_agreement"]
        print(f"  {label:28s} {a['cosine_mean']:.6f}  {a['cosine_min']:.5f}  {100 * a['top1_agreement']:5.1f}%  "
              f"{100 * clear:5.1f}%", flush=True)

    ranges = {id(m): input_ranges(m, cal) for m in (model, eq)}  # calibration ranges, once per network
    show("FP16 weights + activations", embedding_agreement(ref, embed(fp16_rounded(model))))
    for label, base, bits, wbits in [("8-bit act + 8-bit w", model, 8, 8), ("8-bit act only", model, 8, 0),
                                     ("weights only (8-bit)", model, None, 8),
                                     ("equalized, 8-bit act + w", eq, 8, 8), ("equalized, 9-bit act + w", eq, 9, 8),
                                     ("equalized, 10-bit act + w", eq, 10, 8), ("equalized, 10-bit act", eq, 10, 0)]:
        show(label, embedding_agreement(ref, embed(fake_quantize(base, ranges[id(base)], bits, wbits))))


if __name__ == "__main__":
    main(*sys.argv[1:4])
