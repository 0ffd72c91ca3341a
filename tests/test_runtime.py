"""Embedder over ONNX Runtime and OpenVINO: outputs, batching, threads, bad input, bad files, no torch."""
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from osnet_edge import Embedder
from osnet_edge.errors import ArtifactError, InputError
from osnet_edge.synthetic import synthetic_crops

from test_runtime_artifacts import INPUT, float_onnx, onnx_path, openvino_path

ARTIFACTS = {"onnx": onnx_path, "openvino": openvino_path}


@pytest.fixture(scope="module", params=sorted(ARTIFACTS))
def emb(request):
    e = Embedder(ARTIFACTS[request.param]())
    yield e
    e.close()


@pytest.fixture(scope="module")
def crops():
    return synthetic_crops(23, seed=7)


def test_embed_shape_dtype_and_unit_rows(emb, crops):
    f = emb.embed(crops)
    assert f.shape == (23, 512) and f.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)
    assert emb.embed([]).shape == (0, 512)
    assert emb.input_size == INPUT  # from the artifact's metadata, not from the caller


def test_batch_size_split_gives_same_embeddings(emb, crops):
    ref = emb.embed(crops)
    small = Embedder(emb.backend.path, batch_size=5)
    np.testing.assert_allclose(small.embed(crops), ref, atol=2e-5)
    # NHWC uint8 array at the input size is taken as is
    arr = np.stack([np.ascontiguousarray(c[: INPUT[0], : INPUT[1]]) for c in crops[:4]])
    np.testing.assert_allclose(emb.embed(arr), emb.embed(list(arr)), atol=1e-6)


def test_grayscale_and_bgra_are_converted(emb, crops):
    import cv2

    bgr = crops[0]
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    bgra = np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)])
    f = emb.embed([gray, np.dstack([gray] * 3), bgra, bgr])
    np.testing.assert_allclose(f[0], f[1], atol=1e-6)
    np.testing.assert_allclose(f[2], f[3], atol=1e-6)


def test_embed_frame_clips_boxes_and_names_bad_ones(emb):
    frame = synthetic_crops(1, seed=1, size=(240, 320))[0]
    boxes = [[10, 20, 60, 200], [-30, -5, 40, 100], [300, 100, 400, 260]]  # 2nd and 3rd stick out
    f = emb.embed_frame(frame, boxes)
    expect = emb.embed([frame[20:200, 10:60], frame[0:100, 0:40], frame[100:240, 300:320]])
    np.testing.assert_allclose(f, expect, atol=1e-6)
    with pytest.raises(InputError, match=r"box 1 .*no area"):
        emb.embed_frame(frame, [[0, 0, 10, 10], [50, 50, 50, 90]])
    with pytest.raises(InputError, match=r"box 0 .*no area inside the 320x240 frame"):
        emb.embed_frame(frame, [[400, 300, 500, 400]])


def test_one_image_is_one_crop(emb, crops):
    """An HxWx3 array is one crop (not H grey crops of its pixel rows); an (N, H, W, 3) array is a batch."""
    one = emb.embed(crops[0])
    assert one.shape == (1, 512)
    np.testing.assert_allclose(one, emb.embed([crops[0]]), atol=1e-6)
    gray = crops[1][:, :, 1]
    np.testing.assert_allclose(emb.embed(gray), emb.embed([gray]), atol=1e-6)
    same = np.stack([np.ascontiguousarray(c[:64, :32]) for c in crops[:3]])
    assert emb.embed(same).shape == (3, 512)
    with pytest.raises(InputError, match=r"crops array has shape \(2, 3, 8, 8, 3\)"):
        emb.embed(np.zeros((2, 3, 8, 8, 3), np.uint8))


def test_embed_frame_takes_detector_rows_and_names_a_bad_frame(emb):
    frame = synthetic_crops(1, seed=1, size=(240, 320))[0]
    boxes = np.array([[10, 20, 60, 200], [100, 30, 180, 230]], np.float32)
    expect = emb.embed_frame(frame, boxes)
    scores = np.array([[0.9], [0.4]], np.float32)
    classes = np.zeros((2, 1), np.float32)
    for dets in (np.hstack([boxes, scores]), np.hstack([boxes, scores, classes])):  # (N, 5), (N, 6)
        np.testing.assert_allclose(emb.embed_frame(frame, dets), expect, atol=1e-6)
    np.testing.assert_allclose(emb.embed_frame(frame, boxes[0]), expect[:1], atol=1e-6)  # one flat box
    with pytest.raises(InputError, match=r"^frame has dtype float32"):
        emb.embed_frame(frame.astype(np.float32), boxes)
    with pytest.raises(InputError, match=r"boxes have shape \(2, 3\)"):
        emb.embed_frame(frame, boxes[:, :3])


