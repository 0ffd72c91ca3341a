"""The one preprocessing (torch-free) and the synthetic crops everyone reuses."""
import cv2
import numpy as np
import pytest

from osnet_edge.errors import InputError
from osnet_edge.metadata import IMAGENET_MEAN, IMAGENET_STD
from osnet_edge.preprocess import as_bgr_uint8, crop_boxes, normalize, resize_crops, to_batch
from osnet_edge.synthetic import synthetic_crops


def reference(crop, size):
    """The textbook chain, one crop at a time: resize, BGR->RGB, /255, mean/std, HWC->CHW."""
    h, w = size
    x = cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)[:, :, ::-1].astype(np.float64) / 255.0
    x = (x - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    return x.transpose(2, 0, 1)


def test_to_batch_matches_textbook_chain():
    crops = synthetic_crops(6, seed=11)
    out = to_batch(crops, (256, 128))
    assert out.shape == (6, 3, 256, 128) and out.dtype == np.float32 and out.flags.c_contiguous
    for i, c in enumerate(crops):
        np.testing.assert_allclose(out[i], reference(c, (256, 128)), atol=1e-5)


def test_uint8_format_is_the_resized_bgr_batch():
    crops = synthetic_crops(4, seed=12)
    u = to_batch(crops, (64, 32), input_format="uint8_nhwc")
    assert u.shape == (4, 64, 32, 3) and u.dtype == np.uint8
    np.testing.assert_array_equal(u[2], cv2.resize(crops[2], (32, 64), interpolation=cv2.INTER_LINEAR))
    np.testing.assert_allclose(normalize(u), to_batch(crops, (64, 32)), atol=1e-6)
    bgr_order = normalize(u, color_order="BGR")
    np.testing.assert_allclose(bgr_order[:, 0], (u[..., 0] / 255.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], atol=1e-5)


def test_conversions_and_errors_name_the_crop():
    gray = np.arange(20 * 10, dtype=np.uint8).reshape(20, 10)
    assert as_bgr_uint8(gray).shape == (20, 10, 3)
    bgra = np.zeros((20, 10, 4), np.uint8)
    bgra[..., 3] = 255
    assert as_bgr_uint8(bgra).shape == (20, 10, 3) and as_bgr_uint8(bgra).max() == 0
    with pytest.raises(InputError, match="crop 3 has dtype float64"):
        as_bgr_uint8(np.zeros((5, 5, 3)), 3)
    with pytest.raises(InputError, match="crop 2 contains NaN"):
        resize_crops([gray, gray, np.full((4, 4, 3), np.nan)], (64, 32))
    with pytest.raises(InputError, match=r"crop 1 has shape \(5, 5, 2\)"):
        resize_crops([gray, np.zeros((5, 5, 2), np.uint8)], (64, 32))
    with pytest.raises(InputError, match="crop 0 has zero area"):
        resize_crops([np.zeros((5, 0, 3), np.uint8)], (64, 32))
    with pytest.raises(InputError, match=r"crop batch has shape \(2, 8, 8, 4\)"):
        resize_crops(np.zeros((2, 8, 8, 4), np.uint8), (64, 32))


def test_crop_boxes_clip_and_reject():
    frame = np.zeros((100, 200, 3), np.uint8)
    a, b = crop_boxes(frame, [[-10, -10, 50.2, 40.7], [190, 90, 260, 130]])
    assert a.shape == (41, 51, 3) and b.shape == (10, 10, 3)
    assert crop_boxes(frame, []) == []
    with pytest.raises(InputError, match=r"box 1 has non-finite"):
        crop_boxes(frame, [[0, 0, 5, 5], [0, np.nan, 5, 5]])
    with pytest.raises(InputError, match=r"box 0 .* no area inside the 200x100 frame"):
        crop_boxes(frame, [[210, 0, 250, 50]])


def test_synthetic_crops_are_deterministic_varied_person_like():
    a, b = synthetic_crops(12, seed=3), synthetic_crops(12, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], synthetic_crops(1, seed=4)[0])
    shapes = {c.shape for c in a}
    assert len(shapes) > 6  # varied sizes, like detector boxes
    for c in a:
        assert c.dtype == np.uint8 and c.ndim == 3 and c.shape[2] == 3
        assert 1.5 <= c.shape[0] / c.shape[1] <= 3.6  # upright people
        assert c.std() > 10  # not flat
    assert synthetic_crops(2, size=(64, 32))[1].shape == (64, 32, 3)
