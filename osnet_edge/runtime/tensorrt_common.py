"""What the TensorRT builder (export/tensorrt_build.py) and runtime (tensorrt_backend.py) share. Torch-free.

- GPU discovery through the CUDA *driver* (ctypes on libcuda), so "no GPU" is detected before the
  multi-GB tensorrt / cuda-python packages are even looked for, and on a CPU box both the export and
  the Embedder fail with the same single line.
- cuda-python's runtime module across its two layouts (`cuda.cudart` up to 12.x, `cuda.bindings.runtime`
  from 12.8 / 13), and one checked-call helper that turns CUDA error codes into exceptions.
- The JSON sidecar next to an engine (the ONE metadata schema, plus TensorRT version, GPU and profile),
  and the check that refuses an engine built for another TensorRT version or GPU *before* TensorRT
  deserialises it (a mismatched plan otherwise fails with a cryptic log line, or worse).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..deps import require
from ..errors import ArtifactError, OsnetEdgeError
from ..metadata import ModelMeta

NO_GPU = "TensorRT needs an NVIDIA GPU with CUDA; none found"
SIDECAR_SUFFIX = ".json"  # osnet_x0_25_256x128_fp16.engine -> osnet_x0_25_256x128_fp16.engine.json


class NoCudaGPUError(OsnetEdgeError, RuntimeError):
    """TensorRT was asked for on a machine without a usable NVIDIA GPU."""


class CudaError(OsnetEdgeError, RuntimeError):
    """A CUDA runtime call failed (out of memory, device lost, ...)."""


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    major: int
    minor: int

    @property
    def compute_capability(self) -> str:
        return f"{self.major}.{self.minor}"

    def describe(self) -> str:
        return f"{self.name} (compute capability {self.compute_capability})"


# ---------------------------------------------------------------------------------------------- GPU discovery

def _libcuda():
    """The CUDA driver library, or None. On a Jetson it lives in the tegra folder, found via ld.so.conf."""
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    found = ctypes.util.find_library("cuda")
    if found:
        names.append(found)
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


@lru_cache(maxsize=1)
def cuda_gpus() -> tuple:
    """The CUDA GPUs the driver sees (honours CUDA_VISIBLE_DEVICES); () when there is no driver or no GPU.

    Asked of the driver directly so that it answers the same with or without cuda-python, torch or TensorRT.
    """
    lib = _libcuda()
    if lib is None:
        return ()
    try:
        if lib.cuInit(0) != 0:  # CUDA_ERROR_NO_DEVICE, driver/library mismatch, ...
            return ()
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return ()
        gpus = []
        for i in range(count.value):
            dev = ctypes.c_int(0)
            if lib.cuDeviceGet(ctypes.byref(dev), i) != 0:
                continue
            name = ctypes.create_string_buffer(256)
            lib.cuDeviceGetName(name, 256, dev)
            major, minor = ctypes.c_int(0), ctypes.c_int(0)
            lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
            lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # ..._MINOR
            gpus.append(GPU(i, name.value.decode(errors="replace").strip(), major.value, minor.value))
        return tuple(gpus)
    except (AttributeError, OSError):  # a stub libcuda without these symbols
        return ()


def device_index(device) -> int:
    """None / 'cuda' / 'cuda:1' / 'gpu:1' / 1 -> 1. Anything else (e.g. 'cpu') is a clear error."""
    if device is None or device == "":
        return 0
    if isinstance(device, int):
        return device
    m = re.fullmatch(r"(?:cuda|gpu)?:?(\d*)", str(device).strip().lower())
    if not m:
        raise OsnetEdgeError(f"device {device!r}: TensorRT runs on CUDA GPUs; use 'cuda', 'cuda:N' or N")
    return int(m.group(1) or 0)


def require_gpu(device=None) -> GPU:
    """The GPU to use, or NoCudaGPUError with the one line the issue asks for."""
    gpus = cuda_gpus()
    if not gpus:
        raise NoCudaGPUError(NO_GPU)
    idx = device_index(device)
    if idx >= len(gpus):
        raise NoCudaGPUError(f"CUDA device {idx} requested but only {len(gpus)} found "
                             f"({', '.join(g.describe() for g in gpus)})")
    return gpus[idx]


def import_tensorrt(purpose: str = "TensorRT engines", device=None):
    """(tensorrt module, GPU): the GPU is checked first, so a CPU box gets the GPU line, not an install hint."""
    gpu = require_gpu(device)
    trt = require("tensorrt", purpose)
    return trt, gpu


def import_cudart():
    """cuda-python's runtime API module, in either package layout."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.8 (the only layout in 13.x)
        return cudart
    except ImportError:
        pass
    try:
        from cuda import cudart  # cuda-python 11.x / 12.x
        return cudart
    except ImportError:
        pass
    return require("cuda.bindings.runtime", "the TensorRT runtime (device buffers and streams via cuda-python)")