def test_cpu_streams_give_the_same_embeddings_in_order(emb, crops):
    one = Embedder(emb.backend.path, streams=1)
    three = Embedder(emb.backend.path, streams=3)
    assert one.streams == 1 and three.streams >= 2  # OpenVINO caps streams at the cores it finds
    spans = three._stream_spans(23)
    assert spans[0].start == 0 and spans[-1].stop == 23 and len(spans) >= three.streams  # every stream works
    assert all(a.stop == b.start for a, b in zip(spans, spans[1:]))
    ref = one.embed(crops)
    np.testing.assert_allclose(three.embed(crops), ref, atol=2e-5)
    # a batch of one runs as one all-core call (OpenVINO: its latency-hint model beside the streams)
    np.testing.assert_allclose(three.embed(crops[3]), ref[3:4], atol=2e-5)
    if three.backend.name == "openvino":
        assert three.backend.latency_compiled is not None
    batch = one.preprocess(crops)
    np.testing.assert_allclose(three.run_batch(batch), one.run_batch(batch), atol=1e-4)
    bad = list(crops)
    bad[20] = np.zeros((0, 12, 3), np.uint8)  # in the last chunk: preprocessed by another thread
    with pytest.raises(InputError, match=r"^crop 20 has zero area"):
        three.embed(bad)
    with pytest.raises(ArtifactError, match="streams must be >= 1"):
        Embedder(onnx_path(), streams=0)
    one.close()
    three.close()


def test_bad_crops_name_the_crop(emb, crops):
    e = Embedder(emb.backend.path, batch_size=4)
    bad = list(crops[:9])
    bad[6] = crops[6].astype(np.float32)
    with pytest.raises(InputError, match=r"^crop 6 has dtype float32"):
        e.embed(bad)  # index is the caller's, though crop 6 sits in the second batch
    bad[6] = np.full((30, 10, 3), np.nan, np.float32)
    with pytest.raises(InputError, match=r"crop 6 contains NaN"):
        e.embed(bad)
    bad[6] = np.zeros((0, 12, 3), np.uint8)
    with pytest.raises(InputError, match=r"crop 6 has zero area"):
        e.embed(bad)
    with pytest.raises(InputError, match="NaN"):
        e.embed(np.full((2, 64, 32, 3), np.nan, np.float32))


def test_threads_share_one_embedder_with_identical_results(emb, crops):
    ref = emb.embed(crops)
    out, errors = {}, []

    def work(i):
        try:
            for _ in range(3):
                out[i] = emb.embed(crops[i:i + 9])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(6):
        np.testing.assert_allclose(out[i], ref[i:i + 9], atol=2e-5)


def test_backend_options_keep_results():
    crops = synthetic_crops(12, seed=2)
    ort_ref = Embedder(onnx_path()).embed(crops)
    basic = Embedder(onnx_path(), threads=1, graph_optimization="basic", device="cpu")
    np.testing.assert_allclose(basic.embed(crops), ort_ref, atol=2e-5)
    assert "CPUExecutionProvider" in basic.backend.describe()
    with pytest.raises(ArtifactError, match="device 'npu' unknown"):
        Embedder(onnx_path(), device="npu")
    ov_ref = Embedder(openvino_path(), hint="latency").embed(crops)
    tput = Embedder(openvino_path(), hint="throughput", streams=2)
    assert tput.streams == 2  # a batch runs as concurrent chunks on the two streams
    np.testing.assert_allclose(tput.embed(crops), ov_ref, atol=2e-5)
    np.testing.assert_allclose(ov_ref, ort_ref, atol=2e-3)  # FP16 IR vs FP32 ONNX, same weights
    with pytest.raises(ArtifactError, match="not available here"):
        Embedder(openvino_path(), device="FPGA")


def test_float_input_artifact_matches_uint8_artifact_path():
    crops = synthetic_crops(6, seed=4)
    f = Embedder(float_onnx().path)
    assert f.meta.input_format == "float_nchw"
    assert f.embed(crops).shape == (6, 512)


