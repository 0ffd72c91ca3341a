"""The TensorRT backend's host logic on CPU, against stand-ins for tensorrt and cuda-python.

The stand-ins do what the real APIs do with memory: "device" allocations are host memory here and
copies are memmoves at the given addresses, and the stand-in engine computes features as a fixed linear
map of whatever bytes sit at the input address. So a wrong pointer, size, shape, dtype or buffer reuse in
the backend shows up as wrong features, without a GPU. The real thing is tests/test_tensorrt_gpu.py.

The stand-ins cannot drift from the real modules: their enums and base classes are built from the API
snapshots of the real bindings (tests/data/tensorrt_api, one per TensorRT release), the build tests run once
per release, and project code touching a stand-in attribute that the release's real class lacks fails
(`_strict`). tests/test_tensorrt_api.py checks the stand-ins' method names and arities against the snapshots.
"""
from __future__ import annotations

import ctypes
import enum
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from osnet_edge.errors import ArtifactError, InputError
from osnet_edge.metadata import ModelMeta
from osnet_edge.runtime import tensorrt_common as tc
from osnet_edge.runtime.embedder import l2_normalize

import tensorrt_api_usage as api

SNAPSHOTS = {".".join(map(str, k)): v for k, v in api.load_snapshots()["tensorrt"].items()}
RELEASES = sorted(SNAPSHOTS, key=lambda r: tuple(map(int, r.split("."))))[-2:]  # newest 10.x and 11.x
TESTS_DIR = str(Path(__file__).resolve().parent)

H, W, D = 32, 16, 512
GPU = tc.GPU(0, "NVIDIA Fake", 8, 9)
PROJ = np.random.default_rng(0).standard_normal((3 * H * W, D)).astype(np.float32) / 40


