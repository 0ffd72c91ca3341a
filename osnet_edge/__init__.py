"""osnet-edge: OSNet person re-ID from training to camera-end hardware.

`import osnet_edge` and the Embedder work without torch; the model family, checkpoints and
complexity need torch and are imported on first use.
"""
import sys
import types

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


class _Package(types.ModuleType):
    """Keeps the lazy *functions* as the package's attributes: importing a submodule of the same name
    (``osnet_edge.complexity``) would otherwise replace ``osnet_edge.complexity`` by the module."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and _LAZY.get(name, (None,))[0] == name:
            value = getattr(value, _LAZY[name][1])
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
