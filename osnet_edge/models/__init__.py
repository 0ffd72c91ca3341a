"""The OSNet family (torch)."""
from .factory import VARIANTS, check_input_size, model_config, parse_arch, scaled_channels
from .osnet import OSNet, OSNetConfig

__all__ = ["OSNet", "OSNetConfig", "VARIANTS", "build_model", "check_input_size", "model_config",
           "parse_arch", "scaled_channels"]


def __getattr__(name):
    # build_model reads checkpoints, and the checkpoint reader imports this package's variant table: loaded on
    # first use, so importing either first works and neither module imports the other
    if name == "build_model":
        from .build import build_model

        return build_model
    raise AttributeError(f"module 'osnet_edge.models' has no attribute {name!r}")
