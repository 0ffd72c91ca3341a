"""Install size of each runtime-only install, by distribution, and what a CPU-only OpenVINO box can drop.

    .venv/bin/python benchmarks/results/install_size/measure.py WHEEL IR.xml [--wheelhouse .cache/wheelhouse]

For each of `osnet-edge[onnx]` and `osnet-edge[openvino]`: a fresh virtualenv (no torch), `pip install` as a user
runs it (bytecode compiled), the size on disk of every installed distribution (its RECORD). Then the OpenVINO
CPU-only trim (CPU_ONLY_DROP, after OpenVINO's "libraries for local distribution" list: a CPU box reading IR
needs the core, the IR frontend, the CPU plugin and TBB) applied to a copy, checked: the IR still embeds,
bit-identically, and CPU is the one device left. Writes sizes.json beside this file.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# under site-packages/openvino/: what a CPU-only box that reads IR does not load
CPU_ONLY_DROP = ("libs/libopenvino_intel_gpu_plugin.so", "libs/libopenvino_intel_npu_plugin.so",
                 "libs/cache.json",  # the GPU plugin's kernel tuning cache
                 "libs/libopenvino_onnx_frontend.so*", "libs/libopenvino_tensorflow_frontend.so*",
                 "libs/libopenvino_tensorflow_lite_frontend.so*", "libs/libopenvino_pytorch_frontend.so*",
                 "libs/libopenvino_paddle_frontend.so*", "libs/libopenvino_jax_frontend.so*",
                 "libs/libopenvino_gguf_frontend.so*", "include")

SIZES = """
import json, os, sys
from importlib import metadata
out = {}
for d in metadata.distributions():
    total = 0
    for f in d.files or []:
        p = d.locate_file(f)
        if os.path.isfile(p):
            total += os.path.getsize(p)
    out[d.metadata["Name"].lower()] = total
print(json.dumps(out))
"""

EMBED = """
import json, sys
import numpy as np
import openvino as ov
from osnet_edge import Embedder
from osnet_edge.synthetic import synthetic_crops
with Embedder(sys.argv[1], device="CPU") as e:
    np.save(sys.argv[2], e.embed(synthetic_crops(8, seed=1)))
print(json.dumps({"devices": ov.Core().available_devices}))
"""


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def run(*cmd, **kw) -> str:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode:
        sys.exit(f"{' '.join(map(str, cmd))[:200]} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return r.stdout


def install(venv: Path, wheel: Path, extra: str, wheelhouse: Path | None) -> dict:
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    py = venv / "bin" / "python"
    source = ["--no-index", "--find-links", wheelhouse] if wheelhouse else []
    run(sys.executable, "-m", "pip", "--python", py, "install", "-q", "--disable-pip-version-check", *source,
        f"{wheel}[{extra}]")
    site = next((venv / "lib").glob("python*/site-packages"))
    return {"site_packages_bytes": du(site), "by_distribution": json.loads(run(py, "-c", SIZES)), "site": site}


def trim_openvino(site: Path) -> int:
    removed = 0
    for pattern in CPU_ONLY_DROP:
        for p in (site / "openvino").glob(pattern):
            removed += du(p) if p.is_dir() else p.stat().st_size
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    return removed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheel", type=Path)
    ap.add_argument("ir", type=Path, help="an OpenVINO IR (.xml) to check the trimmed install with")
    ap.add_argument("--wheelhouse", type=Path, default=None)
    args = ap.parse_args()
    result = {"wheel": args.wheel.name, "installs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for extra in ("onnx", "openvino"):
            r = install(tmp / extra, args.wheel.resolve(), extra, args.wheelhouse)
            site = r.pop("site")
            result["installs"][extra] = r
            if extra == "openvino":
                py = tmp / extra / "bin" / "python"
                before = json.loads(run(py, "-c", EMBED, args.ir.resolve(), tmp / "before.npy"))
                removed = trim_openvino(site)
                after = json.loads(run(py, "-c", EMBED, args.ir.resolve(), tmp / "after.npy"))
                import numpy as np

                same = bool(np.array_equal(np.load(tmp / "before.npy"), np.load(tmp / "after.npy")))
                result["openvino_cpu_only"] = {
                    "dropped": list(CPU_ONLY_DROP), "bytes_removed": removed,
                    "site_packages_bytes_after": du(site), "devices_before": before["devices"],
                    "devices_after": after["devices"], "embeddings_identical": same}
    (HERE / "sizes.json").write_text(json.dumps(result, indent=1) + "\n")
    mb = lambda b: f"{b / 1e6:.0f} MB"  # noqa: E731
    for extra, r in result["installs"].items():
        top = sorted(r["by_distribution"].items(), key=lambda kv: -kv[1])
        print(f"[{extra}] {mb(r['site_packages_bytes'])}: " + ", ".join(f"{n} {mb(b)}" for n, b in top if b > 1e6))
    t = result["openvino_cpu_only"]
    print(f"[openvino] CPU-only trim: -{mb(t['bytes_removed'])} -> {mb(t['site_packages_bytes_after'])}; devices "
          f"{t['devices_before']} -> {t['devices_after']}; embeddings identical: {t['embeddings_identical']}")


if __name__ == "__main__":
    main()