class FakeCudart(types.ModuleType):
    class cudaError_t(enum.IntEnum):
        cudaSuccess = 0
        cudaErrorMemoryAllocation = 2

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def __init__(self):
        super().__init__("cuda.bindings.runtime")
        self.live, self.pinned, self.log = {}, set(), []

    def _alloc(self, n):
        buf = ctypes.create_string_buffer(int(n))
        self.live[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    def cudaMallocHost(self, n):
        p = self._alloc(n)
        self.pinned.add(p)
        return (self.cudaError_t.cudaSuccess, p)

    def cudaMalloc(self, n):
        return (self.cudaError_t.cudaSuccess, self._alloc(n))

    def cudaFree(self, p):
        self.live.pop(p)
        return (self.cudaError_t.cudaSuccess,)

    def cudaFreeHost(self, p):
        self.pinned.discard(p)
        return self.cudaFree(p)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        assert dst in self.live and src in self.live, "copy between addresses that were never allocated"
        assert n <= len(self.live[dst]) and n <= len(self.live[src]), "copy past the end of a buffer"
        if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice:
            assert src in self.pinned, "async copies must start from pinned host memory"
        ctypes.memmove(dst, src, n)
        self.log.append(("copy", int(kind), n))
        return (self.cudaError_t.cudaSuccess,)

    def cudaMemcpy(self, dst, src, n, kind):
        ctypes.memmove(dst, src, n)
        return (self.cudaError_t.cudaSuccess,)

    def cudaStreamCreate(self):
        return (self.cudaError_t.cudaSuccess, 7)

    def cudaStreamSynchronize(self, s):
        return (self.cudaError_t.cudaSuccess,)

    def cudaStreamDestroy(self, s):
        return (self.cudaError_t.cudaSuccess,)

    def cudaSetDevice(self, i):
        return (self.cudaError_t.cudaSuccess,)

    def cudaGetErrorString(self, err):
        return (self.cudaError_t.cudaSuccess, b"fake error")


class FakeContext:
    def __init__(self, engine):
        self.engine, self.shape, self.addr = engine, None, {}

    def set_input_shape(self, name, shape):
        lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
        self.shape = tuple(shape)
        return lo[0] <= shape[0] <= hi[0] and tuple(shape[1:]) == tuple(hi[1:])

    def get_tensor_shape(self, name):
        return (self.shape[0], D)

    def set_tensor_address(self, name, ptr):
        self.addr[name] = ptr

    def execute_async_v3(self, stream):
        n = self.shape[0]
        count = n * 3 * H * W
        x = np.frombuffer((ctypes.c_float * count).from_address(self.addr["input"]), np.float32).reshape(n, -1)
        y = x @ PROJ
        ctypes.memmove(self.addr["features"], y.ctypes.data, y.nbytes)
        return True


class FakeEngine:
    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi
        self.num_io_tensors = 2

    def get_tensor_name(self, i):
        return ("input", "features")[i]

    def get_tensor_mode(self, name):
        modes = sys.modules["tensorrt"].TensorIOMode
        return modes.INPUT if name == "input" else modes.OUTPUT

    def get_tensor_dtype(self, name):
        return np.float32

    def get_tensor_profile_shape(self, name, idx):
        return (self.lo, 3, H, W), (self.hi, 3, H, W), (self.hi, 3, H, W)

    def get_tensor_shape(self, name):
        return (-1, D) if name == "features" else (-1, 3, H, W)

    def create_execution_context(self):
        return FakeContext(self)


class FakeTRT(types.ModuleType):
    __version__ = "10.3.0.26"

    class Logger:
        WARNING = 2

        def __init__(self, level=None):
            pass

    def __init__(self, snapshot=None):
        super().__init__("tensorrt")
        for name, value in _trt_enums(snapshot or SNAPSHOTS[RELEASES[-1]]).items():
            setattr(self, name, value)

    @staticmethod
    def nptype(dtype):
        return dtype

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            if not blob.startswith(b"FAKE"):
                return None
            lo, hi = blob[4], blob[5]
            return FakeEngine(lo, hi)


@pytest.fixture
def fakes(monkeypatch):
    cudart, trt = FakeCudart(), FakeTRT()
    cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    bindings.runtime, cuda.bindings = cudart, bindings
    for name, mod in (("tensorrt", trt), ("cuda", cuda), ("cuda.bindings", bindings),
                      ("cuda.bindings.runtime", cudart)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(tc, "cuda_gpus", lambda: (GPU,))
    for fake, real in ((FakeContext, "IExecutionContext"), (FakeEngine, "ICudaEngine"), (FakeTRT.Runtime, "Runtime")):
        _strict(monkeypatch, fake, SNAPSHOTS[RELEASES[-1]], real)
    return cudart


class _Enum:
    def __init__(self, *names):
        for n in names:
            setattr(self, n, n)


def _trt_enums(snapshot) -> dict:
    """The stand-in module's enums and subclassable bases, as the real release has them (names only)."""
    names = snapshot["names"]
    out = {n: _Enum(*e["members"]) for n, e in names.items() if e["kind"] == "enum"}
    for base in ("IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator", "IProgressMonitor"):
        if base in names:
            out[base] = type(base, (_Base,), {})
    return out


def _strict(monkeypatch, fake_cls, snapshot, real_name):
    """Project code (anything outside tests/) may only touch the attributes the real class has in this release;
    the stand-in's own bookkeeping stays free."""
    real = set(snapshot["names"][real_name]["members"])
    label = f"TensorRT {snapshot['version']} {real_name}"

    def check(name):
        if not name.startswith("_") and name not in real \
                and not sys._getframe(2).f_code.co_filename.startswith(TESTS_DIR):
            raise AttributeError(f"{label} has no attribute {name!r}")

    def getattribute(self, name):
        check(name)
        return object.__getattribute__(self, name)

    def setattr_(self, name, value):
        check(name)
        object.__setattr__(self, name, value)

    monkeypatch.setattr(fake_cls, "__getattribute__", getattribute)
    monkeypatch.setattr(fake_cls, "__setattr__", setattr_)


def _engine(tmp_path, lo=1, hi=8, **extra):
    p = tmp_path / "fake.engine"
    p.write_bytes(b"FAKE" + bytes([lo, hi]))
    facts = dict(tensorrt_version="10.3.0.26", gpu_name=GPU.name, compute_capability="8.9")
    facts.update(extra)
    tc.write_sidecar(p, ModelMeta(arch="osnet_x0_25", width=0.25, input_size=(H, W), feature_dim=D, precision="fp16",
                                  extra=facts))
    return p


def _crops(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(20, 70)), int(rng.integers(10, 40)), 3), dtype=np.uint8)
            for _ in range(n)]


def _expected(crops):
    from osnet_edge.preprocess import to_batch

    return l2_normalize(to_batch(crops, (H, W)).reshape(len(crops), -1) @ PROJ)


def test_embedder_over_engine_splits_pads_and_reuses_buffers(fakes, tmp_path):
    from osnet_edge import Embedder

    crops = _crops(19)
    with Embedder(str(_engine(tmp_path, lo=2, hi=8))) as emb:
        be = emb.backend
        assert (be.min_batch, be.max_batch, be.feature_dim, emb.batch_size) == (2, 8, D, 8)
        assert emb.meta.input_size == (H, W) and emb.meta.extra["gpu_name"] == GPU.name
        feats = emb.embed(crops)  # 8 + 8 + 3, the Embedder's split
        np.testing.assert_allclose(feats, _expected(crops), rtol=1e-4, atol=1e-5)
        assert be._capacity == 8
        allocated = set(fakes.live)
        one = emb.embed(crops[5:6])  # padded up to the min batch of 2 by the Embedder
        np.testing.assert_allclose(one, _expected(crops[5:6]), rtol=1e-4, atol=1e-5)
        assert set(fakes.live) == allocated, "buffers must be reused across calls, not reallocated"
        again = emb.embed(crops)
        np.testing.assert_array_equal(again, feats)
    assert not fakes.live and not fakes.pinned, "close() must free every host and device buffer"


