"""Losses: cross-entropy with label smoothing, batch-hard triplet, and deep mutual learning's KL term."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class CrossEntropyLabelSmooth(nn.Module):
    """Cross-entropy against (1 - eps) one-hot + eps / C uniform targets (Szegedy et al.; eps 0.1 as torchreid)."""

    def __init__(self, num_classes: int, eps: float = 0.1):
        super().__init__()
        self.num_classes, self.eps = num_classes, eps

    def forward(self, logits, targets):
        log_p = F.log_softmax(logits.float(), dim=1)
        nll = -log_p.gather(1, targets[:, None]).squeeze(1)
        uniform = -log_p.mean(1)
        return ((1 - self.eps) * nll + self.eps * uniform).mean()


class TripletLoss(nn.Module):
    """Batch-hard triplet loss (Hermans et al. 2017): for each anchor, its farthest positive and
    nearest negative in the batch, hinged at `margin` (Euclidean distance on the 512-D features)."""

    def __init__(self, margin: float = 0.3):
        super().__init__()
        self.margin = margin

    def forward(self, features, targets):
        f = features.float()
        sq = (f * f).sum(1)
        dist = (sq[:, None] + sq[None, :] - 2 * f @ f.t()).clamp(min=1e-12).sqrt()
        same = targets[:, None] == targets[None, :]
        hardest_pos = dist.masked_fill(~same, float("-inf")).max(1).values
        hardest_neg = dist.masked_fill(same, float("inf")).min(1).values
        valid = torch.isfinite(hardest_neg)  # an anchor with no negative in the batch has no triplet
        if not valid.any():
            return dist.sum() * 0.0
        return F.relu(hardest_pos[valid] - hardest_neg[valid] + self.margin).mean()


def mutual_kl(logits, peer_logits):
    """DML's mimicry term KL(p_peer || p_self), the peer's distribution held fixed (Zhang et al. 2018)."""
    return F.kl_div(F.log_softmax(logits.float(), 1), F.softmax(peer_logits.detach().float(), 1),
                    reduction="batchmean")


class ReidLoss(nn.Module):
    """weight_x * label-smoothed CE + weight_t * batch-hard triplet (+ weight_ml * mutual KL under DML).

    forward(outputs, targets, peer_logits=None) -> (total, parts dict of floats, logits)
    where outputs is the model's training output: logits, or (logits, features) with triplet.
    """

    def __init__(self, num_classes: int, weight_x: float = 1.0, weight_t: float = 0.0, margin: float = 0.3,
                 label_smooth: float = 0.1, weight_ml: float = 1.0):
        super().__init__()
        self.ce = CrossEntropyLabelSmooth(num_classes, label_smooth)
        self.triplet = TripletLoss(margin)
        self.weight_x, self.weight_t, self.weight_ml = weight_x, weight_t, weight_ml

    @property
    def needs_features(self) -> bool:
        return self.weight_t > 0

    def forward(self, outputs, targets, peer_logits=None):
        logits, feats = outputs if isinstance(outputs, tuple) else (outputs, None)
        parts = {}
        total = logits.new_zeros((), dtype=torch.float32)
        if self.weight_x > 0:
            ce = self.ce(logits, targets)
            total = total + self.weight_x * ce
            parts["ce"] = ce.detach()
        if self.weight_t > 0:
            tri = self.triplet(feats, targets)
            total = total + self.weight_t * tri
            parts["triplet"] = tri.detach()
        if peer_logits is not None and self.weight_ml > 0:
            ml = mutual_kl(logits, peer_logits)
            total = total + self.weight_ml * ml
            parts["mutual"] = ml.detach()
        return total, parts, logits
