"""osnet_edge.export: ONNX / OpenVINO IR / TensorRT writers, each verified against PyTorch.

    from osnet_edge import build_model
    from osnet_edge.export import export_model
    res = export_model(build_model("osnet_x0_25", weights="w.pth"), "openvino", half=True)
    print(res.path, res.parity["min_cos"])

Formats are writers in a registry (register_writer); ONNX and OpenVINO are registered here,
TensorRT and INT8 register themselves from their modules when those are installed.
"""
from osnet_edge.export.api import (DEFAULT_VERIFY_BATCHES, INT8_WRITERS, PARITY_THRESHOLDS, PENDING, SUFFIXES, WRITERS, ExportResult,
                  VerificationError, default_output, export_model, formats, register_writer)
from osnet_edge.export.onnx_writer import export_onnx, read_onnx_meta, write_onnx
from osnet_edge.export.openvino_writer import export_openvino, write_openvino

register_writer("onnx", write_onnx, ".onnx")
register_writer("openvino", write_openvino, ".xml")


def _load_optional_writers():
    """Modules of later issues register their writers on import (export/tensorrt.py, export/quantize*.py)."""
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith(("tensorrt", "quantize")):
            try:
                importlib.import_module(f"{__name__}.{mod.name}")
            except ImportError:
                pass  # their own dependency is missing: the format stays pending with its one-line message


_load_optional_writers()

__all__ = ["export_model", "export_onnx", "export_openvino", "register_writer", "ExportResult", "VerificationError",
           "WRITERS", "INT8_WRITERS", "SUFFIXES", "PENDING", "PARITY_THRESHOLDS", "DEFAULT_VERIFY_BATCHES",
           "default_output", "formats", "read_onnx_meta"]