def test_buffers_grow_in_powers_of_two_up_to_max(fakes, tmp_path):
    from osnet_edge.runtime.tensorrt_backend import TensorRTBackend

    from osnet_edge.preprocess import to_batch

    be = TensorRTBackend(_engine(tmp_path, lo=1, hi=12))
    x = to_batch(_crops(12), (H, W))
    caps = []
    for n in (1, 3, 2, 5, 12):
        out = be.run(x[:n])
        assert out.shape == (n, D) and out.dtype == np.float32
        np.testing.assert_allclose(l2_normalize(out.copy()), _expected(_crops(12)[:n]), rtol=1e-4, atol=1e-5)
        caps.append(be._capacity)
    assert caps == [1, 4, 4, 8, 12]
    h2d = [c for c in fakes.log if c[1] == 1]
    assert h2d[-1][2] == 12 * 3 * H * W * 4 and h2d[0][2] == 3 * H * W * 4, "copies move exactly the batch"
    be.close()
    be.close()  # idempotent


def test_result_is_a_copy_not_the_pinned_buffer(fakes, tmp_path):
    from osnet_edge.preprocess import to_batch
    from osnet_edge.runtime.tensorrt_backend import TensorRTBackend

    be = TensorRTBackend(_engine(tmp_path))
    x = to_batch(_crops(4), (H, W))
    first = be.run(x[:2])
    keep = first.copy()
    be.run(x[2:4])
    np.testing.assert_array_equal(first, keep)
    be.close()


def test_backend_rejects_bad_batches(fakes, tmp_path):
    from osnet_edge.runtime.tensorrt_backend import TensorRTBackend

    be = TensorRTBackend(_engine(tmp_path, lo=2, hi=4))
    with pytest.raises(InputError, match="batches of 2 to 4"):
        be.run(np.zeros((5, 3, H, W), np.float32))
    with pytest.raises(InputError, match="batches of 2 to 4"):
        be.run(np.zeros((1, 3, H, W), np.float32))
    with pytest.raises(InputError, match=r"takes \(N, 3, 32, 16\)"):
        be.run(np.zeros((2, H, W, 3), np.float32))
    be.close()


def test_sidecar_of_another_engine_is_refused(fakes, tmp_path):
    from osnet_edge.runtime.tensorrt_backend import TensorRTBackend

    p = _engine(tmp_path)
    tc.write_sidecar(p, ModelMeta(arch="osnet_x0_25", width=0.25, input_size=(256, 128), extra={}))
    with pytest.raises(ArtifactError, match="sidecar says float_nchw 256x128"):
        TensorRTBackend(p)


def test_other_tensorrt_version_refused_before_deserializing(fakes, tmp_path, monkeypatch):
    from osnet_edge.runtime.tensorrt_backend import TensorRTBackend

    p = _engine(tmp_path, tensorrt_version="8.6.1")
    monkeypatch.setattr(FakeTRT.Runtime, "deserialize_cuda_engine",
                        lambda self, b: pytest.fail("deserialized an engine from another TensorRT"))
    with pytest.raises(ArtifactError, match=r"built with TensorRT 8\.6\.1, this machine has TensorRT 10\.3\.0\.26"):
        TensorRTBackend(p)


def test_undeserializable_engine_names_versions(fakes, tmp_path):
    from osnet_edge.runtime.tensorrt_backend import TensorRTBackend

    p = _engine(tmp_path)
    p.write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match=r"could not deserialize.*built with TensorRT 10\.3\.0\.26 on NVIDIA Fake"):
        TensorRTBackend(p)


def test_engine_without_sidecar_needs_input_size(fakes, tmp_path):
    from osnet_edge import Embedder

    p = _engine(tmp_path)
    tc.sidecar_path(p).unlink()
    with pytest.raises(ArtifactError, match="input_size"):
        Embedder(str(p))
    with Embedder(str(p), input_size=(H, W)) as emb:
        assert emb.embed(_crops(3)).shape == (3, D)


def test_concurrent_threads_share_one_embedder(fakes, tmp_path):
    from osnet_edge import Embedder

    crops = _crops(12, seed=5)
    want = _expected(crops)
    with Embedder(str(_engine(tmp_path, hi=4))) as emb:
        errors = []

        def work():
            try:
                for _ in range(5):
                    np.testing.assert_allclose(emb.embed(crops), want, rtol=1e-4, atol=1e-5)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors


# ------------------------------------------------------------------------------------------- the build path

class FakeLayer:
    def __init__(self, ltype, name):
        self.type, self.name, self.precision, self.out_types = ltype, name, None, {}
        self.num_outputs = 1

    def get_output(self, j):
        return types.SimpleNamespace(dtype="float32")

    def set_output_type(self, j, t):
        self.out_types[j] = t


class FakeNetwork:
    def __init__(self):
        self.layers, self.inputs = [], []
        self.num_outputs = 1

    num_inputs = property(lambda self: len(self.inputs))
    num_layers = property(lambda self: len(self.layers))

    def get_input(self, i):
        return self.inputs[i]

    def get_layer(self, i):
        return self.layers[i]


