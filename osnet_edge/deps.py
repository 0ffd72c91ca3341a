"""Optional imports that fail with one line naming the extra to install."""
import importlib

from .errors import MissingDependencyError

# module -> (pip extra, what it is for)
_EXTRAS = {
    "torch": ("train", "PyTorch models, training and export"),
    "onnx": ("export", "ONNX export"),
    "onnxscript": ("export", "ONNX export (torch's dynamo exporter)"),
    "onnxruntime": ("onnx", "the ONNX Runtime backend"),
    "onnxslim": ("export", "ONNX graph simplification"),
    "openvino": ("openvino", "the OpenVINO backend and IR export"),
    "nncf": ("export", "INT8 quantization"),
    "tensorrt": ("tensorrt", "TensorRT engines"),
    "cuda": ("tensorrt", "the TensorRT runtime (cuda-python)"),
    "cv2": ("runtime", "image resizing"),
    "matplotlib": ("bench", "plots"),
    "lancedb": ("gallery", "the cross-camera gallery"),
    "pyarrow": ("gallery", "the cross-camera gallery"),
}


def require(module: str, purpose: str | None = None):
    """Import `module` or raise MissingDependencyError naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra, what = _EXTRAS.get(top, (None, top))
        hint = f"pip install 'osnet-edge[{extra}]'" if extra else f"pip install {top}"
        if top == "tensorrt" and _aarch64_linux():  # no TensorRT wheel for aarch64: the extra brings cuda-python only
            hint = ("on aarch64 Linux (Jetson) TensorRT comes with JetPack, not pip: sudo apt install python3-libnvinfer "
                    "(in a virtualenv made with --system-site-packages)")
        raise MissingDependencyError(
            f"{purpose or what} needs the '{top}' package, which is not installed: {hint}"
        ) from exc


def _aarch64_linux() -> bool:
    import platform
    import sys

    return sys.platform.startswith("linux") and platform.machine().lower() in ("aarch64", "arm64")


def available(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False
