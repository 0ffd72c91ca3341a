"""Training configuration and the paper's named recipes. Every field can be overridden (flags / kwargs)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace

from ..errors import InputError


@dataclass
class TrainConfig:
    # data
    data: list = field(default_factory=list)  # ["market1501:/path", ...]; all are trained on
    eval_data: list | None = None  # datasets evaluated (default: those of `data` with a query/gallery)
    cam_pattern: str | None = None  # generic layout: regex whose first group is the camera id
    # model
    arch: str | None = "osnet_x1_0"
    width: float | None = None
    input_size: tuple = (256, 128)  # (H, W)
    weights: str | None = None  # initial weights (torchreid zoo or ours); classifier dropped
    # optimisation
    epochs: int = 350
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.065
    weight_decay: float = 5e-4
    momentum: float = 0.9
    schedule: str = "multistep"
    milestones: tuple = (150, 225, 300)
    gamma: float = 0.1
    warmup_epochs: int = 0
    fixbase_epochs: int = 0
    open_layers: tuple = ("classifier",)
    # losses
    label_smooth: float = 0.1
    weight_x: float = 1.0
    weight_t: float = 0.0  # > 0 adds batch-hard triplet loss (then P x K sampling)
    margin: float = 0.3
    dml: bool = False  # deep mutual learning: two networks, mutual KL
    weight_ml: float = 1.0
    # sampling and augmentation
    sampler: str = "auto"  # auto | random | identity
    num_instances: int = 4  # K in P x K
    augment: tuple = ("flip", "crop", "patch")
    augment_options: dict = field(default_factory=dict)  # {"erase": {"p": 0.5}, ...}
    # evaluation
    eval_every: int = 10  # epochs; 0 = only at the end
    metric: str = "euclidean"
    rerank: bool = False
    # run
    output: str = "runs/osnet"
    resume: str | None = None
    seed: int = 1
    workers: int | None = None  # data loading processes; None: from the CPU cores (data.default_workers)
    device: str | None = None  # None: cuda if available
    threads: int | None = None  # CPU threads for torch (1 is fastest on a busy shared CPU)
    amp: bool = True  # mixed precision (CUDA only)
    keep_every: int = 0  # also keep checkpoint-epochN.pth every N epochs
    progress: bool = True
    recipe: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown training option(s): {', '.join(unknown)}")
        tuples = {"input_size", "milestones", "open_layers", "augment"}
        return cls(**{k: tuple(v) if k in tuples and v is not None else v for k, v in d.items()})


# The paper's Sec. 4.1 implementation details; `paper-dml` is the supplementary's best combination
# (CE + triplet as an auxiliary loss + deep mutual learning, tested as a 2-model ensemble).
RECIPES = {
    "paper-scratch": dict(optimizer="sgd", lr=0.065, epochs=350, schedule="multistep", milestones=(150, 225, 300),
                          gamma=0.1, batch_size=64, weight_decay=5e-4, augment=("flip", "crop", "patch"),
                          label_smooth=0.1, weight_x=1.0, weight_t=0.0, fixbase_epochs=0, dml=False),
    "paper-finetune": dict(optimizer="amsgrad", lr=0.0015, epochs=150, schedule="multistep", milestones=(60, 120),
                           gamma=0.1, batch_size=64, weight_decay=5e-4, fixbase_epochs=10,
                           augment=("flip", "erase"), label_smooth=0.1, weight_x=1.0, weight_t=0.0, dml=False),
    "paper-dml": dict(optimizer="sgd", lr=0.065, epochs=350, schedule="multistep", milestones=(150, 225, 300),
                      gamma=0.1, batch_size=64, weight_decay=5e-4, augment=("flip", "crop", "patch"),
                      label_smooth=0.1, weight_x=1.0, weight_t=0.5, num_instances=4, dml=True, weight_ml=1.0),
}


def make_config(recipe: str | None = None, **overrides) -> TrainConfig:
    """A recipe's values, then the overrides (None values are ignored: 'not given')."""
    base = {}
    if recipe is not None:
        if recipe not in RECIPES:
            raise InputError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
        base = dict(RECIPES[recipe])
    base.update({k: v for k, v in overrides.items() if v is not None})
    cfg = TrainConfig.from_dict({**base, "recipe": recipe})
    return cfg


def with_overrides(cfg: TrainConfig, **overrides) -> TrainConfig:
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
