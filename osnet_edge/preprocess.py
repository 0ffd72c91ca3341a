"""THE preprocessing: person crops -> the network's input batch. Torch-free.

The runtime, INT8 calibration, export verification and the training core's test transform all
call to_batch(); a second copy is how deployed re-ID models silently get worse.

Steps: each crop is checked and converted to HxWx3 uint8 BGR (grayscale and BGRA are converted),
resized to the model's (H, W) with bilinear interpolation, stacked; then, unless the artifact does
it in its graph, BGR->RGB, /255, ImageNet mean/std and NHWC->NCHW, vectorised over the batch.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError
from .metadata import IMAGENET_MEAN, IMAGENET_STD


def _cv2():
    from .deps import require

    return require("cv2", "resizing crops")


def as_bgr_uint8(crop, index: int = 0) -> np.ndarray:
    """Validate one crop; convert HxW grayscale and HxWx4 BGRA to HxWx3 BGR. Errors name the crop."""
    if crop is None:
        raise InputError(f"crop {index} is None (a missing image? cv2.imread returns None for unreadable files)")
    a = np.asarray(crop)
    if a.size == 0 and (a.dtype != np.uint8 or a.ndim < 2):  # np.array([]): say so, not "dtype float64"
        raise InputError(f"crop {index} is empty (an array of shape {a.shape})")
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and a.size and np.isnan(a).any():
            raise InputError(f"crop {index} contains NaN values; crops must be uint8 BGR images")
        raise InputError(f"crop {index} has dtype {a.dtype}; crops must be uint8 BGR images (0-255). "
                         f"Convert with np.clip(x, 0, 255).astype(np.uint8) if it is a float image in 0-255")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]  # BGRA -> BGR: alpha dropped
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"crop {index} has shape {a.shape}; expected HxWx3 BGR, HxWx4 BGRA or HxW grayscale")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"crop {index} has zero area (shape {a.shape})")
    return a


def as_crops(crops):
    """What callers pass -> a sequence of crops. One image (an HxWx3/HxWx4/HxW array) is one crop, not a list
    of pixel rows; an (N, H, W, 3) array and a list of images are sequences already."""
    if isinstance(crops, np.ndarray):
        if crops.ndim in (2, 3):
            return [crops]
        if crops.ndim != 4:
            raise InputError(f"crops array has shape {crops.shape}; expected one HxWx3 image, an (N, H, W, 3) "
                             f"batch or a list of images")
    elif not isinstance(crops, (list, tuple)):  # a generator, a number, None: say what was passed
        raise InputError(f"crops must be a list of images or an array, got {type(crops).__name__}")
    return crops


def resize_crops(crops, input_size) -> np.ndarray:
    """Crops (list of images, an NHWC uint8 array, or one image) -> (N, H, W, 3) uint8 BGR at input_size."""
    h, w = input_size
    crops = as_crops(crops)
    if isinstance(crops, np.ndarray) and crops.ndim == 4:
        if crops.dtype != np.uint8:
            nan = np.issubdtype(crops.dtype, np.floating) and np.isnan(crops).any()
            raise InputError(f"crop batch has dtype {crops.dtype}{' and contains NaN values' if nan else ''}; "
                             f"expected uint8 NHWC BGR")
        if crops.shape[3] != 3:
            raise InputError(f"crop batch has shape {crops.shape}; expected (N, H, W, 3) BGR")
        if crops.shape[1:3] == (h, w):
            return np.ascontiguousarray(crops)
    cv2 = _cv2()
    out = np.empty((len(crops), h, w, 3), np.uint8)
    for i, crop in enumerate(crops):
        a = as_bgr_uint8(crop, i)
        if a.shape[:2] == (h, w):
            out[i] = a
        else:
            cv2.resize(a, (w, h), dst=out[i], interpolation=cv2.INTER_LINEAR)
    return out


def normalize(batch: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD, color_order: str = "RGB") -> np.ndarray:
    """(N, H, W, 3) uint8 BGR -> (N, 3, H, W) float32, channels in color_order, (x/255 - mean)/std."""
    n, h, w, _ = batch.shape
    out = np.empty((n, 3, h, w), np.float32)
    # (x/255 - m)/s == x * (1/(255 s)) - m/s: one multiply-add per pixel, straight into NCHW planes
    scale = (1.0 / (255.0 * np.asarray(std, np.float64))).astype(np.float32)
    offset = (-np.asarray(mean, np.float64) / np.asarray(std, np.float64)).astype(np.float32)
    for c in range(3):
        src = 2 - c if color_order == "RGB" else c
        np.multiply(batch[..., src], scale[c], out=out[:, c])
        out[:, c] += offset[c]
    return out


def to_batch(crops, input_size=(256, 128), mean=IMAGENET_MEAN, std=IMAGENET_STD, color_order: str = "RGB",
             input_format: str = "float_nchw") -> np.ndarray:
    """Crops -> the network's input. input_format 'float_nchw' (normalised) or 'uint8_nhwc' (graph normalises)."""
    batch = resize_crops(crops, input_size)
    if input_format == "uint8_nhwc":
        return batch
    return normalize(batch, mean, std, color_order)


def crop_boxes(frame, boxes) -> list:
    """Cut boxes out of an HxWx3 uint8 frame, clipped to it. A box with no area inside the frame is an error.

    boxes: (N, 4) xyxy, or a detector's (N, 5+) rows (xyxy, score[, class, ...]): the first four columns are
    the box. One box may be given as a flat sequence.
    """
    if frame is None:
        raise InputError("frame is None (the end of a video? cv2.VideoCapture.read returns (False, None) there)")
    f = np.asarray(frame)
    if f.ndim not in (2, 3) or f.shape[0] == 0 or f.shape[1] == 0:
        raise InputError(f"frame has shape {f.shape}; expected an HxWx3 BGR image")
    if f.dtype != np.uint8:
        raise InputError(f"frame has dtype {f.dtype}; frames must be uint8 BGR images (0-255)")
    try:
        b = np.asarray(boxes, dtype=np.float64) if len(boxes) else np.zeros((0, 4))
    except (TypeError, ValueError) as exc:  # ragged rows, strings, a bare number
        raise InputError(f"boxes must be (N, 4) xyxy numbers ({str(exc).splitlines()[0][:120]})") from None
    if b.ndim == 1:
        b = b[None]
    if b.ndim != 2 or b.shape[1] < 4:
        raise InputError(f"boxes have shape {b.shape}; expected (N, 4) xyxy or detector rows (N, 5+) starting "
                         f"with xyxy")
    b = b[:, :4]
    if not np.isfinite(b).all():
        bad = int(np.nonzero(~np.isfinite(b).all(axis=1))[0][0])
        raise InputError(f"box {bad} has non-finite coordinates {b[bad].tolist()}")
    fh, fw = f.shape[:2]
    x1 = np.clip(np.floor(b[:, 0]), 0, fw).astype(int)
    y1 = np.clip(np.floor(b[:, 1]), 0, fh).astype(int)
    x2 = np.clip(np.ceil(b[:, 2]), 0, fw).astype(int)
    y2 = np.clip(np.ceil(b[:, 3]), 0, fh).astype(int)
    empty = np.nonzero((x2 <= x1) | (y2 <= y1))[0]
    if len(empty):
        i = int(empty[0])
        raise InputError(f"box {i} {b[i].tolist()} has no area inside the {fw}x{fh} frame (xyxy expected)")
    return [f[y1[i]:y2[i], x1[i]:x2[i]] for i in range(len(b))]
