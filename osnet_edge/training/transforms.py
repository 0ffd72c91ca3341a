"""Training augmentations on uint8 BGR crops (OpenCV / numpy, no torchvision).

They run before the one preprocessing (osnet_edge.preprocess.to_batch), which alone resizes to
the model's input, swaps to RGB and normalises. Random erasing therefore fills with the ImageNet
mean colour in pixel units: after normalisation that is ~0, as torchvision-style erasing on the
normalised tensor would give. Each transform takes the crop and a numpy Generator, so a worker's
augmentations are a function of its seed (reproducible, resumable).

Names (recipe 'augment' lists): flip, crop, patch (RandomPatch, paper footnote 5), erase (random
erasing, Zhong et al.), color_jitter.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np

from ..errors import InputError
from ..metadata import IMAGENET_MEAN
from ..preprocess import resize_crops

# ImageNet mean as BGR pixel values (erasing fill)
_MEAN_BGR = np.array(IMAGENET_MEAN[::-1], np.float32) * 255.0


def _cv2():
    import cv2

    return cv2


class RandomFlip:
    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, img, rng):
        return np.ascontiguousarray(img[:, ::-1]) if rng.random() < self.p else img


class RandomCrop:
    """torchreid's Random2DTranslation: with probability p, enlarge by 1.125 and crop back at random."""

    def __init__(self, p: float = 0.5, scale: float = 1.125):
        self.p, self.scale = p, scale

    def __call__(self, img, rng):
        if rng.random() >= self.p:
            return img
        h, w = img.shape[:2]
        nh, nw = int(round(h * self.scale)), int(round(w * self.scale))
        big = _cv2().resize(img, (nw, nh), interpolation=_cv2().INTER_LINEAR)
        y, x = int(rng.integers(0, nh - h + 1)), int(rng.integers(0, nw - w + 1))
        return np.ascontiguousarray(big[y:y + h, x:x + w])


class RandomErasing:
    """Erase a random rectangle (area 2-40% of the image, aspect 0.3-3.3) with the mean colour."""

    def __init__(self, p: float = 0.5, sl: float = 0.02, sh: float = 0.4, r1: float = 0.3):
        self.p, self.sl, self.sh, self.r1 = p, sl, sh, r1

    def __call__(self, img, rng):
        if rng.random() >= self.p:
            return img
        h, w = img.shape[:2]
        for _ in range(100):
            area = h * w * rng.uniform(self.sl, self.sh)
            ratio = rng.uniform(self.r1, 1.0 / self.r1)
            eh, ew = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if 0 < eh < h and 0 < ew < w:
                y, x = int(rng.integers(0, h - eh)), int(rng.integers(0, w - ew))
                img = img.copy()
                img[y:y + eh, x:x + ew] = np.round(_MEAN_BGR).astype(np.uint8)
                return img
        return img


