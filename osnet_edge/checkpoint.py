"""Checkpoints: torchreid's files as they are, and ours (which also carry the model's metadata).

Everything is read with torch.load(weights_only=True): a file that needs arbitrary code to
unpickle is refused, never executed.
"""
from __future__ import annotations

import functools
import pickle
import sys
import zipfile
from pathlib import Path

import torch

from .artifact_files import file_sha256, model_file
from .errors import CheckpointError
from .metadata import ModelMeta
from .models.factory import FAMILIES, VARIANTS, arch_name, model_config, scaled_channels
from .models.osnet import OSNet

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")
# what a model built without weights says about itself
RANDOM_INIT = {"weights": "random init", "trained": False}


def _read(path) -> object:
    p = model_file(path, "weights file", CheckpointError)
    if p.stat().st_size == 0:
        raise CheckpointError(f"weights file is empty: {p}")
    _check_container(p)
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
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError, TypeError,
            AttributeError, MemoryError, OverflowError, RecursionError) as exc:
        # torch's unpickler raises whatever the bytes provoke (KeyError: 101 for a text file); all mean the same
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{p} is truncated or not a PyTorch checkpoint ({type(exc).__name__}: {first})") \
            from None


def _check_container(p: Path):
    """What torch.save writes: a zip of stored (uncompressed) members holding a data.pkl, or a legacy pickle
    (protocol 2+, first byte 0x80). Anything else is refused before the unpickler sees it, and a member that
    claims more bytes than the file has (a 'huge tensor' header) before anything is allocated for it."""
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(p) as zf:
                members = zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise CheckpointError(f"{p} is truncated or not a PyTorch checkpoint (a broken zip archive: {exc})") \
                from None
        if not any(m.filename.endswith("/data.pkl") or m.filename == "data.pkl" for m in members):
            raise CheckpointError(f"{p} is a zip archive but not a PyTorch checkpoint (it has no data.pkl)")
        for m in members:
            if m.compress_type != zipfile.ZIP_STORED or m.header_offset + m.file_size > size:
                raise CheckpointError(f"{p}: member {m.filename[:80]} declares {m.file_size} bytes "
                                      f"{'compressed' if m.compress_type != zipfile.ZIP_STORED else 'past the end'} "
                                      f"in a {size}-byte file; refused (torch.save writes members as they are)")
    elif head[:1] != b"\x80":
        kind = "text" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "binary data"
        raise CheckpointError(f"{p} is not a PyTorch checkpoint (it holds {kind} starting {head!r}, not the zip "
                              f"archive torch.save writes)")


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


# keys that say nothing about the architecture: the classifier follows the training set's identities, and
# BatchNorm's step counter is absent from some exports
def _architectural(key: str) -> bool:
    return not key.startswith("classifier.") and not key.endswith("num_batches_tracked")


@functools.lru_cache(maxsize=None)
def _reference_shapes(family: str, width: float) -> dict:
    """{key: shape} of the variant's state_dict, built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        ref = OSNet(model_config(None, width, family)[1]).state_dict()
    return {k: tuple(v.shape) for k, v in ref.items() if _architectural(k)}


def _differences(state: dict, ref: dict) -> tuple[list, list, list]:
    """(missing, unexpected, shape-mismatched) architectural keys of `state` against reference shapes."""
    keys = [k for k in state if _architectural(k)]
    missing = [k for k in ref if k not in state]
    unexpected = [k for k in keys if k not in ref]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {ref[k]}" for k in keys
                  if k in ref and tuple(state[k].shape) != ref[k]]
    return missing, unexpected, mismatched


def _difference_lines(missing, unexpected, mismatched) -> list:
    lines = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if keys:
            shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
            lines.append(f"  {label}: {shown}")
    return lines


# the first block of each stage ends in conv3 (its output width); conv1 and conv5 give the ends
_CHANNEL_KEYS = ("conv1.conv.weight", "conv2.0.conv3.conv.weight", "conv3.0.conv3.conv.weight", "conv5.conv.weight")


def width_for_channels(channels) -> float | None:
    """The width multiplier whose scaled_channels() are `channels`: a torchreid width if one fits, else the
    one with fewest decimals (several β round to the same channels; they build the same network)."""
    channels = tuple(int(c) for c in channels)
    for w in sorted({w for _, w in VARIANTS.values()}, reverse=True):
        if scaled_channels(w) == channels:
            return w
    estimate = channels[3] / 512
    for digits in (1, 2, 3, 4):
        step = 10 ** digits
        hits = [k / step for k in range(1, step + 1) if scaled_channels(k / step) == channels]
        if hits:
            return min(hits, key=lambda w: abs(w - estimate))
    return None


def _candidates(state: dict) -> list:
    """(arch, family, width) of every family at the width the file's channel counts imply."""
    if not all(k in state and state[k].dim() >= 1 for k in _CHANNEL_KEYS):
        return []
    width = width_for_channels(tuple(state[k].shape[0] for k in _CHANNEL_KEYS))
    return [] if width is None else [(arch_name(f, width), f, width) for f in FAMILIES]


def _closest(state: dict) -> tuple:
    """(arch, (missing, unexpected, mismatched)) of the variant nearest to `state`: the families at its
    implied width, then every torchreid variant."""
    pool = _candidates(state)
    pool += [(n, f, w) for n, (f, w) in VARIANTS.items() if n not in {c[0] for c in pool}]
    scored = [(c[0], _differences(state, _reference_shapes(c[1], c[2]))) for c in pool]
    return min(scored, key=lambda s: sum(len(d) for d in s[1]))


