"""Symmetric against asymmetric INT8 activations in the OpenVINO recipe, on models of both training pipelines:
the one-command path (`osnet-export --format openvino --int8 --calib market1501:DATA`, default gates) with
`recipe="reid-symmetric"` (the recipe before: NNCF's PERFORMANCE preset) and `recipe="reid"` (MIXED preset:
asymmetric activations, all else equal: MinMax ranges, full bias correction, head FP32, first-layer overflow fix).

    NNCF_EXTENSION_LOAD_TIMEOUT=0 nice -n 5 .venv/bin/python -W ignore benchmarks/results/int8_real/activation_sign.py \
        /work/data/int8_torchreid/tr_tri /work/data/int8_torchreid/tr_ls /work/data/runs/x025_tri \
        /work/data/runs/x025_ls --data /work/data/vtest_crops                       # -> activation_sign.json

A run folder holds model.pth (train_torchreid.py) or model-best.pth / model-final.pth (osnet-train).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def weights_of(run: Path) -> Path:
    for name in ("model.pth", "model-best.pth", "model-final.pth"):
        if (run / name).is_file():
            return run / name
    raise SystemExit(f"{run}: no model.pth / model-best.pth / model-final.pth")


def main() -> int:
    from osnet_edge import build_model
    from torchreid_int8 import export_row

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+")
    p.add_argument("--data", required=True)
    p.add_argument("--imgsz", type=int, nargs=2, default=(128, 64))
    p.add_argument("--recipes", nargs="+", default=["reid-symmetric", "reid"])
    p.add_argument("--json", default=str(HERE / "activation_sign.json"))
    a = p.parse_args()
    out = Path(a.json)
    rows = json.loads(out.read_text())["rows"] if out.exists() else []
    done = {(r["run"], r["recipe"]) for r in rows}
    for run in map(Path, a.runs):
        w = weights_of(run)
        model = build_model(None, weights=str(w), input_size=tuple(a.imgsz)).eval()
        for recipe in a.recipes:
            if (str(run), recipe) in done:
                continue
            work = run / f"int8_{recipe}"
            work.mkdir(exist_ok=True)
            r, _ = export_row(model, w, tuple(a.imgsz), "openvino", a.data, work, f"{run.name} {recipe}",
                              recipe=recipe)
            # the recipe is an export_model option, not an osnet-export flag ("reid" is the default)
            r["command"] = r["command"].replace(f" --recipe {recipe}", "") + (
                "" if recipe == "reid" else f"   # export_model(..., recipe={recipe!r})")
            rows.append({"run": str(run), "recipe": recipe, **r})
            out.write_text(json.dumps({"rows": rows}, indent=1, default=str))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