class FakeParser:
    def __init__(self, network, logger):
        self.network, self.flags, self.num_errors = network, set(), 0

    def set_flag(self, f):
        self.flags.add(f)

    def parse_from_file(self, path):
        import onnx

        proto = onnx.load(path)
        inp = proto.graph.input[0]
        dims = [d.dim_value or -1 for d in inp.type.tensor_type.shape.dim]
        self.network.inputs.append(types.SimpleNamespace(name=inp.name, shape=tuple(dims)))
        for node in proto.graph.node:
            ltype = "LayerType.NORMALIZATION" if node.op_type == "InstanceNormalization" else f"LayerType.{node.op_type}"
            self.network.layers.append(FakeLayer(ltype, node.name))
        return True


class FakeProfile:
    def set_shape(self, name, lo, opt, hi):
        self.shapes = (name, list(lo), list(opt), list(hi))


class FakeConfig:
    def __init__(self):
        self.flags, self.profiles, self.int8_calibrator, self.cal_profile = set(), [], None, None
        self.pool, self.progress_monitor, self.cache_blob = {}, None, None

    def set_memory_pool_limit(self, pool, n):
        self.pool[pool] = n

    def set_flag(self, f):
        self.flags.add(f)

    def clear_flag(self, f):
        self.flags.discard(f)
        self.cleared = getattr(self, "cleared", set()) | {f}

    def add_optimization_profile(self, p):
        self.profiles.append(p)

    def set_calibration_profile(self, p):
        self.cal_profile = p

    def create_timing_cache(self, blob):
        return types.SimpleNamespace(blob=bytes(blob))

    def set_timing_cache(self, cache, ignore_mismatch):
        self.cache_blob = cache.blob
        return True

    def get_timing_cache(self):
        return types.SimpleNamespace(serialize=lambda: (self.cache_blob or b"") + b"+timed")


class FakeBuilder:
    last = None

    def __init__(self, logger):
        FakeBuilder.last = self

    def create_network(self, flags):
        self.network = FakeNetwork()
        return self.network

    def create_builder_config(self):
        self.config = FakeConfig()
        return self.config

    def create_optimization_profile(self):
        return FakeProfile()

    def build_serialized_network(self, network, config):
        cal = config.int8_calibrator
        self.calibrated = 0
        if cal is not None and cal.read_calibration_cache() is None:
            _name, lo, _opt, _hi = config.cal_profile.shapes
            assert cal.get_batch_size() == lo[0]
            while True:
                ptrs = cal.get_batch(["input"])
                if ptrs is None:
                    break
                count = int(np.prod(lo))
                x = np.frombuffer((ctypes.c_float * count).from_address(ptrs[0]), np.float32)
                assert np.isfinite(x).all() and x.std() > 0.1, "calibration batch is not preprocessed crops"
                self.calibrated += 1
            cal.write_calibration_cache(b"CALIBRATION-TABLE")
        if self.monitor_ok(config):
            m = config.progress_monitor
            m.phase_start("Building", None, 2)
            assert m.step_complete("Building", 0) is True
            m.phase_finish("Building")
        _name, lo, _opt, hi = config.profiles[0].shapes
        return b"FAKE" + bytes([lo[0], hi[0]])

    @staticmethod
    def monitor_ok(config):
        return config.progress_monitor is not None


class _Base:
    def __init__(self):
        pass


@pytest.fixture(params=RELEASES)
def release(request):
    """The TensorRT release whose real API the build stand-ins take on: newest 10.x and newest 11.x."""
    return request.param


def _builder_api(trt, monkeypatch, release):
    """The build half of the stand-in module, shaped like `release`: its enums, its calibrator / monitor bases
    (11 has no calibrators), its version; project code touching what the release lacks fails."""
    snap = SNAPSHOTS[release]
    for base in ("IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator", "IProgressMonitor"):
        if hasattr(trt, base):
            delattr(trt, base)
    for name, value in _trt_enums(snap).items():
        setattr(trt, name, value)
    trt.__version__ = snap["version"]
    trt.Builder, trt.OnnxParser = FakeBuilder, FakeParser
    trt.float32, trt.float16 = "float32", "float16"
    trt.Logger.VERBOSE, trt.Logger.ERROR = 4, 1
    for fake, real in ((FakeBuilder, "Builder"), (FakeConfig, "IBuilderConfig"), (FakeNetwork, "INetworkDefinition"),
                       (FakeLayer, "ILayer"), (FakeParser, "OnnxParser"), (FakeProfile, "IOptimizationProfile")):
        _strict(monkeypatch, fake, snap, real)
    return release.startswith("11.")


