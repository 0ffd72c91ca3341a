"""The OSNet family (torch)."""
from .factory import VARIANTS, build_model, check_input_size, model_config, parse_arch, scaled_channels
from .osnet import OSNet, OSNetConfig

__all__ = ["OSNet", "OSNetConfig", "VARIANTS", "build_model", "check_input_size", "model_config",
           "parse_arch", "scaled_channels"]
