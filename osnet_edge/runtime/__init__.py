"""Runtime: Embedder over ONNX Runtime, OpenVINO, TensorRT or PyTorch. Imports no torch."""
from .base import BACKENDS, Backend, backend_class
from .embedder import Embedder, l2_normalize

__all__ = ["BACKENDS", "Backend", "Embedder", "backend_class", "l2_normalize"]
