"""What 8 bits can reach at all on the vtest.avi models, and where the x0_25 triplet model's min cosine is lost.

The same 400 held-out crops and 300 calibration crops as measure.py (`calibration_split` on market1501:DATA).
Each row fake-quantizes the PyTorch model the way the INT8 IR runs it (../int8/bitwidth_sim.py: per-tensor
min/max activation ranges from the calibration crops, per-channel symmetric weights, gates and head float)
with one thing changed at a time (activation bits; weights only; activations only), and scores it against FP32
with the fidelity report's metrics. Then, per model, the calibration coverage: how far the held-out crops'
activations go past the calibration range (worst layers), and 16-bit activations with the calibration ranges
(only clipping left) against the held-out crops' own ranges (oracle), and what widening the ranges to cover
more costs at 8 bits (every range x1.25; ranges from the calibration crops plus brightness or contrast copies).
One more row adds isotropic Gaussian noise to the FP32 embeddings instead (relative L2 size 0.05, mean cosine
~0.9988): a perturbation of INT8's size that is not INT8's shape.

    python benchmarks/results/int8_real/bounds.py /work/data/runs/x10_tri /work/data/runs/x10_ls \
        /work/data/runs/x025_tri /work/data/runs/x025_ls --data /work/data/vtest_crops      # -> bounds.json
    python benchmarks/results/int8_real/bounds.py /work/data/runs/x025_tri_256 /work/data/runs/x025_ls_256 \
        --data /work/data/vtest_crops --imgsz 256 128                                         # added to it
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "int8"))
import bitwidth_sim as sim  # noqa: E402

from osnet_edge import build_model  # noqa: E402
from osnet_edge.calibration import calibration_split  # noqa: E402
from osnet_edge.checkpoint import model_meta  # noqa: E402
from osnet_edge.export.fidelity_metrics import embedding_agreement  # noqa: E402
from osnet_edge.preprocess import to_batch  # noqa: E402

SETTINGS = [  # label, activation bits (None: float, "fp16": FP16 rounding), weight bits (0: float)
    ("FP16 weights + activations", "fp16", 0), ("8-bit act + 8-bit w (the IR)", 8, 8),
    ("8-bit act only", 8, 0), ("8-bit weights only", None, 8), ("10-bit act + 8-bit w", 10, 8),
    ("12-bit act + 8-bit w", 12, 8), ("16-bit act only", 16, 0)]


def bright(crop, delta):
    return np.clip(crop.astype(np.int16) + delta, 0, 255).astype(np.uint8)


def contrast(crop, k):
    return np.clip((crop.astype(np.float32) - crop.mean()) * k + crop.mean(), 0, 255).astype(np.uint8)


def score(ref, test, pids) -> dict:
    a = embedding_agreement(ref, test)
    return {"cosine_mean": round(a["cosine_mean"], 5), "cosine_min": round(a["cosine_min"], 4),
            "top1_agreement": a["top1_agreement"],
            "identity_agreement": float(np.mean(pids[a["nn_ref"]] == pids[a["nn_test"]]))}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("runs", nargs="+")
    p.add_argument("--data", required=True)
    p.add_argument("--imgsz", type=int, nargs=2, default=(128, 64))
    a = p.parse_args()
    torch.set_num_threads(2)
    split = calibration_split(f"market1501:{a.data}", progress=False)
    held = list(split.held_out.crops) + list(split.query.crops)
    pids = np.concatenate([split.held_out.pids, split.query.pids])
    path = HERE / "bounds.json"  # runs are added to (or replace their entry in) what earlier calls measured
    out = json.loads(path.read_text()) if path.is_file() else {"models": {}}
    out.update(held_out_crops=len(held), calibration_crops=len(split.calib))
    for run in map(Path, a.runs):
        model = build_model(weights=str(run / "model-best.pth"), input_size=tuple(a.imgsz)).eval()
        m = model_meta(model)

        def batches(crops):
            return [torch.from_numpy(to_batch(crops[i:i + 64], m.input_size, m.mean, m.std, m.color_order))
                    for i in range(0, len(crops), 64)]

        base = list(split.calib.crops)
        cal, test = batches(base), batches(held)

        def embed(net):
            with torch.no_grad():
                return np.concatenate([net(b).numpy() for b in test])

        ref = embed(model)
        noise = np.random.default_rng(0).normal(0, 0.05 / np.sqrt(ref.shape[1]), ref.shape)
        unit = ref / np.linalg.norm(ref, axis=1, keepdims=True)
        rows_noise = score(ref, unit + noise, pids)
        print(run.name, f"{'isotropic noise (0.05)':30s}", rows_noise, flush=True)
        r_cal, r_held = sim.input_ranges(model, cal), sim.input_ranges(model, test)
        rows = {"isotropic noise, relative size 0.05": rows_noise}
        for label, bits, wbits in SETTINGS:
            net = sim.fp16_rounded(model) if bits == "fp16" else sim.fake_quantize(model, r_cal, bits, wbits)
            rows[label] = score(ref, embed(net), pids)
            print(run.name, f"{label:30s}", rows[label], flush=True)
        over = sorted(((r_held[n][1] / max(r_cal[n][1], 1e-12), n) for n in r_cal), reverse=True)[:5]
        oracle = {n: (min(r_cal[n][0], r_held[n][0]), max(r_cal[n][1], r_held[n][1])) for n in r_cal}
        coverage = {"held_max_over_calib_max": [[n, round(r, 2)] for r, n in over],
                    "16-bit act, calibration ranges": score(ref, embed(sim.fake_quantize(model, r_cal, 16, 0)), pids),
                    "16-bit act, held-out ranges (oracle)": score(ref, embed(sim.fake_quantize(model, oracle, 16, 0)),
                                                                  pids)}
        widened = {"every range x1.25": {n: (lo * 1.25, hi * 1.25) for n, (lo, hi) in r_cal.items()},
                   "+ brightness copies (+-50)": sim.input_ranges(model, batches(
                       base + [bright(c, 50) for c in base] + [bright(c, -50) for c in base])),
                   "+ contrast copies (x1.6)": sim.input_ranges(
                       model, batches(base + [contrast(c, 1.6) for c in base]))}
        for label, ranges in widened.items():
            coverage[f"8-bit act + w, {label}"] = score(ref, embed(sim.fake_quantize(model, ranges, 8, 8)), pids)
            coverage[f"16-bit act, {label}"] = score(ref, embed(sim.fake_quantize(model, ranges, 16, 0)), pids)
        print(run.name, json.dumps(coverage), flush=True)
        out["models"][run.name] = {"input_size": list(a.imgsz), "rows": rows, "coverage": coverage}
        path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
