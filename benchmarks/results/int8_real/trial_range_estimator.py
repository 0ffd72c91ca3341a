"""Post-training INT8 (or with QAT) under a chosen NNCF activation range estimator.

Usage: trial_range_estimator.py ESTIMATOR FORMAT OUT.json ptq|qat RUN...  (work folders in RUN)"""
import sys, json
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from goals import run_facts
from torchreid_int8 import export_row
from nncf.quantization.range_estimator import RangeEstimatorParametersSet as R
from osnet_edge.export import quantize_openvino as qov, qat
from osnet_edge import build_model
est, fmt, out, doqat = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "qat"
runs = sys.argv[5:]
real_ptq, real_qat = qov.quantize_settings, qat._settings
def ptq(recipe, m, keep_fp32=()):
    kw = real_ptq(recipe, m, keep_fp32)
    kw["advanced_parameters"].activations_range_estimator_params = getattr(R, est)
    return kw
def qs():
    kw = real_qat(); kw["advanced_parameters"].activations_range_estimator_params = getattr(R, est); return kw
qov.quantize_settings, qat._settings = ptq, qs
rows = json.loads(Path(out).read_text()) if Path(out).exists() else []
for run in map(Path, runs):
    f = run_facts(run)
    model = build_model(None, weights=str(f["weights"]), input_size=f["imgsz"]).eval()
    work = run / f"trial_{est}_{fmt}_{doqat}"; work.mkdir(exist_ok=True)
    r, rep = export_row(model, f["weights"], f["imgsz"], fmt, "/work/data/vtest_crops", work,
                        f"{run.name} {fmt} {est} {'qat' if doqat else 'ptq'}", qat=doqat)
    rows.append(r); Path(out).write_text(json.dumps(rows, indent=1, default=str))
