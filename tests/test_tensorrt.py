"""TensorRT: everything that can be checked without a GPU (the GPU half is tests/test_tensorrt_gpu.py).

No-GPU behaviour, install/version/GPU checks, the sidecar, the profile and flag decisions, the
calibration batches (through THE preprocessing) and the packaging markers. CUDA is faked where a GPU
would be present, so these tests assert the same on a GPU machine.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from osnet_edge.errors import ArtifactError, MissingDependencyError, ModelConfigError, OsnetEdgeError
from osnet_edge.metadata import ModelMeta
from osnet_edge.runtime import tensorrt_common as tc

ROOT = Path(__file__).resolve().parents[1]
FAKE_GPU = tc.GPU(0, "NVIDIA Fake 4090", 8, 9)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(tc, "cuda_gpus", lambda: ())


@pytest.fixture
def fake_gpu_no_packages(monkeypatch):
    """A machine with a GPU but neither tensorrt nor cuda-python installed."""
    monkeypatch.setattr(tc, "cuda_gpus", lambda: (FAKE_GPU,))
    for name in ("tensorrt", "cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules makes `import` raise ImportError


@pytest.fixture
def engine_file(tmp_path):
    p = tmp_path / "osnet_x0_25_256x128_fp16.engine"
    p.write_bytes(b"not really an engine")
    return p


def _meta(**extra):
    return ModelMeta(arch="osnet_x0_25", width=0.25, input_size=(256, 128), precision="fp16", extra=extra)


# ------------------------------------------------------------------------------------------- without a GPU

def test_modules_import_without_tensorrt():
    import osnet_edge.export.tensorrt as trt_export
    import osnet_edge.runtime.tensorrt_backend as backend

    assert backend.TensorRTBackend.thread_safe is False
    assert "tensorrt" not in sys.modules or sys.modules["tensorrt"] is None or tc.cuda_gpus()
    assert callable(trt_export.build_engine)


def test_embedder_on_engine_without_gpu_is_one_clear_line(no_gpu, engine_file):
    from osnet_edge import Embedder

    with pytest.raises(tc.NoCudaGPUError) as err:
        Embedder(str(engine_file))
    assert str(err.value) == "TensorRT needs an NVIDIA GPU with CUDA; none found"
    assert isinstance(err.value, OsnetEdgeError)


def test_plan_suffix_also_opens_tensorrt(no_gpu, tmp_path):
    from osnet_edge import Embedder

    plan = tmp_path / "model.plan"
    plan.write_bytes(b"x")
    with pytest.raises(tc.NoCudaGPUError, match="none found"):
        Embedder(str(plan))


def test_export_trt_without_gpu_fails_fast_and_writes_nothing(no_gpu, tmp_path, monkeypatch):
    from osnet_edge import build_model
    from osnet_edge.export import onnx_writer
    from osnet_edge.export.api import export_model

    called = []
    monkeypatch.setattr(onnx_writer, "export_onnx", lambda *a, **k: called.append(1))
    model = build_model("osnet_x0_25")
    for kwargs in ({}, {"half": True}, {"int8": True, "calib": "generated:64"}):
        with pytest.raises(tc.NoCudaGPUError) as err:
            export_model(model, "trt", tmp_path, **kwargs)
        assert str(err.value) == tc.NO_GPU
    assert not called, "the ONNX export must not run when no GPU can build the engine"
    assert list(tmp_path.iterdir()) == []


def test_trt_refuses_asymmetric_int8_activations(no_gpu, tmp_path):
    from osnet_edge import build_model
    from osnet_edge.errors import ModelConfigError
    from osnet_edge.export.api import export_model

    with pytest.raises(ModelConfigError, match="zero point 0 only"):
        export_model(build_model("osnet_x0_25"), "trt", tmp_path, int8=True, calib="generated:8", qdq=True,
                     activations="asymmetric")
    assert list(tmp_path.iterdir()) == []


def test_gpu_without_tensorrt_names_the_extra(fake_gpu_no_packages, engine_file):
    from osnet_edge import Embedder

    with pytest.raises(MissingDependencyError) as err:
        Embedder(str(engine_file))
    msg = str(err.value)
    assert "osnet-edge[tensorrt]" in msg and "'tensorrt'" in msg and "\n" not in msg


def test_missing_cuda_python_names_the_extra(fake_gpu_no_packages):
    with pytest.raises(MissingDependencyError, match=r"osnet-edge\[tensorrt\]"):
        tc.import_cudart()


def test_require_gpu_index_out_of_range(monkeypatch):
    monkeypatch.setattr(tc, "cuda_gpus", lambda: (FAKE_GPU,))
    assert tc.require_gpu("cuda:0") == FAKE_GPU
    with pytest.raises(tc.NoCudaGPUError, match="device 2 requested but only 1 found"):
        tc.require_gpu("cuda:2")


@pytest.mark.parametrize("device,index", [(None, 0), ("cuda", 0), ("cuda:1", 1), ("GPU:3", 3), (2, 2), ("1", 1)])
def test_device_index(device, index):
    assert tc.device_index(device) == index


def test_device_index_rejects_cpu():
    with pytest.raises(OsnetEdgeError, match="CUDA GPUs"):
        tc.device_index("cpu")


def test_driver_probe_answers_without_crashing():
    gpus = tc.cuda_gpus()
    assert isinstance(gpus, tuple)
    assert all(g.major >= 3 and g.name for g in gpus)


# ------------------------------------------------------------------------------------------- sidecar + compatibility

def test_sidecar_round_trip_is_the_one_schema(tmp_path):
    engine = tmp_path / "m.engine"
    facts = tc.engine_facts("10.3.0.26", FAKE_GPU, {"input": "input", "min": [1, 3, 256, 128],
                                                   "opt": [16, 3, 256, 128], "max": [32, 3, 256, 128]})
    path = tc.write_sidecar(engine, _meta(**facts))
    assert path.name == "m.engine.json" and not list(tmp_path.glob("*.tmp"))
    back = tc.read_sidecar(engine)
    assert back == _meta(**facts)
    raw = json.loads(path.read_text())
    assert raw["extra"]["compute_capability"] == "8.9" and raw["extra"]["gpu_name"] == FAKE_GPU.name
    assert raw["input_size"] == [256, 128] and raw["precision"] == "fp16"


def test_missing_sidecar_is_none_and_broken_one_is_an_error(tmp_path):
    engine = tmp_path / "m.engine"
    assert tc.read_sidecar(engine) is None
    tc.sidecar_path(engine).write_text("{not json")
    with pytest.raises(ArtifactError, match="m.engine.json"):
        tc.read_sidecar(engine)


def test_engine_from_another_tensorrt_and_gpu_is_refused_naming_both():
    meta = _meta(tensorrt_version="10.0.1.6", gpu_name="Orin", compute_capability="8.7")
    with pytest.raises(ArtifactError) as err:
        tc.check_engine_compatible(meta, "10.3.0.26", FAKE_GPU, "x.engine")
    msg = str(err.value)
    for part in ("10.0.1.6", "10.3.0.26", "Orin", "8.7", FAKE_GPU.name, "8.9", "rebuild"):
        assert part in msg


def test_engine_tensorrt_version_only_mismatch():
    meta = _meta(tensorrt_version="8.6.1", gpu_name=FAKE_GPU.name, compute_capability="8.9")
    with pytest.raises(ArtifactError, match=r"TensorRT 8\.6\.1, this machine has TensorRT 10\.3\.0") as err:
        tc.check_engine_compatible(meta, "10.3.0", FAKE_GPU, "x.engine")
    assert "compute capability 8.9, this machine" not in str(err.value)


def test_engine_compatible_cases():
    same = _meta(tensorrt_version="10.3.0.26", gpu_name=FAKE_GPU.name, compute_capability="8.9")
    assert tc.check_engine_compatible(same, "10.3.0.30", FAKE_GPU, "x.engine") == []  # build number differs only
    other_card = _meta(tensorrt_version="10.3.0", gpu_name="NVIDIA RTX 4000 Ada", compute_capability="8.9")
    warnings = tc.check_engine_compatible(other_card, "10.3.0", FAKE_GPU, "x.engine")
    assert len(warnings) == 1 and "RTX 4000 Ada" in warnings[0]
    assert tc.check_engine_compatible(None, "10.3.0", FAKE_GPU, "x.engine") == []


# ------------------------------------------------------------------------------------------- build decisions

def test_profile_shapes_default_and_custom():
    from osnet_edge.export.tensorrt_build import profile_shapes

    p = profile_shapes((3, 256, 128))
    assert p == {"min": [1, 3, 256, 128], "opt": [16, 3, 256, 128], "max": [32, 3, 256, 128]}
    p = profile_shapes((3, 160, 64), max_batch=1)
    assert p["min"][0] == p["opt"][0] == p["max"][0] == 1
    assert profile_shapes((3, 8, 8), max_batch=64, opt_batch=8, min_batch=2)["opt"] == [8, 3, 8, 8]


@pytest.mark.parametrize("kw", [dict(max_batch=4, opt_batch=8), dict(max_batch=8, min_batch=0),
                                dict(max_batch=8, min_batch=4, opt_batch=2)])
def test_profile_shapes_rejects_bad_ranges(kw):
    from osnet_edge.export.tensorrt_build import profile_shapes

    with pytest.raises(ModelConfigError, match="min_batch <= opt_batch <= max_batch"):
        profile_shapes((3, 256, 128), **kw)


def test_builder_flags():
    from osnet_edge.export.tensorrt_build import builder_flags

    assert builder_flags("fp32") == {"set": [], "clear": ["TF32"]}
    assert builder_flags("fp16")["set"] == ["FP16"]
    int8 = builder_flags("int8")["set"]
    assert "INT8" in int8 and "FP16" in int8, "INT8 keeps the FP16 fallback"
    assert "PREFER_PRECISION_CONSTRAINTS" in builder_flags("fp16", instance_norm_fp32=True)["set"]
    # TensorRT 11: no precision flags (none exist); FP32 still turns TF32 off
    assert builder_flags("fp16", strongly_typed=True) == builder_flags("int8", True, True, True) == {"set": [],
                                                                                                    "clear": []}
    assert builder_flags("fp32", strongly_typed=True) == {"set": [], "clear": ["TF32"]}
    with pytest.raises(ModelConfigError):
        builder_flags("bf16")


@pytest.mark.parametrize("ltype,name,pinned", [
    ("LayerType.NORMALIZATION", "/conv2/IN/InstanceNormalization", True),
    ("LayerType.PLUGIN_V2", "/conv3/IN/InstanceNormalization", True),
    ("LayerType.REDUCE", "instance_norm_mean_3", True),
    ("LayerType.CONVOLUTION", "/conv2/conv2.0/conv1/Conv", False),
    ("LayerType.ACTIVATION", "Relu_7", False)])
def test_instance_norm_layers_are_pinned(ltype, name, pinned):
    from osnet_edge.export.tensorrt_build import is_fp32_pinned_layer

    assert is_fp32_pinned_layer(ltype, name) is pinned


@pytest.mark.parametrize("n,bs", [(300, 32), (64, 32), (5, 32), (33, 8), (1, 1)])
def test_calibration_index_batches_full_and_covering(n, bs):
    from osnet_edge.export.tensorrt_calib import calibration_index_batches

    batches = calibration_index_batches(n, bs)
    assert all(len(b) == bs for b in batches)
    seen = np.concatenate(batches)
    assert set(seen.tolist()) == set(range(n))
    assert len(batches) == -(-n // bs)
    assert np.array_equal(seen[:n], np.arange(n))  # in order; the wrap-around only completes the last batch


def test_calibration_feeder_uses_the_one_preprocessing():
    from osnet_edge.calibration.sources import CropSet
    from osnet_edge.export.tensorrt_calib import CalibrationFeeder
    from osnet_edge.preprocess import to_batch

    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (int(rng.integers(40, 90)), int(rng.integers(20, 50)), 3), dtype=np.uint8)
             for _ in range(11)]
    meta = ModelMeta(arch="osnet_x0_25", width=0.25, input_size=(64, 32), mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.25))
    feeder = CalibrationFeeder(CropSet(crops, "test"), meta, batch_size=4)
    batches = list(feeder)
    assert len(batches) == len(feeder) == 3
    assert all(b.shape == (4, 3, 64, 32) and b.dtype == np.float32 and b.flags.c_contiguous for b in batches)
    want = to_batch(crops, (64, 32), meta.mean, meta.std, meta.color_order)
    np.testing.assert_array_equal(np.concatenate(batches)[:11], want)
    np.testing.assert_array_equal(batches[-1][3], want[0])  # completed from the start of the set


def test_int8_without_calibration_says_what_to_pass():
    from osnet_edge.export.tensorrt_calib import load_calibration

    with pytest.raises(ModelConfigError, match="--calib SOURCE"):
        load_calibration(None, _meta())


def test_timing_cache_is_per_gpu_and_version(tmp_path, monkeypatch):
    from osnet_edge.export.tensorrt_build import default_cache_dir, timing_cache_file

    monkeypatch.setenv("OSNET_EDGE_CACHE", str(tmp_path))
    a = timing_cache_file(FAKE_GPU, "10.3.0")
    b = timing_cache_file(tc.GPU(0, "Orin", 8, 7), "10.3.0")
    c = timing_cache_file(FAKE_GPU, "10.4.0")
    assert len({a, b, c}) == 3 and a.parent == default_cache_dir() == tmp_path / "tensorrt"
    assert "sm89" in a.name and "10.3.0" in a.name and re.fullmatch(r"[\w.\-]+", a.name)


def test_onnx_facts_finds_instance_norm_and_qdq(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from osnet_edge.export.tensorrt_typed import onnx_facts

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [4], [1.0] * 4),
             helper.make_tensor("b", TensorProto.FLOAT, [4], [0.0] * 4)]
    plain = helper.make_graph([helper.make_node("Relu", ["input"], ["y"])], "g", [x], [y])
    inorm = helper.make_graph([helper.make_node("InstanceNormalization", ["input", "s", "b"], ["y"])], "g", [x], [y],
                              inits)
    for name, g in (("plain", plain), ("in", inorm)):
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / f"{name}.onnx"))
    assert onnx_facts(tmp_path / "plain.onnx") == {"instance_norm": False, "qdq": False, "fp16": False,
                                                   "input_name": "input"}
    assert onnx_facts(tmp_path / "in.onnx")["instance_norm"] is True


def test_strongly_typed_fp16_onnx_keeps_instance_norm_fp32(tmp_path):
    """TensorRT 11 has no FP16 flag: its FP16 engine is an FP16 ONNX, InstanceNorm wrapped in FP32 Casts.
    The rewritten graph must be valid, FP16 inside, FP32 at its edges, and compute what the FP32 graph does."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from osnet_edge.export.tensorrt_typed import onnx_facts, strongly_typed_onnx

    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4, 3, 3], (rng.standard_normal(144) * 0.2).tolist())
    s = helper.make_tensor("s", TensorProto.FLOAT, [4], [1.0, 0.5, 2.0, 1.5])
    b = helper.make_tensor("b", TensorProto.FLOAT, [4], [0.0, 0.1, -0.1, 0.2])
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])
    g = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
                           helper.make_node("InstanceNormalization", ["c", "s", "b"], ["n"], name="in1"),
                           helper.make_node("Relu", ["n"], ["y"], name="relu")], "g", [x], [y], [w, s, b])
    src = tmp_path / "fp32.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    facts = onnx_facts(src)
    out, pinned = strongly_typed_onnx(src, tmp_path / "fp16.onnx", "fp16", facts)
    assert out == tmp_path / "fp16.onnx" and pinned == 1
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    node = next(n for n in proto.graph.node if n.op_type == "InstanceNormalization")
    producers = {o: n for n in proto.graph.node for o in n.output}
    assert all(producers[i].op_type == "Cast" and producers[i].attribute[0].i == TensorProto.FLOAT for i in node.input)
    assert onnx_facts(out)["fp16"] and proto.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    xs = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"input": xs})[0]
    half = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": xs})[0]
    assert half.dtype == np.float32 and np.abs(half - ref).max() < 2e-2
    # FP32 and an ONNX that is already FP16 pass through untouched
    assert strongly_typed_onnx(src, tmp_path / "x.onnx", "fp32", facts) == (src, 0)
    assert strongly_typed_onnx(out, tmp_path / "y.onnx", "fp16", onnx_facts(out)) == (out, 0)
    with pytest.raises(Exception, match="Q/DQ ONNX"):
        strongly_typed_onnx(src, tmp_path / "q.onnx", "int8", facts)


