"""`make demo`: the SDK's main job, end to end, on generated data.

1. osnet_x0_25's complexity and the paper's Table 6 grid as counted here;
2. export osnet_x0_25 to ONNX (FP32) and OpenVINO IR (FP16), each verified against PyTorch;
3. embed generated person crops with each artifact: parity with PyTorch and a short timing table
   (written to demo_out/timings.json with a PNG beside it).

The network has seeded random weights (no download at run time): parity and speed are meaningful,
the embeddings themselves are not.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

OUT = Path(os.environ.get("OSNET_DEMO_OUT", "demo_out"))
BATCHES = (1, 32)


def _median_ms(fn, repeats: int) -> float:
    import numpy as np

    fn()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def main():
    import torch

    from .complexity import complexity, print_table6
    from .export import export_model
    from .export.verify import cosine_rows, reference_embeddings
    from .models import build_model
    from .preprocess import to_batch
    from .runtime import Embedder
    from .synthetic import synthetic_crops

    torch.manual_seed(0)
    model = build_model("osnet_x0_25").eval()
    print(f"osnet_x0_25: {complexity(model)}")
    print()
    print_table6()
    print()

    OUT.mkdir(exist_ok=True)
    print(f"exporting osnet_x0_25 (seeded random weights) to {OUT}/ ...")
    artifacts = {
        "onnx fp32": export_model(model, "onnx", OUT, quiet=True),
        "openvino fp16": export_model(model, "openvino", OUT, half=True, quiet=True),
    }
    for label, res in artifacts.items():
        print(f"{label}:\n{res.summary()}")
    print()

    crops = synthetic_crops(64, seed=1)
    ref = reference_embeddings(model, crops)
    print(f"parity on {len(crops)} generated crops (cosine to PyTorch, per crop):")
    embedders = {label: Embedder(res.path) for label, res in artifacts.items()}
    for label, emb in embedders.items():
        cos = cosine_rows(emb.embed(crops), ref)
        print(f"  {label:14s} min {cos.min():.6f}  mean {cos.mean():.6f}")
    print()

    threads = torch.get_num_threads()
    print(f"timing (median, {os.cpu_count()} CPU cores, torch threads {threads}); end to end = from uint8 crops "
          f"of varied sizes, PyTorch = eager FP32 on pre-made tensors:")
    rows = []
    for b in BATCHES:
        batch = crops[:b]
        x = torch.from_numpy(to_batch(batch, model.input_size))
        with torch.inference_mode():
            t_torch = _median_ms(lambda: model(x), 3 if b > 1 else 10)
        rows.append({"backend": "pytorch eager fp32", "batch": b, "ms": t_torch, "speedup": 1.0})
        t_pre = _median_ms(lambda: embedders["onnx fp32"].preprocess(batch), 5)
        for label, emb in embedders.items():
            t = _median_ms(lambda: emb.embed(batch), 5 if b > 1 else 20)
            rows.append({"backend": f"{label} (end to end)", "batch": b, "ms": t, "speedup": t_torch / t,
                         "preprocess_share": t_pre / t})
    print(f"  {'backend':32s} {'batch':>5s} {'ms':>9s} {'crops/s':>9s} {'vs torch':>9s} {'preproc':>8s}")
    for r in rows:
        share = f"{r['preprocess_share'] * 100:7.1f}%" if "preprocess_share" in r else ""
        print(f"  {r['backend']:32s} {r['batch']:5d} {r['ms']:9.1f} {r['batch'] / r['ms'] * 1e3:9.1f} "
              f"{r['speedup']:8.2f}x {share:>8s}")
    (OUT / "timings.json").write_text(json.dumps({"cpu_count": os.cpu_count(), "rows": rows}, indent=2))
    _plot(rows, OUT / "timings.png")
    print()
    from .export.fidelity import report_path
    from .export.quantize_openvino import demo_int8

    res = demo_int8(OUT, model=model)
    print(f"openvino int8: {res.path} (fidelity report: {report_path(res.path)})")
    print(f"\nwrote {OUT / 'timings.json'} (+ timings.png). Load an artifact with:")
    print(f"  {artifacts['openvino fp16'].load_line()}")
    return 0


def _plot(rows, path):
    """crops/s per backend and batch, beside the JSON (skipped without matplotlib)."""
    from .deps import available

    if not available("matplotlib"):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = list(dict.fromkeys(r["backend"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(BATCHES)
    for j, b in enumerate(BATCHES):
        vals = [next(r["batch"] / r["ms"] * 1e3 for r in rows if r["backend"] == n and r["batch"] == b)
                for n in backends]
        ax.barh([i + j * width for i in range(len(backends))], vals, height=width, label=f"batch {b}")
    ax.set_yticks([i + width * (len(BATCHES) - 1) / 2 for i in range(len(backends))], backends)
    ax.set_xlabel("crops / s (higher is better)")
    ax.set_title("osnet_x0_25 256x128 on this CPU")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
