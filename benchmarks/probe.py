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
    "asimd", "asimddp", "asimdhp", "sve", "sve2", "i8mm", "bf16",  # ARM (Jetson, Pi, Graviton): NEON, dotprod, fp16
)

LIBRARIES = ("osnet-edge", "numpy", "torch", "onnxruntime", "openvino", "nncf", "tensorrt",
             "opencv-python-headless", "opencv-python", "matplotlib")


# ARM cores by (implementer, part) from /proc/cpuinfo (the kernel prints no model name on arm64)
ARM_CORES = {
    ("0x41", "0xd03"): "Cortex-A53", ("0x41", "0xd07"): "Cortex-A57", ("0x41", "0xd08"): "Cortex-A72",
    ("0x41", "0xd05"): "Cortex-A55", ("0x41", "0xd0b"): "Cortex-A76", ("0x41", "0xd0c"): "Neoverse-N1",
    ("0x41", "0xd41"): "Cortex-A78", ("0x41", "0xd42"): "Cortex-A78AE", ("0x41", "0xd40"): "Neoverse-V1",
    ("0x41", "0xd4f"): "Neoverse-V2", ("0x4e", "0x004"): "NVIDIA Carmel",
}

# arm64 AT_HWCAP / AT_HWCAP2 bits -> the names /proc/cpuinfo prints (arch/arm64/include/uapi/asm/hwcap.h)
_HWCAP = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop "
          "sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg").split()
_HWCAP2 = ("dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm svef64mm svebf16 "
           "i8mm bf16 dgh rng bti").split()


def hwcap_flags(hwcap: int, hwcap2: int = 0) -> list:
    """arm64 auxiliary-vector capability words -> feature names as /proc/cpuinfo spells them."""
    return ([n for i, n in enumerate(_HWCAP) if hwcap >> i & 1]
            + [n for i, n in enumerate(_HWCAP2) if hwcap2 >> i & 1])


def _auxv_flags() -> list:
    """This process's arm64 features from getauxval(AT_HWCAP/AT_HWCAP2). Under qemu-user /proc/cpuinfo is the
    host's x86 file, but the auxiliary vector is the emulated CPU's: the features the code really gets."""
    import ctypes

    try:
        getauxval = ctypes.CDLL(None).getauxval
    except (OSError, AttributeError):
        return []
    getauxval.restype, getauxval.argtypes = ctypes.c_ulong, [ctypes.c_ulong]
    return hwcap_flags(getauxval(16), getauxval(26))  # AT_HWCAP, AT_HWCAP2


def parse_cpuinfo(text: str, machine: str | None = None) -> dict:
    """model and feature flags from /proc/cpuinfo text: x86 'model name' + 'flags', arm64 'CPU part' + 'Features'
    (+ a board 'Model' line, as a Raspberry Pi has). flags_source says where the flags came from."""
    machine = machine or platform.machine()
    info = {"model": platform.processor() or machine, "flags": [], "flags_source": "/proc/cpuinfo"}
    fields: dict = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key and key not in fields:
            fields[key] = value.strip()
    arm = machine.lower() in ("aarch64", "arm64")
    if arm and "features" in fields:
        core = ARM_CORES.get((fields.get("cpu implementer", "").lower(), fields.get("cpu part", "").lower()))
        model = f"ARM {core}" if core else fields.get("model name") or "unknown ARM core"
        info["model"] = f"{model} ({fields['model']})" if "model" in fields else model
        info["flags"] = fields["features"].split()
    elif arm:  # no ARM Features line: qemu-user passes the host's (x86) /proc/cpuinfo through
        info["model"] = "aarch64 CPU (/proc/cpuinfo describes another machine: emulated)"
        info["flags_source"] = "none"
    else:
        for key in ("model name", "cpu model", "hardware"):
            if fields.get(key):
                info["model"] = fields[key]
                break
        info["flags"] = (fields.get("flags") or fields.get("features") or "").split()
    return info


def _cpuinfo() -> dict:
    """model and flags from /proc/cpuinfo (Linux), the auxiliary vector on arm64 without one; platform elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            info = parse_cpuinfo(f.read())
    except OSError:
        info = {"model": platform.processor() or platform.machine(), "flags": [], "flags_source": "none"}
    if info["flags_source"] == "none" and platform.machine().lower() in ("aarch64", "arm64") \
            and platform.system() == "Linux":
        info["flags"], info["flags_source"] = _auxv_flags(), "getauxval(AT_HWCAP)"
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
        "flags_source": cpu["flags_source"],
        "isa_class": isa_class(flags),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": _versions(),
    }


def isa_class(flags) -> str:
    """The instruction-set class results are quoted for: 'AVX2', 'AVX-512 VNNI BF16', 'ARMv8.2 NEON dotprod/fp16'...

    ARM classes follow what the inference kernels switch on: dotprod (SDOT/UDOT: ONNX Runtime's and oneDNN/ACL's
    INT8 GEMMs), fp16 arithmetic (OpenVINO's default f16 execution on ARM), i8mm/bf16 (ARMv8.6 matrix-multiply
    INT8/BF16 kernels), SVE. Cortex-A72 (Raspberry Pi 4) is ARMv8.0 NEON; Cortex-A76 (Pi 5) and A78AE (Jetson
    Orin) ARMv8.2 NEON dotprod/fp16; Neoverse-V1 (Graviton3) ARMv8.6 NEON dotprod/fp16/i8mm/bf16 SVE.
    """
    f = set(flags)
    if "avx512f" in f:
        parts = ["AVX-512"] + [name for name, flag in (("VNNI", "avx512_vnni"), ("BF16", "avx512_bf16"),
                                                      ("AMX", "amx_tile")) if flag in f]
    elif "avx2" in f:
        parts = ["AVX2"] + (["VNNI"] if "avx_vnni" in f else [])
    elif "asimd" in f:
        ext = [name for name, flag in (("dotprod", "asimddp"), ("fp16", "asimdhp"), ("i8mm", "i8mm"),
                                       ("bf16", "bf16")) if flag in f]
        level = "ARMv8.6" if {"i8mm", "bf16"} & f else "ARMv8.2" if {"asimddp", "asimdhp"} & f else "ARMv8.0"
        parts = [level, "NEON" + (" " + "/".join(ext) if ext else "")]
        parts += ["SVE2"] if "sve2" in f else ["SVE"] if "sve" in f else []
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
