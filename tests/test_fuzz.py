"""Fuzzing with hypothesis: what a camera box is handed (crops, frames, boxes of any shape, dtype, stride, NaN/inf;
MOT box files and dataset folders of any lines and file names) ends in a finite (N, 512) result or the project's
InputError, never another exception.

make test runs the "ci" profile (a few dozen examples per entry point); the long run is
    OSNET_EDGE_FUZZ_PROFILE=long .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_fuzz.py \
        --hypothesis-show-statistics
(benchmarks/results/reliability/fuzz.sh, recorded in fuzz.txt there).
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from osnet_edge.errors import InputError  # noqa: E402
from osnet_edge.preprocess import as_crops, crop_boxes, to_batch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=40, derandomize=True, **_common)
settings.register_profile("long", max_examples=10_000, **_common)
settings.load_profile(os.environ.get("OSNET_EDGE_FUZZ_PROFILE", "ci"))

INPUT = (64, 32)
DTYPES = [np.uint8, np.int8, np.uint16, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_,
          np.complex64]


@st.composite
def images(draw, max_side=48, ndims=(0, 1, 2, 3, 4)):
    """An array of any dtype and 0-4 dims (mostly image-like), values including NaN/inf, then maybe viewed with
    strides: reversed, every other row, transposed, a channel slice."""
    ndim = draw(st.sampled_from(ndims))
    shape = [draw(st.integers(0, max_side)) for _ in range(min(ndim, 2))]
    if ndim >= 3:
        shape.append(draw(st.sampled_from([0, 1, 2, 3, 4, 5])))
    if ndim == 4:
        shape.insert(0, draw(st.integers(0, 3)))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    a = draw(hnp.arrays(dtype, tuple(shape), elements=_elements(dtype)))
    view = draw(st.sampled_from(["none", "reverse", "step", "transpose", "channels"]))
    if a.ndim >= 2 and view == "reverse":
        a = a[::-1, ::-1]
    elif a.ndim >= 2 and view == "step":
        a = a[::2, ::3]
    elif a.ndim >= 2 and view == "transpose":
        a = a.swapaxes(0, 1)
    elif a.ndim == 3 and view == "channels" and a.shape[2] >= 3:
        a = a[:, :, ::-1][:, :, :3]
    return a


def _elements(dtype):
    if dtype.kind == "f":
        return st.floats(allow_nan=True, allow_infinity=True, width=min(64, dtype.itemsize * 8))
    if dtype.kind == "c":
        return st.complex_numbers(allow_nan=True, allow_infinity=True, width=64)
    return None


crops_lists = st.one_of(images(), st.lists(st.one_of(images(ndims=(2, 3)), st.none(), st.text(max_size=3),
                                                     st.integers(), st.lists(st.integers(0, 255), max_size=4)),
                                           max_size=5))

boxes = st.one_of(
    hnp.arrays(np.float64, st.tuples(st.integers(0, 6), st.integers(0, 7)),
               elements=st.floats(allow_nan=True, allow_infinity=True)),
    hnp.arrays(np.int64, st.tuples(st.integers(0, 6), st.just(4)), elements=st.integers(-10 ** 6, 10 ** 6)),
    st.lists(st.lists(st.one_of(st.floats(-100, 200), st.integers(-100, 200)), min_size=0, max_size=6), max_size=4),
    st.lists(st.floats(-50, 100), max_size=5),
)


def _only_input_error(fn, *args):
    try:
        return fn(*args)
    except InputError as exc:
        assert "\n" not in str(exc)  # one line
        return None


@given(crops_lists, st.sampled_from(["float_nchw", "uint8_nhwc"]))
def test_to_batch(crops, input_format):
    out = _only_input_error(to_batch, crops, INPUT, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "RGB",
                            input_format)
    if out is not None:
        assert out.shape[0] == len(as_crops(crops))
        assert out.shape[1:] == ((3,) + INPUT if input_format == "float_nchw" else INPUT + (3,))
        assert np.isfinite(out).all()


@given(st.one_of(images(), crops_lists, st.integers(), st.none(), st.text(max_size=4)))
def test_as_crops(crops):
    out = _only_input_error(as_crops, crops)
    if out is not None:
        assert len(out) >= 0


@given(images(max_side=64, ndims=(0, 1, 2, 3)), boxes)
def test_crop_boxes(frame, b):
    out = _only_input_error(crop_boxes, frame, b)
    if out is not None:
        for c in out:
            assert c.dtype == np.uint8 and c.shape[0] > 0 and c.shape[1] > 0


@pytest.fixture(scope="module")
def embedder():
    from test_runtime_artifacts import onnx_path

    from osnet_edge import Embedder

    with Embedder(onnx_path()) as e:
        yield e


@given(data=st.data())
def test_embed_frame(embedder, data):
    frame = data.draw(st.one_of(images(max_side=96, ndims=(2, 3)),
                                hnp.arrays(np.uint8, st.tuples(st.integers(1, 96), st.integers(1, 96), st.just(3)))))
    b = data.draw(boxes)
    out = _only_input_error(embedder.embed_frame, frame, b)
    if out is not None:
        assert out.shape == (len(out), 512) and out.dtype == np.float32 and np.isfinite(out).all()


def test_embed_gives_the_same_result_for_a_strided_view_as_for_its_copy(embedder):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (80, 90, 3), np.uint8)
    views = [frame[::-1], frame[:, ::2], frame.swapaxes(0, 1), frame[:, :, ::-1]]
    for v in views:
        np.testing.assert_allclose(embedder.embed(v), embedder.embed(np.ascontiguousarray(v)), atol=1e-6)


# --------------------------------------------------------------------------- readers of files

mot_lines = st.lists(st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10 ** 6),
                       st.sampled_from(["nan", "inf", "-inf", "1e999", "", "x", "0x10"])),
             min_size=0, max_size=11).map(lambda v: ",".join(map(str, v))),
), max_size=12)


@given(mot_lines, st.sampled_from(["det.txt", "gt.txt"]), st.booleans())
def test_read_mot_boxes(lines, name, binary):
    from osnet_edge.calibration.video import read_mot_boxes

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_bytes(("\n".join(lines)).encode("utf-8", "surrogatepass") if not binary else
                      bytes(range(256)) + "\n".join(lines).encode("utf-8", "surrogatepass"))
        out = _only_input_error(read_mot_boxes, p)
    if out is not None:
        assert out.ndim == 2 and out.shape[1] == 6 and np.isfinite(out).all()
        assert (out[:, 4] > out[:, 2]).all() and (out[:, 5] > out[:, 3]).all() and (out[:, 0] >= 1).all()


file_names = st.one_of(
    st.text(min_size=1, max_size=30).filter(lambda s: "/" not in s and "\x00" not in s and s not in (".", "..")),
    st.builds(lambda pid, cam, rest, ext: f"{pid}_c{cam}{rest}{ext}",
              st.one_of(st.integers(-3, 10 ** 4), st.sampled_from(["-1", "0000", "99999999999999999999999", "x"])),
              st.one_of(st.integers(-1, 120), st.just("")),
              st.sampled_from(["s1_000451_03", "", "_", "s1"]),
              st.sampled_from([".jpg", ".JPG", ".png", ".jpeg", ".txt", ""])),
)


@given(st.dictionaries(st.sampled_from(["bounding_box_train", "query", "bounding_box_test"]),
                       st.lists(file_names, max_size=6), min_size=0, max_size=3),
       st.sampled_from(["market1501", "dukemtmcreid", "generic"]))
def test_dataset_folder_readers(splits, kind):
    from osnet_edge.training.datasets import load_dataset

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for split, names in splits.items():
            folder = root / (split if kind != "generic" else {"bounding_box_train": "train", "query": "query",
                                                               "bounding_box_test": "gallery"}[split])
            if kind == "generic":
                folder = folder / "person1"
            folder.mkdir(parents=True, exist_ok=True)
            for n in names:
                try:
                    (folder / n).write_bytes(b"")
                except (OSError, UnicodeEncodeError):  # a name this filesystem cannot hold is not a test
                    pass
        ds = _only_input_error(load_dataset, f"{kind}:{root}")
        if ds is not None:
            for s in ds.train + ds.query + ds.gallery:
                assert Path(s.path).is_file()
                assert isinstance(s.pid, int) and isinstance(s.camid, int)
                np.asarray([s.pid, s.camid], np.int64)  # the evaluation's arrays hold them
