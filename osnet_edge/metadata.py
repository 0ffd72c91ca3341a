"""The one metadata schema every artifact carries (ONNX metadata_props, OpenVINO rt_info, a JSON
sidecar next to a TensorRT engine, our checkpoints' 'meta'). Torch-free."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

from ._version import __version__
from .errors import ArtifactError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# key under which the JSON document is stored in ONNX metadata_props / OpenVINO rt_info
META_KEY = "osnet_edge"

# what the artifact's input expects:
#   "float_nchw": RGB, normalised with mean/std, NCHW float32 (the host runs to_batch fully)
#   "uint8_nhwc": BGR uint8 NHWC at input_size; colour swap, mean/std and layout live in the graph
INPUT_FORMATS = ("float_nchw", "uint8_nhwc")
PRECISIONS = ("fp32", "fp16", "int8")
COLOR_ORDERS = ("RGB", "BGR")
# plausible bounds of a re-ID input and embedding; outside them the file is damaged or not ours
MIN_SIDE, MAX_SIDE = 8, 4096
MAX_FEATURE_DIM = 65536


@dataclass
class ModelMeta:
    arch: str
    width: float
    input_size: tuple  # (H, W)
    feature_dim: int = 512
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    color_order: str = "RGB"  # channel order the network was trained on
    input_format: str = "float_nchw"
    precision: str = "fp32"
    version: str = __version__
    extra: dict = field(default_factory=dict)  # backend facts: TensorRT version, GPU, profile shapes, ...
    # where the weights came from and what was checked: {"weights": file name or "random init", "sha256",
    # "trained", "parity": {...}, "int8_fidelity": {...}}; {} in artifacts written before it existed
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        # metadata comes from files others hand over: every field is checked, so a wrong value is named here
        # and never becomes a 10^7 x 10^7 resize or a NaN normalisation later
        try:
            self.input_size = tuple(int(v) for v in self.input_size)
            self.mean = tuple(float(v) for v in self.mean)
            self.std = tuple(float(v) for v in self.std)
            self.width = float(self.width)
            self.feature_dim = int(self.feature_dim)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ArtifactError(f"metadata: input_size, mean, std, width and feature_dim must be numbers ({exc})") \
                from None
        self.provenance = dict(self.provenance) if isinstance(self.provenance, dict) else {}
        if not isinstance(self.extra, dict):
            raise ArtifactError(f"metadata: extra must be a mapping, got {type(self.extra).__name__}")
        if not isinstance(self.arch, str) or not 0 < len(self.arch) <= 100:
            raise ArtifactError(f"metadata: arch must be a name like 'osnet_x0_25', got {str(self.arch)[:60]!r}")
        if not (0.0 < self.width <= 1.0):
            raise ArtifactError(f"metadata: width must be in (0, 1], got {self.width}")
        if not all(MIN_SIDE <= v <= MAX_SIDE for v in self.input_size):
            raise ArtifactError(f"metadata: input_size {self.input_size} is outside {MIN_SIDE}..{MAX_SIDE} pixels a side")
        if not 1 <= self.feature_dim <= MAX_FEATURE_DIM:
            raise ArtifactError(f"metadata: feature_dim must be in 1..{MAX_FEATURE_DIM}, got {self.feature_dim}")
        if not all(math.isfinite(v) for v in self.mean + self.std) or not all(v > 0 for v in self.std):
            raise ArtifactError(f"metadata: mean and std must be finite and std > 0, got {self.mean} / {self.std}")
        if self.color_order not in COLOR_ORDERS:
            raise ArtifactError(f"metadata: color_order must be one of {COLOR_ORDERS}, got {str(self.color_order)[:20]!r}")
        if self.input_format not in INPUT_FORMATS:
            raise ArtifactError(f"metadata: input_format must be one of {INPUT_FORMATS}, got {self.input_format!r}")
        if self.precision not in PRECISIONS:
            raise ArtifactError(f"metadata: precision must be one of {PRECISIONS}, got {self.precision!r}")
        if len(self.input_size) != 2 or len(self.mean) != 3 or len(self.std) != 3:
            raise ArtifactError("metadata: input_size needs (H, W); mean and std need 3 values each")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict, source: str = "metadata") -> "ModelMeta":
        if not isinstance(d, dict):
            raise ArtifactError(f"{source}: osnet-edge metadata is not a JSON object (got {type(d).__name__})")
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("arch", "width", "input_size") if k not in d]
        if missing:
            raise ArtifactError(f"{source}: osnet-edge metadata lacks {', '.join(missing)}")
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except ArtifactError as exc:
            raise ArtifactError(f"{source}: {exc}") from None

    @classmethod
    def from_json(cls, text: str, source: str = "metadata") -> "ModelMeta":
        from .artifact_files import check_metadata_text

        try:
            d = json.loads(check_metadata_text(text, source))
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ArtifactError(f"{source}: osnet-edge metadata is not valid JSON ({str(exc)[:200]})") from None
        return cls.from_dict(d, source)

    def provenance_line(self) -> str:
        """One line saying where the weights came from and how the artifact was checked."""
        p = self.provenance or {}
        if not p:
            return "provenance unknown (no osnet-edge record in this file)"
        if p.get("weights") == "random init" or not p.get("trained", True):
            parts = [f"{'RANDOM INIT' if p.get('weights') == 'random init' else p.get('weights')} (untrained)"]
        else:
            parts = [f"{p.get('weights', '?')} sha256:{str(p.get('sha256', '?'))[:12]}"
                     + (f" ({p['trained_by']}, epoch {p.get('epoch', '?')})" if p.get("trained_by") else "")]
        par = p.get("parity")
        if isinstance(par, dict):
            parts.append(f"parity min cos {min(_num(par['min_cos']), 1.0):.6f}" if par.get("min_cos") is not None
                         else "parity not verified")
        fid = p.get("int8_fidelity")
        if isinstance(fid, dict):
            # gates switched off or lowered never read as a pass
            verdict = ("FAILED" if not fid.get("passed") else
                       "accepted with gates lowered: " + "; ".join(fid["gates_lowered"]) if fid.get("gates_lowered")
                       else "passed")
            parts.append(f"INT8 fidelity {verdict} (mean cos "
                         f"{_num(fid.get('cosine_mean')):.4f}, "
                         + (f"decisive top-1 {100 * _num(fid['decisive_top1']):.1f}%, "
                            if fid.get("decisive_top1") is not None else "")
                         + f"strict top-1 {100 * _num(fid.get('top1_agreement', 0)):.1f}%"
                         f"{', generated crops' if fid.get('generated') else ''})")
        return ", ".join(parts)

    def stem(self) -> str:
        """File name stem that says what the artifact is: osnet_x0_25_256x128_fp16."""
        return f"{self.arch}_{self.input_size[0]}x{self.input_size[1]}_{self.precision}"


def _num(value) -> float:
    """A number from a provenance record for printing (a file's record may hold anything): NaN if it is none."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
