"""Noise floor of the strict top-1 agreement: the INT8 fidelity report applied to an FP32 and an FP16 IR (no
quantization). Writes mixed_float_floor.json.

    nice -n 19 .venv/bin/python benchmarks/results/int8_real/mixed_floor.py
"""
import json
from pathlib import Path

from osnet_edge.calibration import sources
from osnet_edge.export import export_model
from osnet_edge.export import fidelity as fid
from osnet_edge.models import build_model
out = {}
for run in ("x025_tri", "x025_ls"):
    model = build_model(None, weights=f"/work/data/runs/{run}/model-best.pth", input_size=(128, 64))
    split = sources.calibration_split("market1501:/work/data/vtest_crops", seed=0)
    d = Path(f"/work/data/runs/{run}/int8/mixed"); d.mkdir(parents=True, exist_ok=True)
    for half in (False, True):
        res = export_model(model, "openvino", d / f"ref_{'fp16' if half else 'fp32'}.xml", half=half, quiet=True)
        rep = fid.fidelity_report(model, str(res.path), split.held_out, split.query)
        r = rep.retrieval
        out[f"{run}_{'fp16' if half else 'fp32'}"] = {"cosine_mean": rep.cosine_mean, "cosine_min": rep.cosine_min,
            "top1": rep.top1_agreement, "identity": rep.extra.get("top1_identity_agreement"),
            "rank1": [r["fp32"]["rank1"], r["int8"]["rank1"]], "mAP": [r["fp32"]["mAP"], r["int8"]["mAP"]]}
        print(run, half, out[f"{run}_{'fp16' if half else 'fp32'}"], flush=True)
(Path(__file__).resolve().parent / "mixed_float_floor.json").write_text(json.dumps(out, indent=1))
