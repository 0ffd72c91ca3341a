"""Parameters and Mult-Adds, counted the way the paper (and torchreid) count them.

Mult-Adds: convolutions and linear layers only, one per weight use (a bias adds one per output),
every call counted (the shared aggregation gate runs once per stream). Params exclude the
identity classifier, which is discarded at test time.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .models.factory import DEFAULT_INPUT_SIZE, check_input_size


@dataclass(frozen=True)
class Complexity:
    params: int
    mult_adds: int
    input_size: tuple[int, int]

    def __str__(self):
        return f"{self.params / 1e6:.2f}M params, {self.mult_adds / 1e6:.1f}M Mult-Adds at {self.input_size[0]}x{self.input_size[1]}"


def _conv_linear_mult_adds(module, out) -> int:
    if isinstance(module, nn.Conv2d):
        per_out = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
    else:
        per_out = module.in_features
    if module.bias is not None:
        per_out += 1
    return per_out * out[0].numel()  # per image: batch index 0


def complexity(model: nn.Module, input_size=None) -> Complexity:
    """Count params (without classifier) and Mult-Adds for one image of input_size (H, W)."""
    size = check_input_size(input_size or getattr(model, "input_size", DEFAULT_INPUT_SIZE))
    total = [0]

    def hook(m, _inp, out):
        total[0] += _conv_linear_mult_adds(m, out)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
               and m is not getattr(model, "classifier", None)]
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        with torch.inference_mode():
            model(torch.zeros(1, 3, *size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    classifier = getattr(model, "classifier", None)
    skip = {id(p) for p in classifier.parameters()} if classifier is not None else set()
    params = sum(p.numel() for p in model.parameters() if id(p) not in skip)
    return Complexity(params=params, mult_adds=total[0], input_size=size)


def table6(widths=(1.0, 0.75, 0.5, 0.25), resolutions=(1.0, 0.75, 0.5, 0.25)):
    """Rows (β, ρ, input_size, Complexity) of the paper's Table 6 grid, input 256ρ x 128ρ."""
    from .models import build_model

    rows = []
    for w in widths:
        model = build_model(width=w)
        for r in resolutions:
            size = (int(round(256 * r)), int(round(128 * r)))
            rows.append((w, r, size, complexity(model, size)))
    return rows


# paper Table 6 (β, ρ) -> (params M, Mult-Adds M, Market1501 R1, mAP), for side-by-side printing
PAPER_TABLE6 = {
    (1.0, 1.0): (2.2, 978.9, 94.8, 84.9), (0.75, 1.0): (1.3, 571.8, 94.5, 84.1),
    (0.5, 1.0): (0.6, 272.9, 93.4, 82.6), (0.25, 1.0): (0.2, 82.3, 92.2, 77.8),
    (1.0, 0.75): (2.2, 550.7, 94.4, 83.7), (1.0, 0.5): (2.2, 244.9, 92.0, 80.3),
    (1.0, 0.25): (2.2, 61.5, 86.9, 67.3), (0.75, 0.75): (1.3, 321.7, 94.3, 82.4),
    (0.75, 0.5): (1.3, 143.1, 92.9, 79.5), (0.75, 0.25): (1.3, 35.9, 85.4, 65.5),
    (0.5, 0.75): (0.6, 153.6, 92.9, 80.8), (0.5, 0.5): (0.6, 68.3, 91.7, 78.5),
    (0.5, 0.25): (0.6, 17.2, 85.4, 66.0), (0.25, 0.75): (0.2, 46.3, 91.6, 76.1),
    (0.25, 0.5): (0.2, 20.6, 88.7, 71.8), (0.25, 0.25): (0.2, 5.2, 79.1, 56.0),
}


def print_table6(file=None):
    """Print the Table 6 grid as counted here next to the paper's published values."""
    print(f"{'beta':>5} {'rho':>5} {'input':>8} {'params':>8} {'paper':>6} {'Mult-Adds':>10} {'paper':>8} "
          f"{'diff':>6} {'R1':>5} {'mAP':>5}", file=file)
    for w, r, size, c in table6():
        p_params, p_madds, r1, mAP = PAPER_TABLE6[(w, r)]
        diff = 100.0 * (c.mult_adds / 1e6 - p_madds) / p_madds
        print(f"{w:>5} {r:>5} {size[0]:>4}x{size[1]:<3} {c.params / 1e6:>7.2f}M {p_params:>5.1f}M "
              f"{c.mult_adds / 1e6:>9.1f}M {p_madds:>7.1f}M {diff:>+5.2f}% {r1:>5} {mAP:>5}", file=file)


if __name__ == "__main__":
    print_table6()
