"""The OSNet variants: every one is a small config entry over one network class (timm-style). build_model, which
also loads weights, lives in build.py above this table and the checkpoint reader."""
from __future__ import annotations

import math
import re
from dataclasses import replace

from ..errors import ModelConfigError
from .osnet import OSNetConfig

BASE_CHANNELS = (64, 256, 384, 512)
DEFAULT_INPUT_SIZE = (256, 128)  # (H, W), paper Table 1
MIN_INPUT_SIZE = 13  # smallest side that survives the network's four stride-2 steps (see min_input_side)

_PLAIN = ((None, None), (None, None), (None, None))
_IBN = (("after", "after"), (None, None), (None, None))  # IN after the residual add in stage conv2
_AIN = (("inside", "inside"), (None, "inside"), ("inside", None))  # torchreid osnet_ain block pattern

# family -> config overrides (channels are filled in from the width)
FAMILIES = {
    "osnet": dict(block_norms=_PLAIN, stem_IN=False, naming="v1"),
    "osnet_ibn": dict(block_norms=_IBN, stem_IN=True, naming="v1"),
    "osnet_ain": dict(block_norms=_AIN, stem_IN=True, naming="v2"),
}

# torchreid's names: (family, width)
VARIANTS = {
    "osnet_x1_0": ("osnet", 1.0),
    "osnet_x0_75": ("osnet", 0.75),
    "osnet_x0_5": ("osnet", 0.5),
    "osnet_x0_25": ("osnet", 0.25),
    "osnet_ibn_x1_0": ("osnet_ibn", 1.0),
    "osnet_ain_x1_0": ("osnet_ain", 1.0),
    "osnet_ain_x0_75": ("osnet_ain", 0.75),
    "osnet_ain_x0_5": ("osnet_ain", 0.5),
    "osnet_ain_x0_25": ("osnet_ain", 0.25),
}


def scaled_channels(width: float) -> tuple[int, int, int, int]:
    """Channels at width multiplier β: exact torchreid values at 1, 0.75, 0.5, 0.25.

    Other β round to the nearest multiple of 4 (each OSBlock divides its output by 4 for the
    bottleneck), never below 4.
    """
    check_width(width)
    return tuple(max(4, int(round(c * width / 4.0)) * 4) for c in BASE_CHANNELS)


def check_width(width) -> float:
    try:
        w = float(width)
    except (TypeError, ValueError):
        raise ModelConfigError(f"width must be a number in (0, 1], got {width!r}") from None
    if not (0.0 < w <= 1.0) or math.isnan(w):
        raise ModelConfigError(f"width must be in (0, 1] (paper Table 6 uses 1, 0.75, 0.5, 0.25), got {width!r}")
    return w


def arch_name(family: str, width: float) -> str:
    """Canonical name: torchreid's for its widths (osnet_x0_25), else e.g. osnet_x0_3."""
    for name, (fam, w) in VARIANTS.items():
        if fam == family and math.isclose(w, width):
            return name
    text = f"{width:.4f}".rstrip("0").rstrip(".")
    return f"{family}_x{text.replace('.', '_')}"


def parse_arch(name: str) -> tuple[str, float]:
    """'osnet_x0_25' -> ('osnet', 0.25); accepts any width written the same way (osnet_ain_x0_3)."""
    if name in VARIANTS:
        return VARIANTS[name]
    m = re.fullmatch(r"(osnet(?:_ibn|_ain)?)_x(\d+)(?:_(\d+))?", name or "")
    if m:
        width = float(f"{m.group(2)}.{m.group(3) or 0}")
        return m.group(1), check_width(width)
    raise ModelConfigError(
        f"unknown OSNet variant {name!r}; valid names: {', '.join(VARIANTS)} "
        f"(or any width, e.g. osnet_x0_3 or build_model(width=0.3))"
    )


def min_input_side(side: int) -> int:
    """Spatial size of the final feature map for an input side (0 means the input is too small)."""
    s = (side - 1) // 2 + 1  # conv1 7x7/2, pad 3
    s = (s - 1) // 2 + 1  # maxpool 3x3/2, pad 1
    s = s // 2  # transition avgpool 2x2/2
    return s // 2  # transition avgpool 2x2/2


def check_input_size(input_size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise ModelConfigError(f"input size must be (height, width), got {input_size!r}") from None
    if min_input_side(h) < 1 or min_input_side(w) < 1:
        raise ModelConfigError(
            f"input size {h}x{w} is too small: OSNet downsamples 16x, so each side must be at least "
            f"{MIN_INPUT_SIZE} pixels (the paper uses 256x128)"
        )
    return h, w


def model_config(name: str | None = None, width: float | None = None, family: str | None = None) -> tuple[str, OSNetConfig]:
    """Resolve (name | width [+ family]) to a canonical arch name and its config."""
    if name is not None:
        fam, w = parse_arch(name)
        if width is not None and not math.isclose(check_width(width), w):
            raise ModelConfigError(f"{name} has width {w}; it conflicts with width={width}")
    else:
        fam = family or "osnet"
        if fam not in FAMILIES:
            raise ModelConfigError(f"unknown OSNet family {fam!r}; valid: {', '.join(FAMILIES)}")
        w = check_width(1.0 if width is None else width)
    cfg = replace(OSNetConfig(), channels=scaled_channels(w), **FAMILIES[fam])
    return arch_name(fam, w), cfg
