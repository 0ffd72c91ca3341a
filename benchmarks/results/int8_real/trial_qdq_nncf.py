"""Trial (not in the one command): the Q/DQ ONNX quantized by NNCF's ONNX backend with the OpenVINO recipe's
settings (min/max ranges, fast bias correction: the full BiasCorrection fails on this graph in nncf 3.4 with an
ONNX Runtime "duplicate definition-site" error), then the zero-point-0 rewrite, through export_model.

    python trial_qdq_nncf.py OUT.json ptq|qat [--per-tensor] RUN...

Without --per-tensor NNCF's CPU config gives the depthwise convolutions' inputs one scale per channel (INT8
with zero points, left as they are by the rewrite): not TensorRT's form, measured to see what that buys.
"""
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from goals import run_facts  # noqa: E402
from torchreid_int8 import export_row  # noqa: E402

from osnet_edge import build_model  # noqa: E402
from osnet_edge.export import quantize_onnx as qo  # noqa: E402

PER_TENSOR = "--per-tensor" in sys.argv
args = [a for a in sys.argv[1:] if a != "--per-tensor"]


def quantize_onnx_file_nncf(fp32_path, out_path, calib, meta, *, method="minmax", keep_fp32=(), keep_head=True,
                            activations="shifted"):
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters, OverflowFix,
                                                       QuantizationParameters)
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as d:
        pre = Path(d) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
        proto = onnx.load(str(pre))
    name = proto.graph.input[0].name
    items = [{name: b} for b in calib.batches(meta, 8)]
    adv = AdvancedQuantizationParameters(
        overflow_fix=OverflowFix.DISABLE, activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
        activations_quantization_params=QuantizationParameters(per_channel=False) if PER_TENSOR else None)
    q = nncf.quantize(proto, nncf.Dataset(items), subset_size=len(items), preset=nncf.QuantizationPreset.MIXED,
                      fast_bias_correction=True, advanced_parameters=adv,
                      ignored_scope=nncf.IgnoredScope(names=list(keep_fp32) + qo.head_nodes(proto), validate=False))
    onnx.save(q, str(out_path))
    if activations == "shifted":
        qo.zero_point_free(out_path)
    return Path(out_path)


qo.quantize_onnx_file = quantize_onnx_file_nncf
out, qat = Path(args[0]), args[1] == "qat"
rows = json.loads(out.read_text()) if out.exists() else []
for run in map(Path, args[2:]):
    f = run_facts(run)
    model = build_model(None, weights=str(f["weights"]), input_size=f["imgsz"]).eval()
    work = run / "trial_qdq_nncf"
    work.mkdir(exist_ok=True)
    r, rep = export_row(model, f["weights"], f["imgsz"], "onnx", "/work/data/vtest_crops", work,
                        f"{run.name} onnx nncf{' per-tensor' if PER_TENSOR else ''}", qat=qat)
    r["ptq"] = (rep.get("calibration") or {}).get("ptq")
    rows.append(r)
    out.write_text(json.dumps(rows, indent=1, default=str))
