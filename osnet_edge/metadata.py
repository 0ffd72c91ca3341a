"""The one metadata schema every artifact carries (ONNX metadata_props, OpenVINO rt_info, a JSON
sidecar next to a TensorRT engine, our checkpoints' 'meta'). Torch-free."""
from __future__ import annotations

import json
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
        self.input_size = tuple(int(v) for v in self.input_size)
        self.provenance = dict(self.provenance) if isinstance(self.provenance, dict) else {}
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
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
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("arch", "width", "input_size") if k not in d]
        if missing:
            raise ArtifactError(f"{source}: osnet-edge metadata lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_json(cls, text: str, source: str = "metadata") -> "ModelMeta":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{source}: osnet-edge metadata is not valid JSON ({exc})") from None
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
            parts.append(f"parity min cos {par['min_cos']:.7f}" if par.get("min_cos") is not None
                         else "parity not verified")
        fid = p.get("int8_fidelity")
        if isinstance(fid, dict):
            parts.append(f"INT8 fidelity {'passed' if fid.get('passed') else 'FAILED'} (mean cos "
                         f"{fid.get('cosine_mean', float('nan')):.4f}, top-1 {100 * fid.get('top1_agreement', 0):.1f}%"
                         f"{', generated crops' if fid.get('generated') else ''})")
        return ", ".join(parts)

    def stem(self) -> str:
        """File name stem that says what the artifact is: osnet_x0_25_256x128_fp16."""
        return f"{self.arch}_{self.input_size[0]}x{self.input_size[1]}_{self.precision}"
