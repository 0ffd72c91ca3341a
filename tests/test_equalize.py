"""Lite 3x3 activation equalization: exact in FP32, and it evens out the depthwise inputs' channel ranges."""
import numpy as np
import torch

from osnet_edge import build_model
from osnet_edge.export.equalize import activation_ranges, equalize, lite_pairs


def _model_with_uneven_channels():
    torch.manual_seed(0)
    m = build_model("osnet_x0_25", input_size=(64, 32)).eval()
    with torch.no_grad():  # a trained net's 1x1 outputs span different ranges; make some channels 20x quieter
        for c1, _ in lite_pairs(m):
            c1.weight[::2] *= 0.05
    return m


def test_equalize_is_exact_and_evens_ranges():
    m = _model_with_uneven_channels()
    original = [c1.weight.detach().clone() for c1, _ in lite_pairs(m)]
    x = np.random.default_rng(0).normal(size=(8, 3, 64, 32)).astype(np.float32)
    eq, stats = equalize(m, [x])
    assert stats["layers"] == len(lite_pairs(m)) > 0
    with torch.no_grad():
        a, b = m(torch.from_numpy(x)), eq(torch.from_numpy(x))
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)  # the same function in FP32
    spread = lambda r: float(r.max() / r[r > 0].min())
    before, after = activation_ranges(m, [x]), activation_ranges(eq, [x])
    assert np.median([spread(r) for r in after]) < 0.5 * np.median([spread(r) for r in before])
    # the copy was rescaled and the reference model is untouched
    assert not torch.equal(next(iter(lite_pairs(m)))[0].weight, next(iter(lite_pairs(eq)))[0].weight)
    assert all(torch.equal(w, c1.weight) for w, (c1, _) in zip(original, lite_pairs(m)))
