"""What gets traced: the OSNet in eval mode, optionally with the preprocessing's arithmetic in front of it.

With input_format 'uint8_nhwc' the exported graph takes the resized crops as they come out of
preprocess.resize_crops (N, H, W, 3 uint8 BGR) and does the rest itself: cast, BGR->RGB, /255,
mean/std, NHWC->NCHW. The host then moves a quarter of the bytes and skips a full pass over the
batch, and the runtime fuses the arithmetic into the first convolution's input.

The channel swap and the 1/(255*std) scale are folded into conv1's weights (exact: a convolution is
linear per input channel and zero padding stays zero under scaling); the mean cannot be folded the same
way because conv1 zero-pads, so it stays one Sub before the convolution. The float_nchw path is the
model untouched.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from osnet_edge.metadata import ModelMeta


class Uint8Input(nn.Module):
    """(N, H, W, 3) uint8 BGR -> the wrapped OSNet's features, normalisation inside the graph."""

    def __init__(self, model: nn.Module, meta: ModelMeta):
        super().__init__()
        self.model = copy.deepcopy(model).eval()
        conv = self.model.conv1.conv
        std = torch.tensor(meta.std, dtype=torch.float64)
        mean = torch.tensor(meta.mean, dtype=torch.float64)
        # network input channel c (in color_order) reads crop channel src[c] (crops are BGR)
        src = [2, 1, 0] if meta.color_order == "RGB" else [0, 1, 2]
        with torch.no_grad():
            w = conv.weight.double() / (255.0 * std)[:, None, None]  # scale per network input channel
            # reorder the weight's input channels so it reads the BGR planes directly
            w_bgr = torch.empty_like(w)
            w_bgr[:, src] = w
            conv.weight.copy_(w_bgr.to(conv.weight.dtype))
        # x/255 - mean)/std == (x - 255 mean) / (255 std): subtract 255*mean in the crop's channel order
        offset = torch.empty(3, dtype=torch.float64)
        offset[src] = 255.0 * mean
        self.register_buffer("offset", offset.float().view(1, 3, 1, 1))

    def forward(self, x):
        # contiguous(): without it torch.export carries the permuted (channels-last) strides through the
        # network and decomposes every gate's global average pool into Reshape/Range/Gather index arithmetic;
        # a no-op for the TorchScript exporter and in eager mode
        x = x.permute(0, 3, 1, 2).contiguous().float() - self.offset
        return self.model(x)


def traceable(model: nn.Module, meta: ModelMeta) -> nn.Module:
    """The module to export for this metadata (eval mode; a copy when the graph is changed)."""
    if meta.input_format == "uint8_nhwc":
        return Uint8Input(model, meta).eval()
    return model.eval()


def example_input(meta: ModelMeta, batch: int = 2) -> torch.Tensor:
    """An input of the artifact's format; batch 2 so no exporter mistakes the batch axis for a constant 1."""
    h, w = meta.input_size
    if meta.input_format == "uint8_nhwc":
        rng = np.random.default_rng(0)
        return torch.from_numpy(rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8))
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(0))


INPUT_NAME = {"float_nchw": "input", "uint8_nhwc": "crops_bgr_uint8"}
OUTPUT_NAME = "features"