def infer_arch(state: dict, source="the state_dict") -> str:
    """The OSNet variant a bare state_dict (a torchreid model-zoo file) was saved from.

    Width comes from the channel counts, the family from the key names: osnet_ibn has affine
    InstanceNorm in the stem and IN keys in stage conv2, osnet_ain names its streams conv2.N.layers
    and its transitions pool2/pool3. A non-standard width comes back as e.g. 'osnet_x0_3'. Raises
    CheckpointError when two variants fit equally (name one) or none does (the closest and its differences).
    """
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    fits = [c[0] for c in _candidates(state) if not any(_differences(state, _reference_shapes(c[1], c[2])))]
    if len(fits) == 1:
        return fits[0]
    if len(fits) > 1:
        raise CheckpointError(f"{source} fits {' and '.join(fits)} equally: name the variant "
                              f"(--arch {fits[0]}, or build_model('{fits[0]}', weights=...))")
    name, diffs = _closest(state)
    why = ""
    if all(k in state and state[k].dim() >= 1 for k in _CHANNEL_KEYS) and not _candidates(state):
        why = f" (its channels {tuple(int(state[k].shape[0]) for k in _CHANNEL_KEYS)} come from no width multiplier)"
    raise CheckpointError("\n".join([f"{source} matches no OSNet variant{why}; the closest is {name}, which "
                                      f"differs in:"] + _difference_lines(*diffs)))


def checkpoint_arch(path) -> tuple[str, dict | None]:
    """(arch, meta) of a weights file: ours say it in their metadata, torchreid's are inferred from the keys."""
    obj = _read(path)
    meta = obj.get("meta") if isinstance(obj, dict) else None
    if isinstance(meta, dict) and meta.get("arch"):
        return meta["arch"], dict(meta)
    return infer_arch(_state_dict_of(obj, path), str(path)), None


def load_checkpoint(model, path, verbose: bool = True) -> dict:
    """Load weights into `model` from a torchreid or osnet-edge checkpoint.

    A classifier for another number of classes is dropped (with a one-line notice when the model has a
    classifier of its own, which then starts untrained; a feature extractor has none and needs no notice);
    every other missing, unexpected or mismatched key is an error that lists the keys and names the
    variant the file most likely belongs to. Sets model.provenance (the file's sha256, trained or not).
    Returns the file's metadata dict (or {}).
    """
    obj = _read(path)
    state = _state_dict_of(obj, path)
    own = model.state_dict()
    dropped = []
    their_classes = state["classifier.weight"].shape[0] if "classifier.weight" in state else None
    for key in ("classifier.weight", "classifier.bias"):
        if key in state and (key not in own or tuple(own[key].shape) != tuple(state[key].shape)):
            dropped.append(key)
            del state[key]
    # a file without a classifier (a feature extractor's weights) fits a model that has one: it starts untrained
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")
               and not k.startswith("classifier.")]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in state
                  if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        arch = getattr(model, "arch", type(model).__name__)
        closest = _closest(state)[0]
        lines = [f"{path} does not fit {arch}" + (f"; it most likely belongs to {closest}." if closest != arch
                                                  else " (the same variant, with other keys):")]
        raise CheckpointError("\n".join(lines + _difference_lines(missing, unexpected, mismatched)))
    model.load_state_dict(state, strict=False)
    if dropped and verbose and "classifier.weight" in own:
        print(f"note: {Path(path).name}: classifier dropped (trained for {their_classes} classes, this model has "
              f"{own['classifier.weight'].shape[0]}); the model's classifier starts untrained", file=sys.stderr)
    elif their_classes is None and verbose and "classifier.weight" in own:
        print(f"note: {Path(path).name} has no classifier (feature-extractor weights); the model's classifier "
              f"({own['classifier.weight'].shape[0]} classes) starts untrained", file=sys.stderr)
    meta = obj.get("meta") if isinstance(obj, dict) else None
    if isinstance(meta, dict) and meta.get("input_size"):
        model.input_size = tuple(meta["input_size"])
    earlier = meta.get("provenance") if isinstance(meta, dict) else None
    earlier = dict(earlier) if isinstance(earlier, dict) else {}
    # a file without our metadata (torchreid's zoo, a training run elsewhere) is taken as trained weights
    prov = {k: v for k, v in earlier.items() if k not in ("parity", "int8_fidelity", "weights", "sha256")}
    if earlier.get("sha256"):  # re-saved weights of another file: keep where they came from
        prov["derived_from"] = f"{earlier.get('weights')} sha256:{earlier['sha256']}"
    model.provenance = {**prov, "weights": Path(path).name, "sha256": file_sha256(path),
                        "trained": bool(earlier.get("trained", True))}
    return dict(meta) if isinstance(meta, dict) else {}


def model_meta(model, precision: str = "fp32") -> ModelMeta:
    """The metadata every artifact of this model carries (DESIGN.md's schema)."""
    return ModelMeta(arch=model.arch, width=model.width, input_size=tuple(model.input_size),
                     feature_dim=model.feature_dim, precision=precision,
                     provenance=dict(getattr(model, "provenance", None) or RANDOM_INIT))


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