def cuda_call(cudart, name: str, *args):
    """cudart.<name>(*args), raising CudaError on failure; returns the result(s) after the error code."""
    result = getattr(cudart, name)(*args)
    err, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if err != cudart.cudaError_t.cudaSuccess:
        try:
            text = cudart.cudaGetErrorString(err)[1].decode()
        except Exception:  # the error string is a courtesy; never mask the real failure
            text = str(err)
        raise CudaError(f"CUDA {name} failed: {text}")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


# ---------------------------------------------------------------------------------------------- versions

def version_tuple(text) -> tuple:
    return tuple(int(v) for v in re.findall(r"\d+", str(text))[:3])


def same_trt_version(built: str, running: str) -> bool:
    """A serialized engine only loads in the TensorRT major.minor.patch that built it (the build number
    may differ: it is the same library)."""
    return version_tuple(built) == version_tuple(running)


# ---------------------------------------------------------------------------------------------- sidecar

def sidecar_path(engine_path) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def engine_facts(trt_version: str, gpu: GPU, profile: dict, **more) -> dict:
    """The backend facts stored in ModelMeta.extra: what an engine is tied to, and how it was built."""
    facts = {"tensorrt_version": str(trt_version), "gpu_name": gpu.name,
             "compute_capability": gpu.compute_capability, "profile": profile}
    facts.update(more)
    return facts


def write_sidecar(engine_path, meta: ModelMeta) -> Path:
    from ..atomic import write_text

    return write_text(sidecar_path(engine_path), json.dumps(meta.to_dict(), indent=2, sort_keys=True) + "\n")


def read_sidecar(engine_path) -> ModelMeta | None:
    """The engine's metadata, or None for an engine without a sidecar (e.g. built with trtexec).

    The sidecar is handed over with the engine, so it is held to the artifact rules: a regular file inside the
    engine's folder, at most MAX_METADATA_BYTES read, UTF-8."""
    from ..artifact_files import MAX_METADATA_BYTES, inside_folder

    path = sidecar_path(engine_path)
    if not path.exists() and not path.is_symlink():
        return None
    inside_folder(path, path.parent, "the engine's metadata sidecar")
    if not path.is_file():
        raise ArtifactError(f"{path}: the engine's metadata sidecar is not a regular file (a folder, pipe or "
                            f"dangling symlink?); it is the JSON osnet-export writes next to the engine")
    with open(path, "rb") as f:
        raw = f.read(MAX_METADATA_BYTES + 1)
    if len(raw) > MAX_METADATA_BYTES:
        raise ArtifactError(f"{path}: the engine's metadata sidecar is over {MAX_METADATA_BYTES} bytes; refused "
                            f"(ours is ~1 KiB)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ArtifactError(f"{path}: the engine's metadata sidecar is not UTF-8 text") from None
    return ModelMeta.from_json(text, str(path))


def check_engine_compatible(meta: ModelMeta | None, trt_version: str, gpu: GPU, engine_path) -> list:
    """Refuse an engine built for another TensorRT version or GPU architecture, naming both sides.

    Returns warnings (same compute capability, different GPU model: it runs, but its kernels were
    timed on the other card). Without a sidecar there is nothing to compare; TensorRT's own check remains.
    """
    if meta is None:
        return []
    extra = meta.extra or {}
    built_trt, built_cc = extra.get("tensorrt_version"), extra.get("compute_capability")
    built_gpu = extra.get("gpu_name", "unknown GPU")
    problems = []
    if built_trt and not same_trt_version(built_trt, trt_version):
        problems.append(f"it was built with TensorRT {built_trt}, this machine has TensorRT {trt_version}")
    if built_cc and str(built_cc) != gpu.compute_capability:
        problems.append(f"it was built on {built_gpu} (compute capability {built_cc}), this machine has "
                        f"{gpu.describe()}")
    if problems:
        raise ArtifactError(f"{engine_path}: cannot load this TensorRT engine: {'; '.join(problems)}. Engines are "
                            f"tied to the TensorRT version and GPU that built them: rebuild it here "
                            f"(osnet-export --format trt) or from its ONNX")
    if built_gpu != "unknown GPU" and built_gpu != gpu.name:
        return [f"{engine_path}: built on {built_gpu}, running on {gpu.name} (same compute capability "
                f"{gpu.compute_capability}): it runs, but rebuild here for kernels timed on this GPU"]
    return []
