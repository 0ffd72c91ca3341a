"""QAT from a chosen NNCF range estimator with the loss weighted to the worst crops of each batch (and more epochs).

Usage: trial_x10_qat_hard.py ESTIMATOR FORMAT OUT.json EPOCHS TOPK RUN... (TOPK 0: the plain loss; EPOCHS 0:
post-training only, the estimator's ranges alone)."""
import sys, json, inspect, textwrap
from pathlib import Path
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from goals import run_facts
from torchreid_int8 import export_row
from nncf.quantization.range_estimator import RangeEstimatorParametersSet as R
from osnet_edge.export import quantize_openvino as qov, qat
from osnet_edge import build_model
est, fmt, out, epochs, topk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
runs = sys.argv[6:]
real_ptq, real_qat = qov.quantize_settings, qat._settings
def ptq(recipe, m, keep_fp32=()):
    kw = real_ptq(recipe, m, keep_fp32); kw["advanced_parameters"].activations_range_estimator_params = getattr(R, est); return kw
def qs():
    kw = real_qat(); kw["advanced_parameters"].activations_range_estimator_params = getattr(R, est); return kw
qov.quantize_settings, qat._settings = ptq, qs
src = textwrap.dedent(inspect.getsource(qat._finetune))
assert "loss = (1.0 - cos).mean()" in src
if topk:
    src = src.replace("loss = (1.0 - cos).mean()", f"loss = (1.0 - cos).mean() + torch.topk(1.0 - cos, min({topk}, len(cos))).values.mean()")
ns = dict(vars(qat)); exec(src, ns); qat._finetune = ns["_finetune"]
qat.DEFAULT_EPOCHS = epochs
rows = json.loads(Path(out).read_text()) if Path(out).exists() else []
for run in map(Path, runs):
    f = run_facts(run)
    model = build_model(None, weights=str(f["weights"]), input_size=f["imgsz"]).eval()
    work = run / f"trial_hard_{est}_{fmt}_{epochs}_{topk}"; work.mkdir(exist_ok=True)
    r, rep = export_row(model, f["weights"], f["imgsz"], fmt, "/work/data/vtest_crops", work,
                        f"{run.name} {fmt} {est} " + (f"qat{epochs} top{topk}" if epochs else "ptq"),
                        **({"qat": True, "qat_epochs": epochs} if epochs else {}))
    r["ptq"] = (rep.get("calibration") or {}).get("ptq")
    r["qat_history"] = (rep.get("calibration") or {}).get("qat_history")
    rows.append(r); Path(out).write_text(json.dumps(rows, indent=1, default=str))
