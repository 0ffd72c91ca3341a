"""Checkpoints: torchreid's files as they are, and ours (which also carry the model's metadata).

Everything is read with torch.load(weights_only=True): a file that needs arbitrary code to
unpickle is refused, never executed.
"""
from __future__ import annotations

import pickle
import sys
import zipfile
from pathlib import Path

import torch

from .errors import CheckpointError
from .metadata import ModelMeta

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")


def _read(path) -> object:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights file not found: {p}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"weights file is empty: {p}")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc) or "GLOBAL" in str(exc):
            raise CheckpointError(
                f"refused to load {p}: it needs arbitrary Python code to unpickle ({first}). "
                f"Only tensors and plain containers are loaded; re-save it as a state_dict "
                f"(torch.save(model.state_dict(), path)) from code you trust"
            ) from None
        raise CheckpointError(f"{p} is not a readable PyTorch checkpoint ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{p} is truncated or not a PyTorch checkpoint ({first})") from None


def _state_dict_of(obj, path) -> dict:
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state_dict (expected a dict of tensors, or a dict with 'state_dict')")
    # DataParallel / DDP prefixes
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def read_checkpoint_meta(path) -> dict | None:
    """The 'meta' dict our checkpoints carry (arch, width, input size, normalisation), or None."""
    obj = _read(path)
    meta = obj.get("meta") if isinstance(obj, dict) else None
    return dict(meta) if isinstance(meta, dict) else None


def _guess_variant(state: dict) -> str:
    """Name the named variant whose keys and shapes the file matches best."""
    from .models.factory import VARIANTS, model_config
    from .models.osnet import OSNet

    best, best_score = None, -1
    with torch.device("meta"):
        for name in VARIANTS:
            ref = OSNet(model_config(name)[1]).state_dict()
            score = sum(1 for k, v in state.items() if k in ref and tuple(ref[k].shape) == tuple(v.shape))
            score -= sum(1 for k in state if k not in ref)
            if score > best_score:
                best, best_score = name, score
    return best


def load_checkpoint(model, path, verbose: bool = True) -> dict:
    """Load weights into `model` from a torchreid or osnet-edge checkpoint.

    A classifier for another number of classes (or a model without one) is dropped with a one-line
    notice; every other missing, unexpected or mismatched key is an error that lists the keys and
    names the variant the file most likely belongs to. Returns the file's metadata dict (or {}).
    """
    obj = _read(path)
    state = _state_dict_of(obj, path)
    own = model.state_dict()
    dropped = []
    for key in ("classifier.weight", "classifier.bias"):
        if key in state and (key not in own or tuple(own[key].shape) != tuple(state[key].shape)):
            dropped.append(key)
            del state[key]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")
               and not (dropped and k.startswith("classifier."))]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in state
                  if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        arch = getattr(model, "arch", type(model).__name__)
        lines = [f"{path} does not fit {arch}; it most likely belongs to {_guess_variant(state)}."]
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                lines.append(f"  {label}: {shown}")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state, strict=False)
    if dropped and verbose:
        print(f"note: {Path(path).name}: classifier dropped (it was trained for another class count)",
              file=sys.stderr)
    meta = obj.get("meta") if isinstance(obj, dict) else None
    if isinstance(meta, dict) and meta.get("input_size"):
        model.input_size = tuple(meta["input_size"])
    return dict(meta) if isinstance(meta, dict) else {}


def model_meta(model, precision: str = "fp32") -> ModelMeta:
    """The metadata every artifact of this model carries (DESIGN.md's schema)."""
    return ModelMeta(arch=model.arch, width=model.width, input_size=tuple(model.input_size),
                     feature_dim=model.feature_dim, precision=precision)


def atomic_save(obj, path) -> Path:
    """torch.save to a temporary file in the same folder, then rename: never a half-written file."""
    from .atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def save_checkpoint(model, path, **extra) -> Path:
    """Save {'state_dict', 'meta', **extra} (extra: epoch, optimizer, ... for resuming)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_save({"state_dict": state, "meta": model_meta(model).to_dict(), **extra}, path)
