"""Verification: embeddings from an artifact against the PyTorch model on the same crops.

Both sides go through the one preprocessing (preprocess.to_batch): the artifact through Embedder(path),
exactly as users will run it, the model through to_batch(..., 'float_nchw') and a plain forward pass.
Each batch size runs as ONE call of that size (no sub-batching), because the failure this catches is an
export that is right at batch 1 and wrong at larger batches.
"""
from __future__ import annotations

import sys

import numpy as np

from osnet_edge.errors import ArtifactError

DEFAULT_BATCHES = (1, 33)


def reference_embeddings(model, crops) -> np.ndarray:
    """L2-normalised PyTorch embeddings of crops (eval mode, FP32, the model's own device)."""
    import torch

    from osnet_edge.checkpoint import model_meta
    from osnet_edge.preprocess import to_batch
    from osnet_edge.runtime.embedder import l2_normalize

    meta = model_meta(model)
    x = to_batch(crops, meta.input_size, meta.mean, meta.std, meta.color_order, "float_nchw")
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        with torch.inference_mode():
            feats = model(torch.from_numpy(x).to(p.device, torch.float32)).float().cpu().numpy()
    finally:
        model.train(was_training)
    return l2_normalize(np.ascontiguousarray(feats, np.float32))


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity (rows need not be normalised), clipped to [-1, 1]: float32 rounding otherwise
    reports identical rows as 1.0000001."""
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return np.clip((a * b).sum(1) / np.maximum(na * nb, 1e-12), -1.0, 1.0)


def verify_artifact(path, model, crops=None, batch_sizes=DEFAULT_BATCHES, device=None, quiet=True, label=None,
                    **embedder_options) -> dict:
    """Compare Embedder(path) with `model` on the same crops at each batch size.

    crops: list of uint8 BGR crops (default: synthetic_crops(max(batch_sizes), seed=0)).
    quiet=False prints one line per batch size, naming the artifact `label` (default: its path).
    Returns {'batch_1': {'min_cos', 'mean_cos', 'n'}, 'batch_33': {...}, 'min_cos', 'mean_cos'} where the
    overall figures are the min / mean over every compared crop. Raises ArtifactError if the artifact's
    metadata does not describe this model (other input size or feature size).
    """
    from osnet_edge.runtime import Embedder

    sizes = tuple(int(b) for b in batch_sizes)
    if not sizes or min(sizes) < 1:
        raise ValueError(f"batch_sizes must be positive, got {batch_sizes}")
    if crops is None:
        from osnet_edge.synthetic import synthetic_crops

        crops = synthetic_crops(max(sizes), seed=0)
    if len(crops) < max(sizes):
        raise ValueError(f"verification at batch {max(sizes)} needs as many crops, got {len(crops)}")
    ref = reference_embeddings(model, crops[:max(sizes)])
    result, all_cos = {}, []
    with Embedder(path, device=device, batch_size=max(sizes), **embedder_options) as emb:
        want = tuple(model.input_size)
        if tuple(emb.input_size) != want or emb.feature_dim != ref.shape[1]:
            raise ArtifactError(f"{path}: its metadata says input {emb.input_size}, {emb.feature_dim}-D; the model "
                                f"is {want}, {ref.shape[1]}-D")
        for b in sizes:
            feats = emb.embed(crops[:b])
            if not np.isfinite(feats).all():
                cos = np.full(b, -1.0)  # NaN/Inf output: a failed export, never a pass
            else:
                cos = cosine_rows(feats, ref[:b])
            result[f"batch_{b}"] = {"min_cos": float(cos.min()), "mean_cos": float(cos.mean()), "n": b}
            all_cos.append(cos)
            if not quiet:
                print(f"  verify {label or path}: batch {b:3d} vs PyTorch  min cos {cos.min():.6f}  "
                      f"mean {cos.mean():.6f}", file=sys.stderr)
    cat = np.concatenate(all_cos)
    result["min_cos"], result["mean_cos"] = float(cat.min()), float(cat.mean())
    return result
