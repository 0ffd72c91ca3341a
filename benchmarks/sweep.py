"""The paper's Table 6 grid (β x ρ), each point built, exported and measured.

Params and Mult-Adds are counted here (osnet_edge.complexity, the same counter as --table6); the
rank-1 / mAP columns are the paper's published Market1501 numbers (PAPER_TABLE6), since accuracy
is not something a speed benchmark can measure on random weights. Speed does not depend on the
weights' values, so points are built with random initialisation.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from osnet_edge.errors import OsnetEdgeError

PAPER_WIDTHS = (1.0, 0.75, 0.5, 0.25)
PAPER_RESOLUTIONS = (1.0, 0.75, 0.5, 0.25)
FORMATS = ("onnx", "openvino", "trt", "pytorch")
SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "trt": ".engine", "pytorch": ".pth"}


def grid(widths=PAPER_WIDTHS, resolutions=PAPER_RESOLUTIONS):
    """(β, ρ, (H, W)) points; input is 256ρ x 128ρ as in the paper."""
    return [(w, r, (int(round(256 * r)), int(round(128 * r)))) for w in widths for r in resolutions]


def export_point(model, fmt: str, precision: str, out_dir: Path, calib=None, verify: bool = True) -> Path:
    """One grid point as an artifact of fmt/precision, through the SDK's exporter (or a checkpoint)."""
    from osnet_edge.checkpoint import model_meta, save_checkpoint

    stem = model_meta(model, precision).stem()
    if fmt == "pytorch":
        if precision != "fp32":
            raise OsnetEdgeError("--sweep --format pytorch measures fp32 only (eager FP32 is the baseline)")
        return save_checkpoint(model, out_dir / f"{stem}.pth")
    try:
        from osnet_edge.export import export_model
    except ImportError as exc:
        raise OsnetEdgeError(f"--sweep --format {fmt} needs osnet_edge.export ({exc})") from None
    result = export_model(model, fmt, output=str(out_dir / f"{stem}{SUFFIX[fmt]}"), half=precision == "fp16",
                          int8=precision == "int8", calib=calib if precision == "int8" else None, verify=verify, quiet=True)
    return Path(getattr(result, "path", result))


def run_sweep(bench, fmt="onnx", precision="fp32", widths=PAPER_WIDTHS, resolutions=PAPER_RESOLUTIONS,
              out_dir=None, progress=None, calib=None, verify=True) -> list[dict]:
    """Build, export and measure every point; rows land in bench.rows as they are measured."""
    from osnet_edge.complexity import PAPER_TABLE6
    from osnet_edge.models import build_model

    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="osnet-sweep-")
        out_dir = Path(tmp.name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        for beta, rho, size in grid(widths, resolutions):
            paper = PAPER_TABLE6.get((beta, rho))
            model = build_model(width=beta, input_size=size).eval()
            if progress is not None:
                progress.set_description(f"exporting β={beta} ρ={rho} ({fmt} {precision})")
            path = export_point(model, fmt, precision, out_dir, calib=calib, verify=verify)
            bench.run_artifact(path, name=f"β={beta} ρ={rho} {fmt} {precision}", beta=beta, rho=rho,
                               paper_params_m=paper[0] if paper else None,
                               paper_mult_adds_m=paper[1] if paper else None,
                               paper_r1=paper[2] if paper else None, paper_map=paper[3] if paper else None)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return bench.rows
