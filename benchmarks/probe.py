"""What machine the numbers came from: CPU, flags, library versions, load, and a matmul peak.

The peak is this machine's *practical* float32 GFLOP/s: a large square matrix product through the
BLAS that numpy and torch ship, at the same thread count the benchmark uses. Every row of a run is
then reported as a fraction of it, which says how close a backend gets to what the cores can do
(a theoretical peak from clock x FMA width would also count turbo bins and SMT the BLAS cannot reach).
"""
from __future__ import annotations

import os
import platform
import time
from importlib import metadata as importlib_metadata

import numpy as np

# CPU flags that decide which kernels ONNX Runtime / OpenVINO / oneDNN pick
INTERESTING_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
    "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
    "asimd", "asimddp", "asimdhp", "sve", "i8mm", "bf16",  # ARM (Jetson, Graviton): NEON, dot-product, fp16
)

LIBRARIES = ("osnet-edge", "numpy", "torch", "onnxruntime", "openvino", "nncf", "tensorrt",
             "opencv-python-headless", "opencv-python", "matplotlib")


def _cpuinfo() -> dict:
    """model name and flags from /proc/cpuinfo (Linux); platform's answer elsewhere."""
    info = {"model": platform.processor() or platform.machine(), "flags": []}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and info["model"] in ("", platform.machine(),
                                                                                 platform.processor()):
            info["model"] = value.strip()
        elif key in ("flags", "features") and not info["flags"]:
            info["flags"] = value.split()
    return info


def _versions() -> dict:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


def _physical_cores():
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except ImportError:
        return None


def load_average():
    """1/5/15-minute load averages (None where the OS has none); high values mean noisy numbers."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info() -> dict:
    cpu = _cpuinfo()
    flags = set(cpu["flags"])
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "cpu": cpu["model"],
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "usable_cores": affinity,
        "flags": [f for f in INTERESTING_FLAGS if f in flags],
        "isa_class": isa_class(flags),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": _versions(),
    }


def isa_class(flags) -> str:
    """The instruction-set class results are quoted for: 'AVX2', 'AVX-512 VNNI BF16', 'AVX-512 AMX', 'NEON'..."""
    f = set(flags)
    if "avx512f" in f:
        parts = ["AVX-512"] + [name for name, flag in (("VNNI", "avx512_vnni"), ("BF16", "avx512_bf16"),
                                                      ("AMX", "amx_tile")) if flag in f]
    elif "avx2" in f:
        parts = ["AVX2"] + (["VNNI"] if "avx_vnni" in f else [])
    elif "asimd" in f:
        parts = ["NEON"] + [name for name, flag in (("dot", "asimddp"), ("fp16", "asimdhp"), ("i8mm", "i8mm"),
                                                    ("BF16", "bf16")) if flag in f]
    else:
        parts = ["baseline x86" if "sse4_2" in f else "unknown ISA"]
    return " ".join(parts)


def _torch_threads(threads):
    """Context for torch's intra-op thread count (restored afterwards)."""
    import contextlib

    @contextlib.contextmanager
    def ctx():
        try:
            import torch
        except ImportError:
            yield None
            return
        old = torch.get_num_threads()
        if threads:
            torch.set_num_threads(int(threads))
        try:
            yield torch
        finally:
            torch.set_num_threads(old)

    return ctx()


def matmul_peak(n: int = 2048, seconds: float = 2.0, threads: int | None = None) -> dict:
    """Best sustained GFLOP/s of an n x n float32 matmul (2 n^3 flops) through torch's BLAS.

    torch (oneDNN/MKL on x86) is used when installed since its thread count can be pinned to the
    benchmark's; numpy's BLAS otherwise. The best of several repetitions is the practical peak:
    a probe measures what the hardware can do, not how noisy the machine is.
    """
    flops = 2.0 * n ** 3
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    with _torch_threads(threads) as torch:
        if torch is not None:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            out = torch.empty(n, n)

            def step():
                torch.mm(ta, tb, out=out)
            library, used_threads = "torch " + torch.__version__, torch.get_num_threads()
        else:
            out = np.empty((n, n), np.float32)

            def step():
                np.matmul(a, b, out=out)
            library, used_threads = "numpy " + np.__version__, None
        step()  # warm-up: page in buffers, spin up BLAS threads
        best, reps, start = float("inf"), 0, time.perf_counter()
        while reps < 3 or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - t0)
            reps += 1
    return {"gflops": round(flops / best / 1e9, 2), "n": n, "dtype": "float32", "library": library,
            "threads": used_threads, "reps": reps, "best_ms": float(f"{best * 1e3:.6g}")}
