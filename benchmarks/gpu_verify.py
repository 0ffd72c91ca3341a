"""The TensorRT issue's GPU verification, in one run: engine builds, parity, latency vs PyTorch eager.

    python -m osnet_edge.benchmarks.gpu_verify --out benchmarks/results/tensorrt        (or benchmarks/gpu_verify.sh)

Builds osnet_x0_25 and osnet_x1_0 (FP32, FP16, INT8) and osnet_ain_x1_0 (FP16) at 256x128 with max batch
32, each verified against the PyTorch model by export_model (batch 1 and 31; FP16 min cosine >= 0.999;
INT8 through the fidelity report), then times every engine and PyTorch eager FP32 on the same GPU at
batch 1, 8 and 32, host array in -> host features out for both (what a tracker pays). Records:
gpu_verify.json (every number, the environment, the command), gpu_verify.png (latency and throughput),
gpu_verify.md (the table and the two goals: FP16 batch-1 latency >= 5x below eager FP32; INT8 batch-32
throughput >= FP16).

Weights: seeded random networks unless --weights ARCH=PATH is given (parity and latency do not depend on
training; INT8 fidelity does, so the record says which). Calibration: --calib (default generated:300,
flagged as generated in the fidelity JSON).
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
import traceback
from pathlib import Path

import numpy as np

PLAN = (("osnet_x0_25", ("fp32", "fp16", "int8")), ("osnet_x1_0", ("fp32", "fp16", "int8")),
        ("osnet_ain_x1_0", ("fp16",)))
BATCHES = (1, 8, 32)
GOAL_FP16_SPEEDUP = 5.0


# ------------------------------------------------------------------------------------------- environment

def preflight() -> tuple[dict, list]:
    """(environment facts, problems): what this run needs and whether it is there."""
    from osnet_edge.runtime.tensorrt_common import cuda_gpus, import_cudart

    env, problems = {"python": platform.python_version(), "machine": platform.machine()}, []
    gpus = cuda_gpus()
    env["gpus"] = [g.describe() for g in gpus]
    if not gpus:
        problems.append("no CUDA GPU visible to the driver (nvidia-smi should list one)")
    try:
        import tensorrt as trt

        env["tensorrt"] = trt.__version__
    except ImportError:
        problems.append("tensorrt is not installed: pip install 'osnet-edge[tensorrt]' (x86-64), or JetPack's "
                        "python3-libnvinfer on a Jetson (README: TensorRT on a Jetson)")
    try:
        cudart = import_cudart()
        env["cuda_python_runtime"] = getattr(cudart, "__name__", "cudart")
        err, ver = cudart.cudaRuntimeGetVersion()
        env["cuda_runtime"] = f"{ver // 1000}.{(ver % 1000) // 10}"
    except Exception as exc:
        problems.append(f"cuda-python is not usable: {exc}")
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_cuda"] = bool(torch.cuda.is_available())
        if not env["torch_cuda"]:
            problems.append(f"torch {torch.__version__} has no CUDA: the PyTorch eager baseline (and the pytest "
                            f"`gpu` tests) need a CUDA build of torch on this machine")
    except ImportError:
        problems.append("torch is not installed (export and the eager baseline need it)")
    return env, problems


# ------------------------------------------------------------------------------------------- builds

def _model(arch, weights: dict, input_size):
    import torch

    from osnet_edge.models import build_model

    torch.manual_seed(0)
    return build_model(arch, weights=weights.get(arch), input_size=None if weights.get(arch) else input_size).eval()


def build_one(model, precision, out_dir: Path, calib, max_batch) -> dict:
    from osnet_edge.export.api import export_model

    t0 = time.perf_counter()
    res = export_model(model, "trt", out_dir / f"{model.arch}_{precision}.engine", half=precision == "fp16",
                       int8=precision == "int8", calib=calib if precision == "int8" else None,
                       max_batch=max_batch, batch_sizes=(1, max_batch - 1))
    row = {"engine": str(res.path), "size_mb": round(res.size_bytes / 1e6, 2), "parity": res.parity,
           "export_seconds": round(time.perf_counter() - t0, 1), "files": [str(f) for f in res.files]}
    side = json.loads(Path(str(res.path) + ".json").read_text())
    row["engine_facts"] = side.get("extra", {})
    fid = res.path.with_name(res.path.stem + ".fidelity.json")
    if fid.is_file():
        row["fidelity"] = json.loads(fid.read_text())
    return row


# ------------------------------------------------------------------------------------------- latency

def time_engine(path, batches, seconds) -> dict:
    from osnet_edge.runtime.embedder import Embedder
    from osnet_edge.synthetic import synthetic_crops
    from osnet_edge.benchmarks.measure import time_calls

    out = {}
    with Embedder(str(path)) as emb:
        crops = list(synthetic_crops(max(batches), seed=1))
        for b in batches:
            x = emb.preprocess(crops[:b])
            out[b] = time_calls(lambda: emb.backend.run(x), b, warmup=20, seconds=seconds).to_dict()
    return out


def time_eager(model, batches, seconds) -> dict:
    """PyTorch eager FP32 on the same GPU, host NCHW float32 in -> host features out, like the engine."""
    import torch

    from osnet_edge.preprocess import to_batch
    from osnet_edge.synthetic import synthetic_crops
    from osnet_edge.benchmarks.measure import time_calls

    m = model.cuda().eval()
    crops = list(synthetic_crops(max(batches), seed=1))
    out = {}
    with torch.inference_mode():
        for b in batches:
            x = torch.from_numpy(to_batch(crops[:b], m.input_size))
            out[b] = time_calls(lambda: m(x.cuda()).float().cpu(), b, warmup=20, seconds=seconds).to_dict()
    model.cpu()
    return out


# ------------------------------------------------------------------------------------------- record

def goals(rows: dict) -> list:
    """The issue's two goals per architecture, from this run's numbers."""
    lines = []
    for arch, by_prec in rows.items():
        eager, fp16, int8 = by_prec.get("eager_fp32"), by_prec.get("fp16"), by_prec.get("int8")
        if eager and fp16 and "latency" in fp16 and "latency" in eager:
            e1, f1 = eager["latency"][1]["p50_ms"], fp16["latency"][1]["p50_ms"]
            lines.append({"arch": arch, "goal": f"FP16 batch-1 p50 latency >= {GOAL_FP16_SPEEDUP}x below eager FP32",
                          "eager_ms": round(e1, 3), "fp16_ms": round(f1, 3), "speedup": round(e1 / f1, 2),
                          "met": e1 / f1 >= GOAL_FP16_SPEEDUP})
        if fp16 and int8 and "latency" in fp16 and "latency" in int8:
            t16, t8 = fp16["latency"][32]["throughput"], int8["latency"][32]["throughput"]
            lines.append({"arch": arch, "goal": "INT8 batch-32 throughput >= FP16", "fp16_per_s": round(t16, 1),
                          "int8_per_s": round(t8, 1), "ratio": round(t8 / t16, 3), "met": t8 >= t16})
    return lines


def plot(rows: dict, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = list(rows)
    fig, axes = plt.subplots(2, len(archs), figsize=(5 * len(archs), 8), squeeze=False)
    for j, arch in enumerate(archs):
        series = [(k, v["latency"]) for k, v in rows[arch].items() if isinstance(v, dict) and "latency" in v]
        width = 0.8 / max(1, len(series))
        for i, (name, lat) in enumerate(series):
            xs = np.arange(len(BATCHES)) + i * width
            axes[0, j].bar(xs, [lat[b]["p50_ms"] for b in BATCHES], width, label=name)
            axes[1, j].bar(xs, [lat[b]["throughput"] for b in BATCHES], width, label=name)
        for r, ylabel in ((0, "p50 latency (ms, log)"), (1, "throughput (crops/s, log)")):
            ax = axes[r, j]
            ax.set_yscale("log")
            ax.set_xticks(np.arange(len(BATCHES)) + 0.4 - width / 2, [f"batch {b}" for b in BATCHES])
            ax.set_ylabel(ylabel)
            ax.set_title(arch)
            ax.legend(fontsize=8)
    fig.suptitle("TensorRT engines vs PyTorch eager FP32 (same GPU, host in -> host out)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(record: dict) -> str:
    lines = [f"# TensorRT GPU verification ({record['date']})", "", f"Command: `{record['command']}`", "",
             "Environment: " + ", ".join(f"{k} {v}" for k, v in record["environment"].items()), "",
             "| arch | precision | min cos (b1, b31) | fp32 layers | p50 ms b1 | b8 | b32 | crops/s b32 | build s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for arch, by_prec in record["results"].items():
        for prec, r in by_prec.items():
            if "error" in r:
                lines.append(f"| {arch} | {prec} | FAILED: {r['error'].splitlines()[0][:120]} | | | | | | |")
                continue
            lat = r.get("latency", {})
            cos = r.get("parity", {}).get("min_cos")
            facts = r.get("engine_facts", {})
            cells = [arch, prec, "" if cos is None else f"{cos:.6f}", str(facts.get("fp32_layers", ""))]
            cells += [f"{lat[b]['p50_ms']:.3f}" if b in lat else "" for b in BATCHES]
            cells += [f"{lat[32]['throughput']:.0f}" if 32 in lat else "", str(facts.get("build_seconds", ""))]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Goals:"]
    for g in record["goals"]:
        lines.append(f"- {g['arch']}: {g['goal']}: {'MET' if g['met'] else 'NOT MET'} "
                     f"({', '.join(f'{k} {v}' for k, v in g.items() if k not in ('arch', 'goal', 'met'))})")
    if not record["goals"]:
        lines.append("- not evaluated (missing engines or baseline; see errors above)")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m osnet_edge.benchmarks.gpu_verify", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/results/tensorrt", help="folder for engines and records")
    ap.add_argument("--engines", default=".cache/trt_engines", help="folder for the engines (not committed)")
    ap.add_argument("--calib", default="generated:300", help="INT8 calibration source (default generated:300)")
    ap.add_argument("--weights", action="append", default=[], metavar="ARCH=PATH", help="trained weights per arch")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per (engine, batch)")
    ap.add_argument("--only", default=None, help="comma-separated archs to run (default: the issue's plan)")
    ap.add_argument("--preflight", action="store_true", help="check the environment and exit")
    args = ap.parse_args(argv)

    env, problems = preflight()
    print(json.dumps(env, indent=1), file=sys.stderr)
    for p in problems:
        print(f"preflight: {p}", file=sys.stderr)
    if args.preflight:
        return 1 if problems else 0
    if not env.get("gpus") or "tensorrt" not in env:
        return 2
    weights = dict(w.split("=", 1) for w in args.weights)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    engines = Path(args.engines)
    engines.mkdir(parents=True, exist_ok=True)
    plan = [(a, p) for a, p in PLAN if not args.only or a in args.only.split(",")]
    results, t_start = {}, time.time()
    from tqdm import tqdm

    for arch, precisions in tqdm(plan, desc="architectures", file=sys.stderr):
        model = _model(arch, weights, (256, 128))
        results[arch] = {}
        for prec in precisions:
            try:
                row = build_one(model, prec, engines, args.calib, args.max_batch)
                row["latency"] = time_engine(row["engine"], BATCHES, args.seconds)
            except Exception as exc:  # record and go on: one failed build must not hide the others
                row = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            results[arch][prec] = row
        if env.get("torch_cuda"):
            try:
                results[arch]["eager_fp32"] = {"latency": time_eager(model, BATCHES, args.seconds)}
            except Exception as exc:
                results[arch]["eager_fp32"] = {"error": f"{type(exc).__name__}: {exc}"}
        results[arch]["weights"] = weights.get(arch) or "seeded random (torch.manual_seed(0))"
    rows = {a: {k: v for k, v in r.items() if isinstance(v, dict)} for a, r in results.items()}
    record = {"date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t_start)) + " UTC",
              "command": "python -m osnet_edge.benchmarks.gpu_verify " + " ".join(map(shlex.quote, argv or sys.argv[1:])),
              "environment": env, "problems": problems, "calib": args.calib, "max_batch": args.max_batch,
              "batches": list(BATCHES), "timing": "p50 of calls over --seconds after 20 warm-up calls; host in -> "
              "host out for engines (pinned buffers, one stream) and eager", "results": results,
              "goals": goals(rows), "wall_seconds": round(time.time() - t_start, 1)}
    (out / "gpu_verify.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    try:
        plot(rows, out / "gpu_verify.png")
    except Exception as exc:
        print(f"plot failed: {exc}", file=sys.stderr)
    (out / "gpu_verify.md").write_text(markdown(record))
    print(markdown(record))
    failed = [f"{a} {p}" for a, r in rows.items() for p, v in r.items() if "error" in v]
    unmet = [g for g in record["goals"] if not g["met"]]
    return 1 if failed or unmet or not record["goals"] else 0


if __name__ == "__main__":
    sys.exit(main())
