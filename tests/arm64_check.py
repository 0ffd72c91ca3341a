"""The runtime on aarch64 against x86-64, on the same real crops and the same artifacts (`make check-arm64`).

    python tests/arm64_check.py reference ARTIFACT_DIR CROP_DIR REF.npz     # x86-64, the project's .venv
    python tests/arm64_check.py compare ARTIFACT_DIR REF.npz OUT.json        # aarch64 (qemu), runtime-only venv

`reference` keeps the decoded crops (so both sides embed the same pixels whatever their JPEG decoders do), the
x86-64 preprocessing output and every artifact's x86-64 embeddings. `compare` embeds the same crops with
`Embedder` on this machine and checks each artifact against its own x86-64 embeddings and against x86-64 FP32:
FP32 min cosine >= 0.99999, FP16 >= 0.999, INT8 the export's fidelity gates (mean / least crop cosine to FP32).
A backend that fails is recorded with its one-line error, not raised: the table says what failed where.
Imports no torch (the aarch64 side has none).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

# declared precision -> least cosine to x86-64 FP32 (the export's own parity thresholds; INT8: its gates)
GATES = {"fp32": {"min_cosine": 0.99999}, "fp16": {"min_cosine": 0.999},
         "int8": {"mean_cosine": 0.99, "min_cosine": 0.95}}
# the same artifact on two CPUs: only summation order and kernel choice differ
SAME_ARTIFACT_MIN_COSINE = {"fp32": 0.99999, "fp16": 0.999, "int8": 0.99}
PER_ID, IDS = 3, 12   # a few dozen crops: emulation runs at ~1/50 of native speed


def artifacts(folder: Path) -> list:
    return sorted(p for p in folder.iterdir() if p.suffix in (".onnx", ".xml"))


def pick_crops(crop_dir: Path) -> list:
    """PER_ID crops each of the first IDS identities (Market-1501 names: PID_cCsS_FRAME_NN.jpg), spread over
    each tracklet, so the set has both near-duplicates and other people."""
    by_pid: dict = {}
    for p in sorted(crop_dir.glob("*.jpg")):
        by_pid.setdefault(p.name.split("_")[0], []).append(p)
    picked = []
    for pid in sorted(by_pid)[:IDS]:
        files = by_pid[pid]
        picked += [files[i] for i in np.linspace(0, len(files) - 1, min(PER_ID, len(files))).astype(int)]
    return picked


def reference(args) -> None:
    import cv2

    from osnet_edge import Embedder
    from osnet_edge.preprocess import to_batch

    files = pick_crops(Path(args.crop_dir))
    if len(files) < 2 * IDS:
        sys.exit(f"arm64_check: {args.crop_dir} has {len(files)} usable crops; expected a Market-1501 folder "
                 f"(osnet-crops output) with at least {IDS} identities")
    crops = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in files]
    out = {"names": np.array([p.name for p in files])}
    sizes = np.array([c.shape for c in crops])
    out["shapes"] = sizes
    out["pixels"] = np.concatenate([c.reshape(-1) for c in crops])
    for art in artifacts(Path(args.artifact_dir)):
        with Embedder(art, device="cpu" if art.suffix == ".onnx" else "CPU") as emb:
            out[f"emb:{art.name}"] = emb.embed(crops)
            if f"batch:{emb.input_size}" not in out:
                out[f"batch:{emb.input_size}"] = to_batch(crops, emb.input_size)
    np.savez_compressed(args.ref, **out)
    print(f"reference: {len(crops)} crops of {len(set(n.split('_')[0] for n in out['names']))} identities, "
          f"{len(artifacts(Path(args.artifact_dir)))} artifacts -> {args.ref}")


def _crops(ref) -> list:
    crops, at = [], 0
    for shape in ref["shapes"]:
        n = int(np.prod(shape))
        crops.append(ref["pixels"][at:at + n].reshape(shape))
        at += n
    return crops


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def _cosines(a, b) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a.astype(np.float64) * b, axis=1)


def compare(args) -> int:
    from osnet_edge import Embedder
    from osnet_edge.benchmarks.probe import machine_info
    from osnet_edge.preprocess import to_batch

    ref = np.load(args.ref)
    crops = _crops(ref)
    machine = machine_info()
    result = {"machine": machine, "python": platform.python_version(), "crops": len(crops),
              "openvino_hint": args.openvino_hint,
              "preprocess": {}, "rows": []}
    for key in [k for k in ref.files if k.startswith("batch:")]:
        size = tuple(int(v) for v in key[len("batch:("):-1].split(","))
        here, there = to_batch(crops, size), ref[key]
        diff = np.abs(here - there)
        # one uint8 step after resizing is 1/(255*std) ~ 0.0175 in the normalised input
        result["preprocess"][f"{size[0]}x{size[1]}"] = {
            "identical": bool(np.array_equal(here, there)), "max_abs_diff": float(diff.max()),
            "values_differing": int(np.count_nonzero(diff)), "values": int(diff.size)}
    fp32_ref = next((ref[k] for k in ref.files if k.startswith("emb:") and k.endswith("_fp32.onnx")), None)
    failed = 0
    for art in artifacts(Path(args.artifact_dir)):
        backend = "onnxruntime" if art.suffix == ".onnx" else "openvino"
        precision = next(p for p in ("fp32", "fp16", "int8") if f"_{p}" in art.stem)
        row = {"artifact": art.name, "backend": backend, "precision": precision}
        t0 = time.perf_counter()
        try:
            options = {"hint": args.openvino_hint} if backend == "openvino" else {}
            with Embedder(art, device="cpu" if backend == "onnxruntime" else "CPU", timeout=args.timeout,
                          **options) as emb:
                feats = emb.embed(crops)
                row["executes"] = emb.execution_label()
                row["backend_detail"] = emb.backend.describe()
        except Exception as exc:  # recorded, not raised: the table names what failed on this platform
            row.update(ok=False, error=_one_line(exc))
            failed += 1
            result["rows"].append(row)
            print(f"{art.name:40s} {backend:12s} FAILED {row['error']}")
            continue
        row["seconds"] = round(time.perf_counter() - t0, 2)
        same = _cosines(feats, ref[f"emb:{art.name}"])
        row["vs_x86_same_artifact"] = {"min_cosine": float(same.min()), "mean_cosine": float(same.mean())}
        checks = [same.min() >= SAME_ARTIFACT_MIN_COSINE[precision]]
        if fp32_ref is not None:
            c = _cosines(feats, fp32_ref)
            row["vs_x86_fp32"] = {"min_cosine": float(c.min()), "mean_cosine": float(c.mean())}
            gate = GATES[precision]
            checks.append(c.min() >= gate["min_cosine"])
            if "mean_cosine" in gate:
                checks.append(c.mean() >= gate["mean_cosine"])
        row["ok"] = bool(all(checks))
        failed += not row["ok"]
        result["rows"].append(row)
        print(f"{art.name:40s} {backend:12s} {row.get('executes', '?'):>10s}  min cos vs x86 same "
              f"{same.min():.7f}  vs x86 FP32 {row.get('vs_x86_fp32', {}).get('min_cosine', float('nan')):.7f}  "
              f"{'ok' if row['ok'] else 'BELOW GATE'}  ({row['seconds']} s)")
    for size, p in result["preprocess"].items():
        print(f"preprocess {size}: {'identical to x86-64' if p['identical'] else 'DIFFERS'} "
              f"(max |diff| {p['max_abs_diff']:.4g}, {p['values_differing']}/{p['values']} values)")
    print(f"machine: {machine['cpu']} ({machine['arch']}, {machine['isa_class']}, flags from "
          f"{machine['flags_source']})")
    Path(args.out).write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 1 if failed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reference")
    r.add_argument("artifact_dir")
    r.add_argument("crop_dir")
    r.add_argument("ref")
    c = sub.add_parser("compare")
    c.add_argument("artifact_dir")
    c.add_argument("ref")
    c.add_argument("out")
    c.add_argument("--timeout", type=float, default=None,
                   help="seconds one backend call may take (emulation: a batch runs for minutes)")
    c.add_argument("--openvino-hint", default="throughput",
                   help="OpenVINO performance hint (under qemu-user 7.2 'throughput' streams hang: use 'latency')")
    args = ap.parse_args(argv)
    if args.cmd == "reference":
        reference(args)
        return 0
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