def _fake_onnx(model, path, *, meta=None, **_):
    """What the fake parser reads of an OSNet ONNX: the input and the op types (InstanceNorm included);
    the real exporter costs ~15 s of this shared CPU and is tested by the export layer's own tests."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, H, W])
    y = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 512])
    ops = ["Conv", "InstanceNormalization", "Relu", "Conv", "InstanceNormalization", "GlobalAveragePool", "Gemm"]
    nodes = [helper.make_node(op, ["input" if i == 0 else f"t{i}"], [f"t{i + 1}" if i + 1 < len(ops) else "features"],
                              name=f"/{op}_{i}") for i, op in enumerate(ops)]
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y])), str(path))
    return path


@pytest.fixture
def small_model(monkeypatch):
    from osnet_edge.export import onnx_writer

    monkeypatch.setattr(onnx_writer, "export_onnx", _fake_onnx)
    from osnet_edge import build_model

    import torch

    torch.manual_seed(0)
    return build_model("osnet_ain_x0_25", input_size=(H, W)).eval()


def test_export_builds_through_the_builder_api(fakes, tmp_path, small_model, monkeypatch, release):
    from osnet_edge.export.api import export_model

    trt = sys.modules["tensorrt"]
    strong = _builder_api(trt, monkeypatch, release)
    monkeypatch.setenv("OSNET_EDGE_CACHE", str(tmp_path / "cache"))
    for run in (1, 2):
        res = export_model(small_model, "trt", str(tmp_path / "out") + "/", half=True, max_batch=8, verify=False,
                           workspace=1.5, quiet=True)
        assert res.path.name == f"osnet_ain_x0_25_{H}x{W}_fp16.engine" and res.path.read_bytes() == b"FAKE\x01\x08"
    b = FakeBuilder.last
    cfg = b.config
    assert cfg.pool == {"WORKSPACE": int(1.5 * 2 ** 30)}
    assert cfg.profiles[0].shapes[1:] == ([1, 3, H, W], [4, 3, H, W], [8, 3, H, W])
    norm = [layer for layer in b.network.layers if layer.type.endswith("NORMALIZATION")]
    if strong:  # 11.x: no FP16 flag; the parsed graph is FP16 itself, InstanceNorm between FP32 Casts
        assert cfg.flags == set() and all(layer.precision is None for layer in b.network.layers)
        casts = [layer.name for layer in b.network.layers if layer.type == "LayerType.Cast"]
        assert len(norm) == 2 and sum("_fp32_in0" in c for c in casts) == 2 and sum(c.endswith("_fp32_out_to_fp16") for c in casts) == 2
    else:
        assert cfg.flags == {"FP16", "PREFER_PRECISION_CONSTRAINTS"}
        assert norm and all(layer.precision == "float32" and layer.out_types == {0: "float32"} for layer in norm)
        assert all(layer.precision is None for layer in b.network.layers if layer not in norm)
    assert cfg.cache_blob == b"+timed", "the second build must reuse the first build's timing cache"
    meta = tc.read_sidecar(res.path)
    assert meta.precision == "fp16" and meta.input_format == "float_nchw"
    assert meta.extra["tensorrt_version"] == trt.__version__ and meta.extra["strongly_typed"] is strong
    assert meta.extra["fp32_layers"] == len(norm) and meta.extra["workspace_gib"] == 1.5
    assert meta.extra["profile"]["opt"] == [4, 3, H, W] and meta.extra["compute_capability"] == "8.9"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [res.path.name, res.path.name + ".json"]


def test_fp32_build_turns_tf32_off(fakes, tmp_path, small_model, monkeypatch, release):
    from osnet_edge.export.api import export_model

    _builder_api(sys.modules["tensorrt"], monkeypatch, release)
    export_model(small_model, "trt", tmp_path / "m.engine", verify=False, timing_cache=False, quiet=True)
    cfg = FakeBuilder.last.config
    assert cfg.flags == set() and cfg.cleared == {"TF32"} and cfg.cache_blob is None
    assert all(layer.precision is None for layer in FakeBuilder.last.network.layers)


@pytest.mark.filterwarnings("ignore:calibration set generated")  # 40 crops: small on purpose
@pytest.mark.parametrize("release", RELEASES[:1])  # implicit calibration: 10.x only (11 removed it)
def test_int8_build_calibrates_and_writes_cache_and_fidelity(fakes, tmp_path, small_model, monkeypatch, release):
    from osnet_edge.export.api import export_model

    _builder_api(sys.modules["tensorrt"], monkeypatch, release)
    monkeypatch.setenv("OSNET_EDGE_CACHE", str(tmp_path / "cache"))
    res = export_model(small_model, "trt", tmp_path / "q.engine", int8=True, calib="generated:40", max_batch=8,
                       verify=False, calib_size=40, holdout_size=16, min_cosine=-1.0, min_crop_cosine=-1.0,
                       min_decisive_top1=0.0, min_top1=0.0, calib_method="minmax", quiet=True)
    b = FakeBuilder.last
    assert b.config.flags >= {"INT8", "FP16"} and b.calibrated == 5  # 40 crops in full batches of 8
    assert b.config.cal_profile.shapes[1] == [8, 3, H, W] == b.config.cal_profile.shapes[3]
    names = sorted(p.name for p in res.files)
    assert names == ["q.engine", "q.engine.calib", "q.engine.json", "q.fidelity.json"]
    assert (tmp_path / "q.engine.calib").read_bytes() == b"CALIBRATION-TABLE"
    facts = tc.read_sidecar(res.path).extra
    assert facts["calibrator"] == "minmax" and facts["calibration_crops"] == 40
    import gc

    gc.collect()  # the fidelity report's Embedder is garbage now; its backend frees on collection
    assert not fakes.live, "the calibrator's device buffer (or a backend's) was not freed"


def test_failed_build_leaves_nothing(fakes, tmp_path, small_model, monkeypatch, release):
    from osnet_edge.export.api import export_model

    _builder_api(sys.modules["tensorrt"], monkeypatch, release)
    monkeypatch.setattr(FakeBuilder, "build_serialized_network", lambda self, n, c: None)
    with pytest.raises(ArtifactError, match="failed to build the fp16 engine"):
        export_model(small_model, "trt", tmp_path / "x.engine", half=True, verify=False, timing_cache=False,
                     quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_engine_from_onnx_without_torch_path(fakes, tmp_path, monkeypatch, release):
    """The Jetson path: an osnet-export ONNX (metadata inside) -> engine + sidecar, renamed when built."""
    import onnx

    from osnet_edge.export.tensorrt import engine_from_onnx
    from osnet_edge.metadata import META_KEY

    _builder_api(sys.modules["tensorrt"], monkeypatch, release)
    src = _fake_onnx(None, tmp_path / "m.onnx")
    proto = onnx.load(str(src))
    entry = proto.metadata_props.add()
    entry.key = META_KEY
    entry.value = ModelMeta(arch="osnet_x0_25", width=0.25, input_size=(H, W)).to_json()
    onnx.save(proto, str(src))
    path = engine_from_onnx(src, tmp_path, half=True, max_batch=4, verify=False, timing_cache=False, quiet=True)
    assert path.name == f"osnet_x0_25_{H}x{W}_fp16.engine"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.onnx", path.name, path.name + ".json"])
    meta = tc.read_sidecar(path)
    assert meta.precision == "fp16" and meta.arch == "osnet_x0_25" and meta.extra["profile"]["max"][0] == 4


def test_onnx_parse_errors_name_the_node(fakes, tmp_path, small_model, monkeypatch, release):
    from osnet_edge.export.api import export_model

    _builder_api(sys.modules["tensorrt"], monkeypatch, release)

    class Err:
        def node_name(self):
            return "/conv9/Conv"

        def node_operator(self):
            return "Conv"

        def desc(self):
            return "unsupported dilation"

    monkeypatch.setattr(FakeParser, "parse_from_file", lambda self, p: setattr(self, "num_errors", 1) or False)
    monkeypatch.setattr(FakeParser, "get_error", lambda self, i: Err(), raising=False)
    with pytest.raises(ArtifactError, match=r"could not parse .*node /conv9/Conv \(Conv\): unsupported dilation"):
        export_model(small_model, "trt", tmp_path / "x.engine", verify=False, timing_cache=False, quiet=True)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- TensorRT 11: strongly typed

def _osnet_onnx(path, qdq=False):
    """_fake_onnx with osnet-export's metadata (what engine_from_onnx reads), optionally with Q/DQ nodes."""
    import onnx
    from onnx import TensorProto, helper

    from osnet_edge.metadata import META_KEY

    _fake_onnx(None, path)
    proto = onnx.load(str(path))
    if qdq:
        scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [0.02])
        zero = helper.make_tensor("zero", TensorProto.INT8, [], [0])
        proto.graph.initializer.extend([scale, zero])
        first = proto.graph.node[0]
        first.input[0] = "input_dq"
        nodes = [helper.make_node("QuantizeLinear", ["input", "scale", "zero"], ["input_q"], name="q0"),
                 helper.make_node("DequantizeLinear", ["input_q", "scale", "zero"], ["input_dq"], name="dq0")]
        rest = list(proto.graph.node)
        del proto.graph.node[:]
        proto.graph.node.extend(nodes + rest)
    entry = proto.metadata_props.add()
    entry.key = META_KEY
    entry.value = ModelMeta(arch="osnet_x0_25", width=0.25, input_size=(H, W)).to_json()
    onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize("release", RELEASES[-1:])
