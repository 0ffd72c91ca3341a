"""OpenVINO INT8 with the K convolutions named in LAYERS (torch names, highest activation spread first) kept in float.

Usage: trial_spread_fallback.py RUN K OUT.json LAYER,LAYER,...  (work folder in RUN)"""
import sys, json
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from goals import run_facts
from torchreid_int8 import export_row, ir_names
from osnet_edge import build_model

run, k, out = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
layers = sys.argv[4].split(",")[:k]
f = run_facts(run)
model = build_model(None, weights=str(f["weights"]), input_size=f["imgsz"]).eval()
from osnet_edge.checkpoint import model_meta
from osnet_edge.export import quantize_openvino as qov
from osnet_edge.export.openvino_ir_ops import CONV_TYPES
meta = model_meta(model, "fp32")
meta.input_format = "uint8_nhwc"  # the export's graph (normalisation inside), whose op names keep_fp32 takes
ovm = qov.fp32_ov_model(model, meta)
keep = ir_names([op.get_friendly_name() for op in ovm.get_ordered_ops() if op.get_type_name() in CONV_TYPES], layers)
assert len(keep) == len(layers), (layers, keep)
print(keep)
work = run / f"trial_fallback{k}"; work.mkdir(exist_ok=True)
r, rep = export_row(model, f["weights"], f["imgsz"], "openvino", "/work/data/vtest_crops", work,
                    f"{run.name} openvino fallback{k}", keep_fp32=keep)
rows = json.loads(Path(out).read_text()) if Path(out).exists() else []
rows.append(r); Path(out).write_text(json.dumps(rows, indent=1, default=str))
