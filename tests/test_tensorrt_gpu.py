"""TensorRT on a real GPU: engine builds, parity with PyTorch, the runtime's batching and buffers.

Skipped without CUDA (the `gpu` marker) or without the tensorrt/cuda-python packages. Latency is not
tested here (benchmarks/gpu_verify.py measures and records it). The engines are small (osnet_x0_25 and
osnet_ain_x0_25 at 128x64, max batch 8) so the whole file builds in about a minute on a desktop GPU.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

trt = pytest.importorskip("tensorrt")
pytest.importorskip("osnet_edge.runtime.tensorrt_common").import_cudart()  # cuda-python, either layout

from osnet_edge import Embedder, build_model  # noqa: E402
from osnet_edge.errors import ArtifactError, InputError  # noqa: E402
from osnet_edge.export.api import export_model  # noqa: E402
from osnet_edge.preprocess import to_batch  # noqa: E402
from osnet_edge.runtime.tensorrt_common import read_sidecar, sidecar_path  # noqa: E402
from osnet_edge.synthetic import synthetic_crops  # noqa: E402

SIZE = (128, 64)
MAX_BATCH = 8


@pytest.fixture(scope="module")
def crops():
    return list(synthetic_crops(19, seed=3))


def _model(arch):
    import torch

    torch.manual_seed(0)
    return build_model(arch, input_size=SIZE).eval()


def _reference(model, crops):
    import torch

    from osnet_edge.runtime.embedder import l2_normalize

    m = model
    with torch.inference_mode():
        x = to_batch(crops, m.input_size)
        return l2_normalize(m(torch.from_numpy(x)).float().numpy())


def _min_cos(a, b):
    return float(np.min(np.sum(a * b, axis=1)))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("trt")
    return d


@pytest.mark.parametrize("arch,half,need", [("osnet_x0_25", False, 0.99999), ("osnet_x0_25", True, 0.999),
                                            ("osnet_ain_x0_25", True, 0.999), ("osnet_ibn_x1_0", True, 0.999)])
def test_engine_builds_verifies_and_embeds(arch, half, need, crops, workdir):
    model = _model(arch)
    res = export_model(model, "trt", workdir / f"{arch}_{'fp16' if half else 'fp32'}.engine", half=half,
                       max_batch=MAX_BATCH, batch_sizes=(1, MAX_BATCH - 1), quiet=True)
    assert res.verified and res.parity["min_cos"] >= need
    assert res.path.is_file() and sidecar_path(res.path).is_file()
    assert not list(workdir.glob(".*partial*")), "temporary files left behind"
    meta = read_sidecar(res.path)
    assert meta.precision == ("fp16" if half else "fp32") and meta.input_size == SIZE
    facts = meta.extra
    assert facts["tensorrt_version"] == trt.__version__ and facts["profile"]["max"][0] == MAX_BATCH
    if "ain" in arch or "ibn" in arch:
        assert facts["fp32_layers"] > 0, "InstanceNorm layers were not pinned to FP32"

    with Embedder(str(res.path)) as emb:
        assert emb.backend.min_batch == 1 and emb.backend.max_batch == MAX_BATCH
        feats = emb.embed(crops)  # 19 crops: split into 8 + 8 + 3 by the Embedder
        assert feats.shape == (19, 512) and feats.dtype == np.float32
        assert _min_cos(feats, _reference(model, crops)) >= need
        # one crop at a time (batch 1 reuses the grown buffers) gives the same rows
        single = np.concatenate([emb.embed(crops[i:i + 1]) for i in (0, 7, 18)])
        np.testing.assert_allclose(single, feats[[0, 7, 18]], atol=2e-3 if half else 1e-5)


def test_int8_engine_with_fidelity_report(workdir):
    """10.x: TensorRT's calibrator (cache beside the engine); 11.x: the Q/DQ ONNX (no calibrator, no flags)."""
    strong = not hasattr(trt.BuilderFlag, "FP16")
    model = _model("osnet_x0_25")
    out = workdir / "x025_int8.engine"
    res = export_model(model, "trt", out, int8=True, calib="generated:128", max_batch=MAX_BATCH,
                       batch_sizes=(1, MAX_BATCH - 1), quiet=True, holdout_size=64, calib_size=128)
    names = {p.name for p in res.files}
    assert {"x025_int8.engine", "x025_int8.engine.json", "x025_int8.fidelity.json"} <= names
    assert ("x025_int8.engine.calib" in names) is not strong
    assert res.parity["min_cos"] >= 0.98
    fid = json.loads((workdir / "x025_int8.fidelity.json").read_text())
    assert fid["generated"] is True and fid["cosine_mean"] >= 0.98
    meta = read_sidecar(res.path)
    assert meta.extra["strongly_typed"] is strong
    if strong:
        assert meta.extra["builder_flags"] == [] and meta.extra["calibrator"] == "explicit (Q/DQ ONNX)"
    else:
        assert "INT8" in meta.extra["builder_flags"] and "FP16" in meta.extra["builder_flags"]
        assert meta.extra["calibrator"] == "entropy"


def test_backend_rejects_out_of_profile_batches_and_wrong_shapes(workdir, crops):
    model = _model("osnet_x0_25")
    res = export_model(model, "trt", workdir / "small.engine", max_batch=4, min_batch=2, opt_batch=2,
                       batch_sizes=(2, 3), quiet=True)
    with Embedder(str(res.path)) as emb:
        be = emb.backend
        assert (be.min_batch, be.max_batch) == (2, 4)
        x = emb.preprocess(crops[:5])
        with pytest.raises(InputError, match="batches of 2 to 4"):
            be.run(x)
        with pytest.raises(InputError, match="takes"):
            be.run(x[:2, :, :64])
        one = emb.embed(crops[:1])  # the Embedder pads a single crop up to min batch 2
        assert one.shape == (1, 512)
        assert _min_cos(one, _reference(model, crops[:1])) >= 0.99999


def test_engine_from_another_tensorrt_is_refused_before_deserializing(workdir):
    model = _model("osnet_x0_25")
    res = export_model(model, "trt", workdir / "moved.engine", max_batch=2, batch_sizes=(1, 2), quiet=True)
    side = sidecar_path(res.path)
    d = json.loads(side.read_text())
    d["extra"]["tensorrt_version"] = "8.5.3.1"
    d["extra"]["compute_capability"] = "5.3"
    d["extra"]["gpu_name"] = "NVIDIA Tegra X1"
    side.write_text(json.dumps(d))
    with pytest.raises(ArtifactError, match=r"TensorRT 8\.5\.3\.1.*Tegra X1"):
        Embedder(str(res.path))


def test_corrupt_engine_is_a_clear_error(workdir):
    bad = workdir / "corrupt.engine"
    bad.write_bytes(b"\x00" * 1024)
    with pytest.raises(ArtifactError, match="could not deserialize"):
        Embedder(str(bad), input_size=SIZE)