def test_tensorrt11_int8_comes_from_the_qdq_onnx(fakes, tmp_path, monkeypatch, release):
    """11.x has no calibrator: a Q/DQ ONNX builds with no precision flag and no calibration cache; an ONNX
    without Q/DQ and without crops, or a calibration cache, is refused in one line naming the way out."""
    from osnet_edge.errors import ModelConfigError
    from osnet_edge.export.tensorrt import engine_from_onnx

    assert _builder_api(sys.modules["tensorrt"], monkeypatch, release)
    src = _osnet_onnx(tmp_path / "q.onnx", qdq=True)
    path = engine_from_onnx(src, tmp_path, int8=True, max_batch=4, verify=False, timing_cache=False, quiet=True)
    cfg = FakeBuilder.last.config
    assert cfg.flags == set() and cfg.int8_calibrator is None and cfg.cal_profile is None
    assert [layer.type for layer in FakeBuilder.last.network.layers[:2]] == ["LayerType.QuantizeLinear",
                                                                              "LayerType.DequantizeLinear"]
    meta = tc.read_sidecar(path)
    assert meta.precision == "int8" and meta.extra["calibrator"] == "explicit (Q/DQ ONNX)"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["q.onnx", path.name, path.name + ".json"])

    (tmp_path / "plain").mkdir()
    plain = _osnet_onnx(tmp_path / "plain" / "p.onnx")
    with pytest.raises(ModelConfigError, match=r"^TensorRT 11 builds INT8 engines from a Q/DQ ONNX") as err:
        engine_from_onnx(plain, int8=True, verify=False, timing_cache=False, quiet=True)
    assert "\n" not in str(err.value)
    with pytest.raises(ModelConfigError, match=r"TensorRT 11\.4\.0\.106 has no INT8 calibrator.*--calib-cache"):
        engine_from_onnx(src, int8=True, calib_cache=tmp_path / "old.calib", verify=False, timing_cache=False,
                         quiet=True)
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["p.onnx"], "a refused build leaves nothing"