def test_bad_files_get_clear_errors(tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        Embedder(tmp_path / "missing.onnx")
    junk = tmp_path / "model.tflite"
    junk.write_bytes(b"x")
    with pytest.raises(ArtifactError, match=r"unknown model format '\.tflite'.*\.onnx.*\.xml.*\.engine"):
        Embedder(junk)
    data = onnx_path().read_bytes()
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="trunc.onnx .*truncated or not an ONNX model"):
        Embedder(trunc)
    text = tmp_path / "notes.onnx"
    text.write_text("hello, not a model\n")
    with pytest.raises(ArtifactError, match="notes.onnx"):
        Embedder(text)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ArtifactError, match="empty"):
        Embedder(empty)
    xml = tmp_path / "ir.xml"
    shutil.copy(openvino_path(), xml)
    with pytest.raises(ArtifactError, match=r"ir.bin is missing"):
        Embedder(xml)
    shutil.copy(openvino_path().with_suffix(".bin"), tmp_path / "ir.bin")
    xml.write_text(openvino_path().read_text()[:500])
    with pytest.raises(ArtifactError, match="ir.xml could not be read as OpenVINO IR"):
        Embedder(xml)


def test_artifact_without_metadata_needs_input_size(tmp_path):
    import onnx

    proto = onnx.load(str(onnx_path()))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ArtifactError, match=r"no osnet-edge metadata.*input_size=\(H, W\)"):
        Embedder(bare)
    crops = synthetic_crops(3, seed=9)
    e = Embedder(bare, input_size=INPUT)  # uint8 graph detected from its input type
    np.testing.assert_allclose(e.embed(crops), Embedder(onnx_path()).embed(crops), atol=1e-6)


def test_runtime_works_without_torch():
    """A camera-end box has no torch: import osnet_edge and run both backends with torch unimportable."""
    code = textwrap.dedent(f"""
        import sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, NoTorch())
        import numpy as np
        import osnet_edge
        from osnet_edge import Embedder
        from osnet_edge.synthetic import synthetic_crops
        crops = synthetic_crops(5, seed=0)
        a = Embedder({str(onnx_path())!r}).embed(crops)
        b = Embedder({str(openvino_path())!r}).embed(crops)
        assert a.shape == b.shape == (5, 512)
        assert "torch" not in sys.modules, "torch was imported"
        try:
            osnet_edge.build_model
        except osnet_edge.MissingDependencyError as exc:
            print("OK", exc)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("OK") and "pip install 'osnet-edge[train]'" in r.stdout


# blocks `import torch` in a child interpreter, as on a camera-end box with only the runtime installed
_NO_TORCH = textwrap.dedent("""
    import runpy, sys
    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}")
    sys.meta_path.insert(0, NoTorch())
    sys.argv = sys.argv[1:]
    runpy.run_module(sys.argv[0], run_name="__main__")
""")


def _run_without_torch(module, *args):
    return subprocess.run([sys.executable, "-c", _NO_TORCH, module, *args], capture_output=True, text=True,
                          timeout=300)


def test_torch_clis_say_one_line_without_torch(tmp_path):
    for module, args in (("osnet_edge.export.cli", ["--width", "0.25", "--format", "onnx", "-o", str(tmp_path)]),
                         ("osnet_edge.training.cli", ["train", "--data", f"market1501:{tmp_path}"])):
        r = _run_without_torch(module, *args)
        assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "'torch'" in lines[0] and "pip install 'osnet-edge[train]'" in lines[0], lines
    assert not list(tmp_path.iterdir())


def test_bench_runs_without_torch(tmp_path):
    """The device is where latency matters: osnet-bench times an artifact with no torch, Mult-Adds from its
    metadata, no eager baseline."""
    out = tmp_path / "bench.json"
    r = _run_without_torch("osnet_edge.benchmarks.cli", str(onnx_path()), "--batch", "2", "--iters", "2",
                           "--warmup", "0", "--rounds", "1", "--modes", "model", "--no-probe", "--json", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "no PyTorch eager baseline" in r.stderr
    import json

    (row,) = json.loads(out.read_text())["rows"]
    meta = Embedder(onnx_path()).meta
    assert row["mult_adds"] == meta.extra["mult_adds"] > 0 and row["params"] == meta.extra["params"] > 0
    assert row["speedup"] is None and row["executes"] == "fp32" and row["throughput"] > 0
