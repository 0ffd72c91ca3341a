"""build_model: a variant's network, with weights from a checkpoint. Above both the variant table (factory) and
the checkpoint reader, which needs that table to name the variant a file belongs to."""
from __future__ import annotations

from ..checkpoint import RANDOM_INIT, checkpoint_arch, load_checkpoint
from ..errors import ModelConfigError
from .factory import DEFAULT_INPUT_SIZE, check_input_size, model_config, parse_arch
from .osnet import OSNet


def build_model(name: str | None = None, *, width: float | None = None, family: str | None = None,
                num_classes: int = 0, weights: str | None = None, loss: str = "softmax",
                input_size=None) -> OSNet:
    """Build an OSNet variant by torchreid name or by width multiplier β.

    weights: a torchreid checkpoint (model zoo or training) or one of ours. Ours carry their
    architecture and torchreid's is inferred from the state_dict (checkpoint.infer_arch), so
    build_model(weights=path) alone rebuilds the network a file was saved from.
    """
    meta = None
    if weights is not None and name is None and width is None:
        # ours carry their architecture; a torchreid file's is read from its key names and shapes
        name, meta = checkpoint_arch(weights)
        if family is not None:  # the family was named: keep the file's width only
            name, width = None, parse_arch(name)[1]
    arch, cfg = model_config(name, width, family)
    if num_classes < 0:
        raise ModelConfigError(f"num_classes must be >= 0, got {num_classes}")
    model = OSNet(cfg, num_classes=num_classes, loss=loss)
    model.arch = arch
    model.width = parse_arch(arch)[1]
    size = input_size or (meta or {}).get("input_size") or DEFAULT_INPUT_SIZE
    model.input_size = check_input_size(size)
    model.provenance = dict(RANDOM_INIT)  # load_checkpoint replaces it with the file's
    if weights is not None:
        load_checkpoint(model, weights)  # sets the size the file was trained at
        if input_size:  # an explicit size wins: a network trained at 128x64 may be deployed at 256x128
            model.input_size = check_input_size(input_size)
    return model