class RandomPatch:
    """RandomPatch (paper footnote 5): keep a pool of patches cut from training images; paste a random
    one (maybe rotated/flipped) onto the crop at a random place. Parameters follow torchreid's."""

    def __init__(self, p: float = 0.5, pool_capacity: int = 50000, min_sample_size: int = 100,
                 min_area: float = 0.01, max_area: float = 0.5, min_ratio: float = 0.1,
                 p_rotate: float = 0.5, p_flip: float = 0.5):
        self.p, self.min_sample_size = p, min_sample_size
        self.min_area, self.max_area, self.min_ratio = min_area, max_area, min_ratio
        self.p_rotate, self.p_flip = p_rotate, p_flip
        self.pool = deque(maxlen=pool_capacity)

    def _size(self, h, w, rng):
        for _ in range(100):
            area = h * w * rng.uniform(self.min_area, self.max_area)
            ratio = rng.uniform(self.min_ratio, 1.0 / self.min_ratio)
            ph, pw = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if 0 < ph < h and 0 < pw < w:
                return ph, pw
        return None

    def __call__(self, img, rng):
        h, w = img.shape[:2]
        size = self._size(h, w, rng)
        if size is not None:  # every image feeds the pool
            ph, pw = size
            y, x = int(rng.integers(0, h - ph)), int(rng.integers(0, w - pw))
            self.pool.append(img[y:y + ph, x:x + pw].copy())
        if len(self.pool) < self.min_sample_size or rng.random() >= self.p:
            return img
        patch = self.pool[int(rng.integers(len(self.pool)))]
        if rng.random() < self.p_rotate and patch.shape[0] < w and patch.shape[1] < h:  # rotate if it still fits
            patch = np.ascontiguousarray(np.rot90(patch, k=int(rng.choice([1, 3]))))
        if rng.random() < self.p_flip:
            patch = np.ascontiguousarray(patch[:, ::-1])
        ph, pw = patch.shape[:2]
        if ph >= h or pw >= w:
            return img
        y, x = int(rng.integers(0, h - ph)), int(rng.integers(0, w - pw))
        img = img.copy()
        img[y:y + ph, x:x + pw] = patch
        return img


class ColorJitter:
    """Random brightness, contrast, saturation (factors in [1-x, 1+x]) and hue shift (fraction of a turn)."""

    def __init__(self, p: float = 0.5, brightness: float = 0.2, contrast: float = 0.15, saturation: float = 0.0,
                 hue: float = 0.0):
        self.p, self.b, self.c, self.s, self.h = p, brightness, contrast, saturation, hue

    def __call__(self, img, rng):
        if rng.random() >= self.p:
            return img
        x = img.astype(np.float32)
        ops = rng.permutation(4)
        for op in ops:
            if op == 0 and self.b > 0:
                x *= rng.uniform(1 - self.b, 1 + self.b)
            elif op == 1 and self.c > 0:
                gray = (0.114 * x[..., 0] + 0.587 * x[..., 1] + 0.299 * x[..., 2]).mean()
                x = (x - gray) * rng.uniform(1 - self.c, 1 + self.c) + gray
            elif op == 2 and self.s > 0:
                gray = (0.114 * x[..., 0] + 0.587 * x[..., 1] + 0.299 * x[..., 2])[..., None]
                x = (x - gray) * rng.uniform(1 - self.s, 1 + self.s) + gray
            elif op == 3 and self.h > 0:
                cv2 = _cv2()
                hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV)
                shift = int(round(rng.uniform(-self.h, self.h) * 180))
                hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + shift) % 180).astype(np.uint8)
                x = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR).astype(np.float32)
        return np.clip(x, 0, 255).astype(np.uint8)


AUGMENTATIONS = {"flip": RandomFlip, "crop": RandomCrop, "erase": RandomErasing, "patch": RandomPatch,
                 "color_jitter": ColorJitter}
# torchreid's order: flip, crop, patch, colour jitter, then (after normalisation there) erasing
_ORDER = ("flip", "crop", "patch", "color_jitter", "erase")


class TrainTransform:
    """Resize to the input size, then the named augmentations in a fixed order. uint8 BGR in and out."""

    def __init__(self, input_size, augment=("flip", "crop"), options: dict | None = None):
        unknown = [a for a in augment if a not in AUGMENTATIONS]
        if unknown:
            raise InputError(f"unknown augmentation(s) {unknown}; choose from {', '.join(AUGMENTATIONS)}")
        options = options or {}
        self.input_size = tuple(input_size)
        self.names = [a for a in _ORDER if a in augment]
        self.ops = [AUGMENTATIONS[a](**options.get(a, {})) for a in self.names]

    def __call__(self, img, rng):
        img = resize_crops([img], self.input_size)[0]
        for op in self.ops:
            img = op(img, rng)
        return img

    def __repr__(self):
        return f"TrainTransform({self.input_size[0]}x{self.input_size[1]}, {' + '.join(self.names) or 'none'})"