@pytest.mark.filterwarnings("ignore:calibration set generated")
def test_strongly_typed_int8_onnx_is_quantized_with_qdq(tmp_path):
    """TensorRT 11's INT8 from an FP32 ONNX: Q/DQ with zero point 0 from the crops, then the Q/DQ graph
    is what the build parses (onnx_facts sees it as explicit)."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from osnet_edge.export.tensorrt_typed import onnx_facts, strongly_typed_onnx

    rng = np.random.default_rng(1)
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 3, 3], (rng.standard_normal(216) * 0.2).tolist())
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 16, 8])
    g = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
                           helper.make_node("Relu", ["c"], ["y"], name="relu")], "g", [x], [y], [w])
    src = tmp_path / "fp32.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    meta = ModelMeta(arch="osnet_x0_25", width=0.25, input_size=(16, 8), precision="int8")
    out, pinned = strongly_typed_onnx(src, tmp_path / "q.onnx", "int8", onnx_facts(src), calib="generated:16",
                                      meta=meta, progress=False)
    assert out == tmp_path / "q.onnx" and pinned == 0 and onnx_facts(out)["qdq"]
    proto = onnx.load(str(out))
    init = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    zero_points = [init[n.input[2]] for n in proto.graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in init]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points), "TensorRT needs symmetric"


def test_trt_writer_is_registered():
    from osnet_edge.export import api, tensorrt

    assert api.SUFFIXES["trt"] == ".engine"
    assert api.WRITERS["trt"] is tensorrt.write_trt and api.INT8_WRITERS["trt"] is tensorrt.write_trt_int8
    assert tensorrt.write_trt.default_input_format == "float_nchw"


# ------------------------------------------------------------------------------------------- install

def _tensorrt_extra():
    """The 'tensorrt' extra as setup.py declares it (read with ast: setup.py runs setup() when executed)."""
    import ast

    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "extras":
            for key, value in zip(node.value.keys, node.value.values):
                if ast.literal_eval(key) == "tensorrt":
                    return ast.literal_eval(value)
    raise AssertionError("setup.py declares no 'tensorrt' extra")


def test_tensorrt_extra_markers_skip_desktop_wheel_on_jetson():
    from packaging.requirements import Requirement

    reqs = {Requirement(r).name: Requirement(r) for r in _tensorrt_extra()}
    assert set(reqs) == {"tensorrt", "cuda-python"}

    def wanted(name, machine, platform):
        return reqs[name].marker.evaluate({"platform_machine": machine, "sys_platform": platform})

    assert wanted("tensorrt", "x86_64", "linux") and wanted("tensorrt", "AMD64", "win32")
    assert not wanted("tensorrt", "aarch64", "linux"), "a Jetson must use JetPack's TensorRT, not a desktop wheel"
    assert not wanted("tensorrt", "x86_64", "darwin")
    assert wanted("cuda-python", "aarch64", "linux") and wanted("cuda-python", "x86_64", "linux")


def test_make_test_does_not_install_tensorrt():
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip" in line.lower() and "install" in line]
    assert installs and not any("tensorrt" in line or "[all" in line for line in installs)
    src = (ROOT / "setup.py").read_text()
    assert 'if k != "tensorrt"' in src, "the 'all' extra must leave the multi-GB TensorRT out"


def test_writer_preflight_for_the_cli(no_gpu):
    from osnet_edge.export import api

    for writer in (api.WRITERS["trt"], api.INT8_WRITERS["trt"]):
        with pytest.raises(tc.NoCudaGPUError, match="^TensorRT needs an NVIDIA GPU with CUDA; none found$"):
            writer.preflight(device=None)
