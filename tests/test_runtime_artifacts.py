"""Shared, cached test artifacts for test_export.py and test_runtime.py (exported once per session).

Small on purpose: osnet_x0_25 at 64x32 (the smallest input OSNet's 16x downsampling allows comfortably),
seeded random weights. Exports go through the real CLI / export_model, so every artifact the runtime
tests use has passed the same verification users get.
"""
import atexit
import functools
import shutil
import tempfile
from pathlib import Path

INPUT = (64, 32)
ARCH = "osnet_x0_25"


@functools.lru_cache(maxsize=None)
def workdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="osnet-edge-test-"))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    return d


@functools.lru_cache(maxsize=None)
def model():
    import torch

    from osnet_edge import build_model

    torch.manual_seed(0)
    m = build_model(ARCH, input_size=INPUT).eval()
    # random BN statistics, so the fc/BN path is not an identity and a wrong export shows
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return m


@functools.lru_cache(maxsize=None)
def cli_export(fmt: str, half: bool = False):
    """Run osnet-export's main() and return (path, stdout). Seeded random weights: the CLI's own model."""
    import contextlib
    import io

    from osnet_edge.export.cli import main

    out = workdir() / f"cli_{fmt}_{'fp16' if half else 'fp32'}"
    out.mkdir()
    argv = ["--arch", ARCH, "--imgsz", str(INPUT[0]), str(INPUT[1]), "--format", fmt, "-o", str(out)]
    if half:
        argv.append("--half")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(argv)
    assert rc == 0, stderr.getvalue()
    files = sorted(p for p in out.iterdir() if p.suffix in (".onnx", ".xml"))
    assert len(files) == 1, files
    return files[0], stdout.getvalue(), stderr.getvalue()


@functools.lru_cache(maxsize=None)
def float_onnx():
    """ONNX with float NCHW input (what the TensorRT path consumes), verified through export_model."""
    from osnet_edge.export import export_model

    return export_model(model(), "onnx", workdir() / "float" / f"{ARCH}_float.onnx", input_format="float_nchw",
                        quiet=True)


def onnx_path():
    return cli_export("onnx")[0]


def openvino_path():
    return cli_export("openvino", half=True)[0]

