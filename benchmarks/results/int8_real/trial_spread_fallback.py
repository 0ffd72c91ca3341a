"""OpenVINO INT8 with the K convolutions named in LAYERS (torch names, highest activation spread first) kept in float.

Usage: trial_spread_fallback.py RUN K OUT.json LAYER,LAYER,...  (work folder in RUN)"""
import sys, json, re
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from goals import run_facts
from torchreid_int8 import export_row
from osnet_edge import build_model

run, k, out = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
layers = sys.argv[4].split(",")[:k]
f = run_facts(run)
model = build_model(None, weights=str(f["weights"]), input_size=f["imgsz"]).eval()
from osnet_edge.checkpoint import model_meta
from osnet_edge.export.quantize_openvino import fp32_ov_model
ovm = fp32_ov_model(model, model_meta(model, precision="fp32"))
convs = [op.get_friendly_name() for op in ovm.get_ordered_ops()
         if op.get_type_name() in ("Convolution", "GroupConvolution")]
keep = []
for l in layers:
    parts, toks = l.split("."), []
    for i, q in enumerate(parts):
        toks.append(parts[i - 1] + "." + q if q.isdigit() else q)
    pre = "/" + "/".join(toks) + "/Conv"
    hit = [c for c in convs if c == pre or c == pre + "/WithoutBiases"]
    assert len(hit) == 1, (l, hit[:3]); keep.append("/model" + hit[0])
print(keep)
work = run / f"trial_fallback{k}"; work.mkdir(exist_ok=True)
r, rep = export_row(model, f["weights"], f["imgsz"], "openvino", "/work/data/vtest_crops", work,
                    f"{run.name} openvino fallback{k}", keep_fp32=keep)
rows = json.loads(Path(out).read_text()) if Path(out).exists() else []
rows.append(r); Path(out).write_text(json.dumps(rows, indent=1, default=str))
