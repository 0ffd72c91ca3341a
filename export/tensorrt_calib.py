"""TensorRT 10.x implicit INT8 calibration: fixed-size batches of a calibration set, made by THE preprocessing,
fed to an IInt8 calibrator (entropy or min-max) whose cache is written next to the engine and reusable.

TensorRT 11.x has no calibrator: its INT8 comes from a Q/DQ ONNX (osnet_edge.export.tensorrt_typed).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from osnet_edge.errors import ModelConfigError
from osnet_edge.metadata import ModelMeta
from osnet_edge.runtime.tensorrt_common import cuda_call

CALIB_METHODS = ("entropy", "minmax")
DEFAULT_CALIB_BATCH = 32
CALIB_SUFFIX = ".calib"   # osnet_x0_25_256x128_int8.engine.calib


def calibration_index_batches(n: int, batch_size: int) -> list:
    """Index batches covering range(n), every batch full: TensorRT calibrates at one fixed batch shape, so
    the last batch is completed from the start of the set (every crop is seen; a few twice) rather than
    dropped (crops lost) or padded with copies of one crop (a skewed histogram)."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"need n >= 1 and batch_size >= 1, got {n}, {batch_size}")
    count = -(-n // batch_size)
    idx = np.arange(count * batch_size) % n
    return [idx[i * batch_size:(i + 1) * batch_size] for i in range(count)]


class CalibrationFeeder:
    """Fixed-size preprocessed batches of a calibration set (osnet_edge.calibration CropSet), made by the
    artifact's own preprocessing, so calibration sees exactly what the deployed engine will see."""

    def __init__(self, cropset, meta: ModelMeta, batch_size: int = DEFAULT_CALIB_BATCH):
        self.cropset, self.meta = cropset, meta
        self.batch_size = int(min(batch_size, len(cropset))) if len(cropset) else int(batch_size)
        self.index_batches = calibration_index_batches(len(cropset), self.batch_size)

    def __len__(self):
        return len(self.index_batches)

    def __iter__(self):
        crops = self.cropset.crops
        for idx in self.index_batches:
            yield np.ascontiguousarray(self.cropset.preprocess([crops[i] for i in idx], self.meta))


def load_calibration(calib, meta: ModelMeta, batch_size: int = DEFAULT_CALIB_BATCH, progress: bool = True):
    """A CalibrationFeeder from a --calib SOURCE (folder, market1501:ROOT, mot:..., a CropSet or a crop list)."""
    if calib is None:
        raise ModelConfigError("INT8 TensorRT engines need calibration crops: --calib SOURCE (a folder of person "
                               "crops, market1501:ROOT, mot:VIDEO,BOXES.txt), or a --calib-cache from an earlier build")
    try:
        from osnet_edge.calibration import load_source
    except ImportError:
        from osnet_edge.calibration.sources import load_source
    cropset = load_source(calib, progress=progress)
    cropset.check_size(min(batch_size, DEFAULT_CALIB_BATCH))
    return CalibrationFeeder(cropset, meta, batch_size)


def make_calibrator(trt, cudart, feeder, method: str = "entropy", cache_out=None, cache_in=None,
                    progress: bool = True):
    """An IInt8 calibrator over `feeder` (entropy = IInt8EntropyCalibrator2, TensorRT's recommended one;
    minmax = IInt8MinMaxCalibrator, better when the tails of activations matter). The cache is written to
    cache_out; cache_in (an earlier build's cache) skips calibration altogether."""
    if method not in CALIB_METHODS:
        raise ModelConfigError(f"calibration method must be one of {', '.join(CALIB_METHODS)}, got {method!r}")
    base = trt.IInt8EntropyCalibrator2 if method == "entropy" else trt.IInt8MinMaxCalibrator

    class Calibrator(base):
        def __init__(self):
            base.__init__(self)  # pybind11 trampolines need the base initialised explicitly
            self.method, self.error = method, None
            self._batches = iter(feeder) if feeder is not None else iter(())
            self._nbytes = 0
            self._device = 0
            self._bar = None
            if progress and feeder is not None:
                from tqdm import tqdm

                self._bar = tqdm(total=len(feeder), desc=f"INT8 calibration ({method})", unit="batch",
                                 file=sys.stderr, leave=False)

        def get_batch_size(self):
            return feeder.batch_size if feeder is not None else 1

        def get_batch(self, names, *args):
            # an exception must not cross into TensorRT's C++: keep it and end calibration; raised after the build
            try:
                batch = next(self._batches, None)
                if batch is None:
                    return None
                if batch.nbytes > self._nbytes:
                    self.free()
                    self._device = int(cuda_call(cudart, "cudaMalloc", batch.nbytes))
                    self._nbytes = batch.nbytes
                cuda_call(cudart, "cudaMemcpy", self._device, batch.ctypes.data, batch.nbytes,
                          cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
                if self._bar is not None:
                    self._bar.update(1)
                return [self._device]
            except Exception as exc:
                self.error = exc
                return None

        def read_calibration_cache(self, *args):
            if cache_in is not None and Path(cache_in).is_file():
                return Path(cache_in).read_bytes()
            return None

        def write_calibration_cache(self, cache, *args):
            if cache_out is not None:
                Path(cache_out).write_bytes(bytes(cache))

        def free(self):
            if self._device:
                cudart.cudaFree(self._device)
                self._device, self._nbytes = 0, 0

        def close(self):
            self.free()
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    return Calibrator()
