"""An engine from an ONNX exported by osnet-export, without torch: the Jetson path (export the ONNX on a desktop,
build the engine on the device it will run on).

    python -c 'from osnet_edge.export.tensorrt import engine_from_onnx; engine_from_onnx("m_fp32.onnx", half=True)'
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from osnet_edge.errors import ArtifactError, ModelConfigError
from osnet_edge.export.tensorrt_build import build_engine, build_kwargs
from osnet_edge.runtime.tensorrt_common import import_tensorrt


def engine_from_onnx(onnx_path, output=None, *, half: bool = False, int8: bool = False, calib=None,
                     max_batch: int = 32, verify: bool = True, batch_sizes=(1, 31), quiet: bool = False,
                     **options) -> Path:
    """Build an engine from an ONNX exported by osnet-export (its metadata travels into the sidecar), without
    torch: the Jetson path (export the ONNX on a desktop, build the engine on the device it will run on).

    verify compares the engine with the same ONNX under ONNX Runtime (CPU) on generated crops, with the
    precision's parity threshold; the engine is written to a temporary name and renamed only when it passes.
    An ONNX with Q/DQ nodes builds as explicit INT8 (int8=True, no calib needed).
    """
    import secrets

    from osnet_edge.export.api import PARITY_THRESHOLDS, VerificationError
    from osnet_edge.export.onnx_writer import read_onnx_meta

    import_tensorrt("TensorRT engines", options.get("device"))
    onnx_path = Path(onnx_path)
    meta = read_onnx_meta(onnx_path)
    if meta is None:
        raise ArtifactError(f"{onnx_path} carries no osnet-edge metadata; export it with osnet-export --format onnx")
    if half and int8:
        raise ModelConfigError("choose one of --half (FP16) and --int8")
    meta = replace(meta, precision="int8" if int8 else "fp16" if half else "fp32")
    out = Path(output) if output else onnx_path.with_name(f"{meta.stem()}.engine")
    if out.is_dir():
        out = out / f"{meta.stem()}.engine"
    tmp = out.with_name(f".{out.stem}.{secrets.token_hex(4)}.partial{out.suffix}")
    written = []
    try:
        written = build_engine(onnx_path, tmp, meta, max_batch=max_batch, calib=calib, quiet=quiet,
                               **build_kwargs(options))
        if verify:
            from osnet_edge.runtime.embedder import Embedder
            from osnet_edge.synthetic import synthetic_crops

            need = PARITY_THRESHOLDS[meta.precision]
            with Embedder(str(onnx_path), device="cpu") as ref, Embedder(str(tmp)) as eng:
                for b in batch_sizes:
                    b = min(int(b), max_batch)
                    crops = list(synthetic_crops(b, seed=b))
                    cos = float(np.min(np.sum(ref.embed(crops) * eng.embed(crops), axis=1)))
                    if cos < need:
                        raise VerificationError(f"{meta.precision} engine from {onnx_path} failed verification at "
                                                f"batch {b}: min cosine {cos:.6f} < {need} against ONNX Runtime. "
                                                f"Nothing was written to {out}")
        finals = []
        for p in written:
            final = out.with_name(out.name + p.name[len(tmp.name):])
            os.replace(p, final)
            finals.append(final)
    except BaseException:
        for p in written + [tmp]:
            Path(p).unlink(missing_ok=True)
        raise
    return finals[0]