@pytest.mark.filterwarnings("ignore:calibration set generated")
@pytest.mark.parametrize("release", RELEASES[-1:])
def test_tensorrt11_int8_export_quantizes_the_onnx_first(fakes, tmp_path, small_model, monkeypatch, release):
    """osnet-export --format trt --int8 --calib on 11.x: the Q/DQ ONNX writer runs (explicit quantization),
    TensorRT gets its graph, and the fidelity report names the explicit method."""
    import json

    from osnet_edge.export import api

    _builder_api(sys.modules["tensorrt"], monkeypatch, release)
    calls = []

    def qdq_writer(model, path, meta, *, calib=None, **options):
        calls.append({"crops": len(calib), **{k: options.get(k) for k in ("method", "half", "int8")}})
        return [_osnet_onnx(path, qdq=True)]

    monkeypatch.setitem(api.INT8_WRITERS, "onnx", qdq_writer)
    res = api.export_model(small_model, "trt", tmp_path / "q.engine", int8=True, calib="generated:40", max_batch=8,
                           verify=False, calib_size=40, holdout_size=16, min_cosine=-1.0, min_crop_cosine=-1.0,
                           min_decisive_top1=0.0, min_top1=0.0, calib_method="minmax", timing_cache=False,
                           quiet=True)
    assert calls == [{"crops": 40, "method": "minmax", "half": False, "int8": True}]
    assert FakeBuilder.last.config.flags == set() and FakeBuilder.last.calibrated == 0
    assert sorted(p.name for p in res.files) == ["q.engine", "q.engine.json", "q.fidelity.json"]
    assert tc.read_sidecar(res.path).extra["strongly_typed"] is True
    assert json.loads((tmp_path / "q.fidelity.json").read_text())["calibration"]["method"] == "explicit Q/DQ"


def test_stand_ins_refuse_what_the_release_lacks(fakes, monkeypatch):
    """The teeth of the stand-ins: code outside tests/ touching what TensorRT 11's IBuilderConfig / ILayer lack
    fails as it would on the real module, while 10.x's stand-in still offers it."""
    trt = sys.modules["tensorrt"]
    _builder_api(trt, monkeypatch, RELEASES[-1])
    elsewhere = "/osnet_edge_project/export/anything.py"  # any path outside tests/
    config, layer = FakeConfig(), FakeLayer("LayerType.CONVOLUTION", "conv")
    for code, what in (("config.int8_calibrator = None", "int8_calibrator"), ("layer.precision", "precision"),
                       ("config.set_calibration_profile(None)", "set_calibration_profile"),
                       ("trt.BuilderFlag.FP16", "FP16"), ("trt.IInt8EntropyCalibrator2", "IInt8EntropyCalibrator2")):
        with pytest.raises(AttributeError, match=what):
            exec(compile(code, elsewhere, "exec"), {"config": config, "layer": layer, "trt": trt})
    exec(compile("config.set_flag(trt.BuilderFlag.TF32); layer.type", elsewhere, "exec"),
         {"config": config, "layer": layer, "trt": trt})
    _builder_api(trt, monkeypatch, RELEASES[0])
    exec(compile("config.int8_calibrator = None; layer.precision; trt.BuilderFlag.FP16", elsewhere, "exec"),
         {"config": config, "layer": layer, "trt": trt})


# --------------------------------------------------------------------------- hostile engines and sidecars


