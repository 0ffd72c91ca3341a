"""The OSNet network (Zhou et al., ICCV 2019), one file, blocks named after the paper.

Module and attribute names follow torchreid's models/osnet.py and models/osnet_ain.py so that
their published checkpoints load unchanged. torchreid has two naming schemes:

- "v1" (osnet.py: osnet_x*, osnet_ibn_x1_0): streams are conv2a..conv2d, and the transition
  (1x1 conv + 2x2 average pool) is the last element of stages conv2 and conv3;
- "v2" (osnet_ain.py: osnet_ain_x*): streams are a ModuleList conv2[t].layers, and the
  transitions are separate modules pool2 and pool3.

Both are configuration of the classes below, not separate copies.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


class ConvLayer(nn.Module):
    """conv + bn (or instance norm) + relu; the 7x7 stem."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, IN=False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                              bias=False, groups=groups)
        self.bn = nn.InstanceNorm2d(out_channels, affine=True) if IN else nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class Conv1x1(nn.Module):
    """1x1 convolution + bn + relu."""

    def __init__(self, in_channels, out_channels, stride=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, padding=0, bias=False, groups=groups)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class Conv1x1Linear(nn.Module):
    """1x1 convolution + bn, no non-linearity (bn=False inside AIN blocks, where IN follows)."""

    def __init__(self, in_channels, out_channels, stride=1, bn=True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(out_channels) if bn else None

    def forward(self, x):
        x = self.conv(x)
        return self.bn(x) if self.bn is not None else x


class LightConv3x3(nn.Module):
    """Lite 3x3 (paper Fig. 3c): 1x1 linear + depthwise 3x3, then bn + relu."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1, stride=1, padding=0, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False,
                               groups=out_channels)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv2(self.conv1(x))))


class LightConvStream(nn.Module):
    """t stacked Lite 3x3 layers: one stream of receptive field (2t+1) (v2 naming)."""

    def __init__(self, in_channels, out_channels, depth):
        super().__init__()
        self.layers = nn.Sequential(
            LightConv3x3(in_channels, out_channels),
            *[LightConv3x3(out_channels, out_channels) for _ in range(depth - 1)],
        )

    def forward(self, x):
        return self.layers(x)


class ChannelGate(nn.Module):
    """Unified aggregation gate (paper Eq. 3): GAP -> fc -> relu -> fc -> sigmoid, shared by all streams."""

    def __init__(self, in_channels, reduction=16):
        super().__init__()
        # torchreid uses in_channels // 16; at small widths that reaches 0, so keep at least one unit.
        hidden = max(1, in_channels // reduction)
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(in_channels, hidden, kernel_size=1, bias=True, padding=0)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, in_channels, kernel_size=1, bias=True, padding=0)
        self.gate_activation = nn.Sigmoid()

    def forward(self, x):
        g = self.gate_activation(self.fc2(self.relu(self.fc1(self.global_avgpool(x)))))
        return x * g


class OSBlock(nn.Module):
    """Omni-scale bottleneck (paper Fig. 4b) with T streams of increasing depth.

    norm: None, "after" (IBN: instance norm on the block output, osnet_ibn) or
          "inside" (AIN: instance norm on the residual branch, replacing conv3's bn).
    naming: "v1" (conv2a..conv2d) or "v2" (conv2[t].layers), see the module docstring.
    """

    def __init__(self, in_channels, out_channels, norm=None, naming="v1", T=4, reduction=4):
        super().__init__()
        mid = out_channels // reduction
        self.conv1 = Conv1x1(in_channels, mid)
        if naming == "v1":
            if T != 4:
                raise ValueError("torchreid's v1 naming has exactly 4 streams")
            self.conv2a = LightConv3x3(mid, mid)
            self.conv2b = nn.Sequential(*[LightConv3x3(mid, mid) for _ in range(2)])
            self.conv2c = nn.Sequential(*[LightConv3x3(mid, mid) for _ in range(3)])
            self.conv2d = nn.Sequential(*[LightConv3x3(mid, mid) for _ in range(4)])
            self._streams = [self.conv2a, self.conv2b, self.conv2c, self.conv2d]
        else:
            self.conv2 = nn.ModuleList([LightConvStream(mid, mid, t) for t in range(1, T + 1)])
            self._streams = list(self.conv2)
        self.gate = ChannelGate(mid)
        self.conv3 = Conv1x1Linear(mid, out_channels, bn=norm != "inside")
        self.downsample = Conv1x1Linear(in_channels, out_channels) if in_channels != out_channels else None
        self.norm = norm
        self.IN = nn.InstanceNorm2d(out_channels, affine=True) if norm in ("after", "inside") else None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        x1 = self.conv1(x)
        x2 = 0
        for stream in self._streams:
            x2 = x2 + self.gate(stream(x1))
        x3 = self.conv3(x2)
        if self.norm == "inside":
            x3 = self.IN(x3)
        out = x3 + identity
        if self.norm == "after":
            out = self.IN(out)
        return F.relu(out)


@dataclass(frozen=True)
class OSNetConfig:
    """Everything that distinguishes one OSNet variant from another."""

    channels: tuple[int, int, int, int] = (64, 256, 384, 512)
    layers: tuple[int, int, int] = (2, 2, 2)
    # per stage, per block: None | "after" | "inside"
    block_norms: tuple = ((None, None), (None, None), (None, None))
    stem_IN: bool = False
    naming: str = "v1"
    feature_dim: int = 512


def transition(channels):
    """1x1 conv + 2x2 average pool between stages (paper Table 1)."""
    return nn.Sequential(Conv1x1(channels, channels), nn.AvgPool2d(2, stride=2))


class OSNet(nn.Module):
    """OSNet backbone + 512-D fc (+ classifier when num_classes > 0).

    Eval mode returns the fc output (post BN+ReLU, not normalised), as torchreid does.
    Train mode returns logits, or (logits, features) when loss == "triplet".
    """

    def __init__(self, cfg: OSNetConfig, num_classes: int = 0, loss: str = "softmax"):
        super().__init__()
        c = cfg.channels
        self.cfg = cfg
        self.loss = loss
        self.feature_dim = cfg.feature_dim
        self.conv1 = ConvLayer(3, c[0], 7, stride=2, padding=3, IN=cfg.stem_IN)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages = [self._make_stage(i, c[i], c[i + 1], cfg) for i in range(3)]
        if cfg.naming == "v1":
            stages[0].append(transition(c[1]))
            stages[1].append(transition(c[2]))
            self.conv2, self.conv3, self.conv4 = (nn.Sequential(*s) for s in stages)
        else:
            self.conv2 = nn.Sequential(*stages[0])
            self.pool2 = transition(c[1])
            self.conv3 = nn.Sequential(*stages[1])
            self.pool3 = transition(c[2])
            self.conv4 = nn.Sequential(*stages[2])
        self.conv5 = Conv1x1(c[3], c[3])
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(c[3], cfg.feature_dim), nn.BatchNorm1d(cfg.feature_dim), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(cfg.feature_dim, num_classes) if num_classes > 0 else None
        self._init_params()

    @staticmethod
    def _make_stage(i, cin, cout, cfg):
        norms = cfg.block_norms[i]
        if len(norms) != cfg.layers[i]:
            raise ValueError(f"stage {i + 2}: {cfg.layers[i]} blocks but {len(norms)} norm settings")
        return [OSBlock(cin if j == 0 else cout, cout, norm=norms[j], naming=cfg.naming) for j in range(cfg.layers[i])]

    def _init_params(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.InstanceNorm2d)):
                if m.weight is not None:
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def featuremaps(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.conv2(x)
        if self.cfg.naming == "v2":
            x = self.pool2(x)
        x = self.conv3(x)
        if self.cfg.naming == "v2":
            x = self.pool3(x)
        x = self.conv4(x)
        return self.conv5(x)

    def forward(self, x, return_featuremaps=False):
        x = self.featuremaps(x)
        if return_featuremaps:
            return x
        v = torch.flatten(self.global_avgpool(x), 1)
        v = self.fc(v)
        if not self.training:
            return v
        if self.classifier is None:
            raise RuntimeError("this model was built with num_classes=0: it has no classifier to train; "
                               "pass num_classes=N to build_model, or call model.eval() to extract features")
        y = self.classifier(v)
        if self.loss == "softmax":
            return y
        if self.loss == "triplet":
            return y, v
        raise KeyError(f"Unsupported loss: {self.loss}")
