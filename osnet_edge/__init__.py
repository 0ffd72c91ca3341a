"""osnet-edge: OSNet person re-ID from training to camera-end hardware.

`import osnet_edge` and the Embedder work without torch; the model family, checkpoints and
complexity need torch and are imported on first use.
"""
from ._version import __version__
from .errors import (ArtifactError, CheckpointError, InputError, MissingDependencyError, ModelConfigError,
                     OsnetEdgeError)

_LAZY = {
    "build_model": ("models", "build_model"),
    "load_checkpoint": ("checkpoint", "load_checkpoint"),
    "save_checkpoint": ("checkpoint", "save_checkpoint"),
    "complexity": ("complexity", "complexity"),
    "Embedder": ("runtime", "Embedder"),
}

__all__ = ["__version__", "build_model", "load_checkpoint", "save_checkpoint", "complexity", "Embedder",
           "OsnetEdgeError", "ArtifactError", "CheckpointError", "InputError", "MissingDependencyError",
           "ModelConfigError"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        if mod in ("models", "checkpoint", "complexity"):
            from .deps import require

            require("torch", f"osnet_edge.{name}")
        value = getattr(importlib.import_module(f".{mod}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'osnet_edge' has no attribute {name!r}")