def _hostile_engines(root: Path) -> dict:
    """{case: engine path}: root/art holds them, root/outside what they point at (watched with inotify)."""
    import json
    import os

    art, outside = root / "art", root / "outside"
    art.mkdir()
    outside.mkdir()
    good = _engine(outside)
    meta = json.loads(tc.sidecar_path(good).read_text())
    c = {}

    def eng(name, body=b"FAKE\x01\x08", sidecar=None):
        p = art / name
        p.write_bytes(body)
        if sidecar is not None:
            tc.sidecar_path(p).write_bytes(sidecar if isinstance(sidecar, bytes) else json.dumps(sidecar).encode())
        return p

    c["engine: text file"] = eng("text.engine", b"hello, I am a text file", meta)
    c["engine: empty"] = eng("empty.engine", b"", meta)
    os.symlink(good, art / "link.engine")
    c["engine: symlink leaving the folder"] = art / "link.engine"
    (art / "dir.engine").mkdir()
    c["engine: folder named like an engine"] = art / "dir.engine"
    os.mkfifo(art / "pipe.engine")
    c["engine: named pipe"] = art / "pipe.engine"
    c["engine: no sidecar (no input size known)"] = eng("bare.engine")
    c["sidecar: symlink leaving the folder"] = eng("sc_link.engine")
    os.symlink(tc.sidecar_path(good), tc.sidecar_path(art / "sc_link.engine"))
    c["sidecar: dangling symlink"] = eng("sc_dangling.engine")
    os.symlink(outside / "nothing.json", tc.sidecar_path(art / "sc_dangling.engine"))
    c["sidecar: a folder"] = eng("sc_dir.engine")
    tc.sidecar_path(art / "sc_dir.engine").mkdir()
    c["sidecar: 2 MiB"] = eng("sc_big.engine", sidecar={**meta, "pad": "x" * (2 << 20)})
    c["sidecar: not JSON"] = eng("sc_text.engine", sidecar=b"{not json")
    c["sidecar: not UTF-8"] = eng("sc_bin.engine", sidecar=bytes(range(128, 256)))
    c["sidecar: nested 10^5 deep"] = eng("sc_deep.engine", sidecar=b"[" * 100_000 + b"]" * 100_000)
    c["sidecar: input_size negative"] = eng("sc_neg.engine", sidecar={**meta, "input_size": [-32, 16]})
    c["sidecar: mean NaN"] = eng("sc_nan.engine", sidecar=json.dumps({**meta, "mean": [float("nan")] * 3}).encode())
    c["sidecar: of another engine (256x128)"] = eng("sc_other.engine", sidecar={**meta, "input_size": [256, 128]})
    c["sidecar: of another engine (128-D)"] = eng("sc_dim.engine", sidecar={**meta, "feature_dim": 128})
    c["sidecar: built with TensorRT 8.6"] = eng("sc_trt.engine", sidecar={
        **meta, "extra": {**meta["extra"], "tensorrt_version": "8.6.1"}})
    c["sidecar: built for another GPU architecture"] = eng("sc_cc.engine", sidecar={
        **meta, "extra": {**meta["extra"], "compute_capability": "7.2"}})
    return c


def test_every_hostile_engine_is_refused_in_one_line_everywhere(fakes, tmp_path):
    """Engines and their sidecars handed over by others, through every entry point that opens an engine: one line
    naming the file, no traceback, nothing opened outside the folder. Needs no GPU: the TensorRT stand-ins."""
    import json
    import os

    from osnet_edge import Embedder
    from osnet_edge.errors import OsnetEdgeError
    from osnet_edge.training.synthetic_dataset import make_market_dataset
    from test_hostile_artifacts import _bench, _eval, _Opens

    cases = _hostile_engines(tmp_path)
    data = tmp_path / "market"
    make_market_dataset(data, num_ids=3, images_per_id=2, cams=2, size=(H, W), seed=1)
    watch = _Opens(tmp_path / "outside")
    watch.names()

    def embedder(path, root, data):
        try:
            Embedder(str(path)).embed(_crops(2))
        except OsnetEdgeError as exc:
            return 1, f"Embedder: error: {exc}"
        return 0, ""

    rows, failures = [], []
    for case, path in cases.items():
        for entry, call in (("Embedder", embedder), ("osnet-eval", _eval), ("osnet-bench", _bench)):
            rc, err = call(path, tmp_path, data)
            opened = watch.names()
            lines = [ln for ln in err.splitlines() if "error" in ln]
            rows.append((case, entry, lines[0] if lines else err.strip()[-200:]))
            if not (rc not in (0, None) and len(lines) == 1 and path.name in lines[0] and "Traceback" not in err
                    and not opened):
                failures.append(f"{case} | {entry} | rc={rc} | opened outside: {sorted(opened)} | {err.strip()[-400:]}")
    watch.close()
    assert len(cases) >= 18
    assert not failures, "\n".join(failures)
    # the good engine these point at still serves: the refusals are about the files, not the stand-ins
    with Embedder(str(tmp_path / "outside" / "fake.engine")) as emb:
        assert emb.embed(_crops(2)).shape == (2, D)
    if os.environ.get("OSNET_EDGE_HOSTILE_ENGINE_TABLE"):  # docs/reliability.md's table is printed from this too
        Path(os.environ["OSNET_EDGE_HOSTILE_ENGINE_TABLE"]).write_text(json.dumps(rows, indent=1))
