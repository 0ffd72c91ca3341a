"""OpenVINO IR (.xml + .bin) through openvino's own PyTorch converter; FP32 or FP16; metadata in rt_info."""
from __future__ import annotations

import warnings
from pathlib import Path

from osnet_edge.deps import require
from osnet_edge.metadata import META_KEY, ModelMeta


def export_openvino(model, path, *, half: bool = False, meta: ModelMeta | None = None,
                    input_format: str | None = None, via: str | None = None, opset: int = 18,
                    onnx_exporter: str | None = None, **_ignored) -> list:
    """Write `model` as OpenVINO IR at `path` (.xml; the .bin lands beside it). Returns [xml, bin].

    via: 'onnx' (default when the onnx package is installed) exports once with torch.onnx (onnx_exporter:
    'dynamo' or 'torchscript', as export_onnx) and hands the graph to ov.convert_model's ONNX frontend: several
    times faster than its PyTorch frontend and the very graph the ONNX artifact holds. 'pytorch':
    ov.convert_model on the module directly. Dynamic batch. half=True stores FP16 weights (compress_to_fp16);
    the runtime then computes in the device's preferred precision (FP16 on GPU/NPU, FP32 or BF16 on CPU). No
    verification here: export_model does it.
    """
    ov = require("openvino", "OpenVINO IR export")
    torch = require("torch", "OpenVINO IR export")
    from osnet_edge.checkpoint import model_meta

    if meta is None:
        meta = model_meta(model, precision="fp16" if half else "fp32")
        if input_format:
            meta.input_format = input_format
    if via is None:
        from osnet_edge.deps import available

        via = "onnx" if available("onnx") else "pytorch"
    if via == "onnx":
        ov_model = _convert_via_onnx(ov, model, meta, opset, onnx_exporter)
    elif via == "pytorch":
        ov_model = _convert_pytorch(ov, torch, model, meta)
    else:
        raise ValueError(f"via must be 'onnx' or 'pytorch', got {via!r}")
    from osnet_edge.export.graph import INPUT_NAME, OUTPUT_NAME

    ov_model.inputs[0].get_tensor().set_names({INPUT_NAME[meta.input_format]})
    ov_model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    ov_model.set_friendly_name(meta.stem())
    ov_model.set_rt_info(meta.to_json(), [META_KEY])
    xml = Path(path)
    ov.save_model(ov_model, str(xml), compress_to_fp16=bool(half))
    return [xml, xml.with_suffix(".bin")]


def _convert_pytorch(ov, torch, model, meta):
    from osnet_edge.export.graph import example_input, traceable

    module = traceable(model, meta)
    x = example_input(meta)
    shape = [-1, *x.shape[1:]]
    dtype = ov.Type.u8 if meta.input_format == "uint8_nhwc" else ov.Type.f32
    was_training = model.training
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on Python flags in forward(); constant by design
            return ov.convert_model(module, example_input=x, input=[(ov.PartialShape(shape), dtype)])
    finally:
        model.train(was_training)


def _convert_via_onnx(ov, model, meta, opset, exporter=None):
    import tempfile

    from osnet_edge.export.onnx_writer import export_onnx

    with tempfile.TemporaryDirectory(prefix="osnet-edge-ov-") as d:
        # FP32 graph: OpenVINO compresses weights to FP16 itself at save time
        onnx_meta = ModelMeta(**{**meta.to_dict(), "precision": "fp32"})
        path = export_onnx(model, Path(d) / "model.onnx", opset=opset, meta=onnx_meta, exporter=exporter)
        return ov.convert_model(str(path))


def write_openvino(model, tmp_path, meta: ModelMeta, *, half=False, opset=18, via=None, onnx_exporter=None,
                   **_options):
    """The 'openvino' writer of export_model."""
    return export_openvino(model, tmp_path, half=half, meta=meta, opset=opset, via=via, onnx_exporter=onnx_exporter)


write_openvino.default_input_format = "uint8_nhwc"
