"""INT8 on real footage: re-ID models trained on vtest.avi pseudo-identities, exported to INT8 the way a user would.

For each run folder (osnet-train output): the FP32 IR, then
    osnet-export --weights W --imgsz 128 64 --format openvino --int8 --calib market1501:DATA --qat
    osnet-export --weights W --imgsz 128 64 --format onnx     --int8 --calib market1501:DATA --qat
through the same library call the CLI makes (export_model), so a refused artifact's report is kept here too
(the CLI removes it with the artifact). Held-out = gallery + queries of the test tracklets (never trained on,
never calibrated on). Then osnet-bench FP32 IR vs INT8 IR.

    python benchmarks/results/int8_real/measure.py /work/data/runs/x025_ls /work/data/runs/x025_tri \
        --data /work/data/vtest_crops
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def export(weights, size, fmt, data, out, qat_epochs=None):
    from osnet_edge.export.api import export_model
    from osnet_edge.export.fidelity import FidelityError
    from osnet_edge.models import build_model

    model = build_model(None, weights=str(weights), input_size=size)
    cmd = (f"osnet-export --weights {weights} --imgsz {size[0]} {size[1]} --format {fmt} --int8 "
           f"--calib market1501:{data} --qat" + (f" --qat-epochs {qat_epochs}" if qat_epochs else ""))
    t0 = time.time()
    try:
        res = export_model(model, fmt, out, int8=True, calib=f"market1501:{data}", qat=True,
                           qat_epochs=qat_epochs, quiet=False)
        rep = json.loads(next(p for p in res.files if p.name.endswith(".fidelity.json")).read_text())
        artifact = str(res.path)
    except FidelityError as e:
        rep, artifact = e.report.to_dict(), None
    rep["command"], rep["wall_s"], rep["kept_artifact"] = cmd, round(time.time() - t0, 1), artifact
    return rep


def main():
    p = argparse.ArgumentParser()
    p.add_argument("runs", nargs="+")
    p.add_argument("--data", required=True)
    p.add_argument("--imgsz", type=int, nargs=2, default=(128, 64))
    p.add_argument("--formats", default="openvino,onnx")
    p.add_argument("--qat-epochs", type=int, default=None)
    p.add_argument("--no-bench", action="store_true")
    a = p.parse_args()
    from osnet_edge.export.api import export_model
    from osnet_edge.models import build_model

    for run in map(Path, a.runs):
        weights = run / "model-best.pth"
        out = run / "int8"
        out.mkdir(exist_ok=True)
        name = run.name
        for fmt in a.formats.split(","):
            rep = export(weights, tuple(a.imgsz), fmt, a.data, out, a.qat_epochs)
            path = HERE / f"{name}_{fmt}.json"
            path.write_text(json.dumps(rep, indent=2, default=str))
            print(f"wrote {path}", file=sys.stderr)
        if a.no_bench:
            continue
        fp32 = export_model(build_model(None, weights=str(weights), input_size=tuple(a.imgsz)), "openvino",
                            out / "fp32.xml").path
        int8 = sorted(out.glob("*int8*.xml"))
        if int8:
            subprocess.run(["osnet-bench", str(fp32), str(int8[-1]), "--batch", "1,8,32", "--threads", "2",
                            "--json", str(HERE / f"{name}_bench.json"), "--plot", str(HERE / f"{name}_bench.png")],
                           check=False)


if __name__ == "__main__":
    main()
