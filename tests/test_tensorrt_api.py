"""The project's TensorRT and cuda-python calls, and the test stand-ins, against the REAL modules' APIs.

The API snapshots in tests/data/tensorrt_api/ are read out of NVIDIA's own bindings by
tests/tensorrt_api_snapshot.py (`make check-tensorrt` regenerates them and runs this file against the live
modules); here they are JSON, so this runs without TensorRT, cuda-python or a GPU.
"""
from __future__ import annotations

import ast
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest

import tensorrt_api_usage as api

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOTS = api.load_snapshots()
TRT_SNAPS = [SNAPSHOTS["tensorrt"][k] for k in sorted(SNAPSHOTS["tensorrt"])]
CUDA_SNAPS = [SNAPSHOTS["cuda"][k] for k in sorted(SNAPSHOTS["cuda"])]
LIVE = os.environ.get("OSNET_EDGE_LIVE_TENSORRT") == "1"  # set by `make check-tensorrt` in the real-module envs


def _extra_requirements():
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "extras":
            for key, value in zip(node.value.keys, node.value.values):
                if ast.literal_eval(key) == "tensorrt":
                    from packaging.requirements import Requirement

                    return {Requirement(r).name: Requirement(r) for r in ast.literal_eval(value)}
    raise AssertionError("setup.py declares no 'tensorrt' extra")


# ------------------------------------------------------------------------------------------- the snapshots

def test_snapshots_cover_every_major_the_extra_admits():
    """A version the extra admits without a snapshot is a version nobody checked: 12 must be snapshotted
    before the pin lets it in; a snapshot the pin excludes is stale."""
    pytest.importorskip("packaging")
    reqs = _extra_requirements()
    trt_spec, cuda_spec = reqs["tensorrt"].specifier, reqs["cuda-python"].specifier
    for snap in TRT_SNAPS:
        assert trt_spec.contains(snap["version"], prereleases=True), (snap["version"], str(trt_spec))
    majors = {int(s["version"].split(".")[0]) for s in TRT_SNAPS}
    assert majors >= {10, 11}
    assert not trt_spec.contains(f"{max(majors) + 1}.0.0"), f"the extra admits TensorRT {max(majors) + 1} ({trt_spec})"
    assert trt_spec.contains("10.0.1") and not trt_spec.contains("9.3.0")
    for snap in CUDA_SNAPS:
        assert cuda_spec.contains(snap["version"]), (snap["version"], str(cuda_spec))
    cuda_majors = {int(s["version"].split(".")[0]) for s in CUDA_SNAPS}
    assert not cuda_spec.contains(f"{max(cuda_majors) + 1}.0.0")


def test_docs_state_the_checked_versions():
    text = (ROOT / "docs" / "tensorrt.md").read_text()
    section = text[text.index("## Versions"):]
    section = section[:section.index("\n## ", 3)]
    for snap in TRT_SNAPS + CUDA_SNAPS:
        assert snap["version"] in section, f"docs/tensorrt.md's Versions section does not name {snap['version']}"


def test_snapshots_were_read_from_the_real_bindings():
    """Facts any real build of the module has, that a hand-written snapshot would easily get wrong."""
    for snap in TRT_SNAPS:
        names = snap["names"]
        assert snap["bindings"] == "tensorrt_bindings.tensorrt" and len(names) > 150
        assert {"INPUT", "OUTPUT"} <= set(names["TensorIOMode"]["members"])
        run = names["IExecutionContext"]["members"]["execute_async_v3"]["signatures"]
        assert run == [{"params": ["self", "stream_handle"], "returns": "bool"}]
    v10, v11 = TRT_SNAPS[-2]["names"], TRT_SNAPS[-1]["names"]
    assert "IInt8EntropyCalibrator2" in v10 and "IInt8EntropyCalibrator2" not in v11
    assert "FP16" in v10["BuilderFlag"]["members"] and "FP16" not in v11["BuilderFlag"]["members"]
    assert CUDA_SNAPS[0]["layouts"] == {"cuda.bindings.runtime": True, "cuda.cudart": True}
    assert CUDA_SNAPS[-1]["layouts"] == {"cuda.bindings.runtime": True, "cuda.cudart": False}
    for snap in CUDA_SNAPS:
        assert snap["names"]["cudaMalloc"]["returns"] == ["cudaError_t", "devPtr"]


# ------------------------------------------------------------------------------------------- the project's calls

def test_every_tensorrt_and_cuda_call_fits_the_supported_versions():
    assert api.problems(SNAPSHOTS) == []


def test_nothing_always_run_is_deprecated():
    """Deprecated names (the bindings' [DEPRECATED] notes) are what the next major removes, as 11 removed 10's
    calibrators: code that runs on every version must not use them; version-specific code may."""
    assert api.deprecated_uses(SNAPSHOTS) == []


def test_the_checker_sees_the_calls_that_matter():
    """If the collector stopped following the code (a renamed variable, a new helper), it would check nothing."""
    seen = {(u.owner.split(":")[-1], u.name) for trt, cuda in api.version_pairs(SNAPSHOTS)
            for u in api.collect(trt, None, cuda)}
    must = {("IExecutionContext", "execute_async_v3"), ("IExecutionContext", "set_tensor_address"),
            ("IExecutionContext", "set_input_shape"), ("ICudaEngine", "get_tensor_profile_shape"),
            ("ICudaEngine", "get_tensor_mode"), ("Runtime", "deserialize_cuda_engine"),
            ("Builder", "create_network"), ("Builder", "build_serialized_network"),
            ("IBuilderConfig", "set_memory_pool_limit"), ("IBuilderConfig", "create_timing_cache"),
            ("IBuilderConfig", "set_timing_cache"), ("IBuilderConfig", "progress_monitor"),
            ("IBuilderConfig", "int8_calibrator"), ("IProgressMonitor", "phase_start"),
            ("IProgressMonitor", "step_complete"), ("IInt8EntropyCalibrator2", "get_batch"),
            ("OnnxParser", "parse_from_file"), ("ParserError", "desc"), ("ILayer", "set_output_type"),
            ("cuda", "cudaMemcpyAsync"), ("cuda", "cudaMallocHost"), ("cuda", "cudaStreamCreate"),
            ("cudaMemcpyKind", "cudaMemcpyHostToDevice"), ("cudaError_t", "cudaSuccess")}
    assert must <= seen, sorted(must - seen)


def test_the_checker_catches_wrong_calls(tmp_path):
    """The calls that break between 10 and 11, and plain mistakes, each named with its line."""
    src = tmp_path / "wrong.py"
    src.write_text(textwrap.dedent('''
        def build(trt, cudart):
            builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
            network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
            config = builder.create_builder_config()
            config.set_flag(trt.BuilderFlag.FP16)
            config.int8_calibrator = None
            config.set_memory_pool_limit(1 << 30)
            config.num_optimization_profiles = 2
            ctx = builder.build_serialized_network(network, config)
            ptr = cuda_call(cudart, "cudaMalloc")
            err, a, b = cudart.cudaMalloc(16)
            if hasattr(trt, "IInt8EntropyCalibrator2"):
                base = trt.IInt8EntropyCalibrator2        # guarded: fine, 10.x has it
            if hasattr(trt, "IInt8Calibrator3"):
                x = trt.IInt8Calibrator3                  # guarded, but no version has it: a typo

        def run(context, stream):
            context.execute_async_v2([0, 0], stream)

        def bases(trt):
            class Monitor(trt.IProgressMonitor):
                def phase_start(self, phase_name, num_steps):
                    pass
    '''))
    found = "\n".join(api.problems(SNAPSHOTS, [src]))
    for line, what in ((4, r"EXPLICIT_BATCH does not exist in TensorRT 11\.4"),
                       (6, r"BuilderFlag\.FP16 does not exist in TensorRT 11\.4.*not under a version guard"),
                       (7, r"int8_calibrator does not exist in TensorRT 11\.4"),
                       (8, r"set_memory_pool_limit called with 1 positional.*\(self, pool, pool_size\)"),
                       (9, r"num_optimization_profiles is read-only"),
                       (11, r"cudart\.cudaMalloc called with 0 positional"),
                       (12, r"unpacked into 3 values.*\(cudaError_t, devPtr\)"),
                       (16, r"IInt8Calibrator3 does not exist in TensorRT 10\.0.*10\.16.*11\.4"),
                       (23, r"phase_start overridden with 2 parameter")):
        assert re.search(rf"wrong\.py:{line}: .*{what}", found), (line, what, found)
    assert "wrong.py:14:" not in found
    # execute_async_v2 is gone since 10.0; `context` is untyped here (a parameter name the checker does not know)
    assert "execute_async_v2" not in found


def test_a_guard_reaches_a_function_in_another_module(tmp_path):
    """A module split by job: the 10.x-only helper lives in one file, its only (guarded) call in another."""
    (tmp_path / "calib.py").write_text(textwrap.dedent('''
        def calibrator(trt):
            return trt.IInt8EntropyCalibrator2
    '''))
    build = tmp_path / "build.py"
    build.write_text(textwrap.dedent('''
        from .calib import calibrator

        def build(trt):
            if not strongly_typed_only(trt):
                return calibrator(trt)
    '''))
    assert api.problems(SNAPSHOTS, [tmp_path / "calib.py", build]) == []
    build.write_text(build.read_text().replace("    if not strongly_typed_only(trt):\n        return", "    return"))
    found = api.problems(SNAPSHOTS, [tmp_path / "calib.py", build])
    assert any(re.search(r"calib\.py:3: .*IInt8EntropyCalibrator2 does not exist in TensorRT 11", p) for p in found), found


def test_the_original_calls_that_tensorrt_11_removed_are_caught(tmp_path):
    """What this code base called before it learnt TensorRT 11: each is reported (10.x still has them)."""
    src = tmp_path / "old.py"
    src.write_text(textwrap.dedent('''
        def calibrate(trt, builder, config, network, feeder):
            base = trt.IInt8EntropyCalibrator2 if feeder else trt.IInt8MinMaxCalibrator
            config.int8_calibrator = base()
            config.set_calibration_profile(builder.create_optimization_profile())
            layer = network.get_layer(0)
            layer.precision = trt.float32
            layer.set_output_type(0, trt.float32)
    '''))
    found = api.problems(SNAPSHOTS, [src])
    assert len(found) == 6 and all("does not exist in TensorRT 11.4.0.106" in p for p in found), found
    assert not any("10.16" in p or "10.0" in p for p in found)


def test_builder_flags_exist_in_each_version():
    """The flags are set by name (getattr), which no static check sees: every name builder_flags() returns for a
    version must be a member of that version's BuilderFlag."""
    from types import SimpleNamespace

    from osnet_edge.export.tensorrt_build import builder_flags
    from osnet_edge.export.tensorrt_typed import strongly_typed_only

    for snap in TRT_SNAPS:
        members = set(snap["names"]["BuilderFlag"]["members"])
        fake = SimpleNamespace(BuilderFlag=SimpleNamespace(**{m: m for m in members}))
        strong = strongly_typed_only(fake)
        assert strong == snap["version"].startswith("11."), snap["version"]
        for precision in ("fp32", "fp16", "int8"):
            for explicit in (False, True):
                for pin in (False, True):
                    flags = builder_flags(precision, explicit, pin, strongly_typed=strong)
                    missing = set(flags["set"] + flags["clear"]) - members
                    assert not missing, (snap["version"], precision, missing)


def test_cuda_runtime_import_covers_every_layout():
    """import_cudart tries the layouts in order; each snapshotted cuda-python has the first or the second."""
    from osnet_edge.runtime import tensorrt_common

    tree = ast.parse(Path(tensorrt_common.__file__).read_text())
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "import_cudart")
    tried = [f"{n.module}.{a.name}" for n in ast.walk(fn) if isinstance(n, ast.ImportFrom) for a in n.names]
    assert tried[0] == "cuda.bindings.runtime" and "cuda.cudart" in tried
    for snap in CUDA_SNAPS:
        assert any(snap["layouts"].get(m) for m in tried), snap["version"]


# ------------------------------------------------------------------------------------------- the stand-ins

FAKE_CLASSES = {"FakeContext": "IExecutionContext", "FakeEngine": "ICudaEngine", "Runtime": "Runtime",
                "FakeLayer": "ILayer", "FakeNetwork": "INetworkDefinition", "FakeParser": "OnnxParser",
                "FakeProfile": "IOptimizationProfile", "FakeConfig": "IBuilderConfig", "FakeBuilder": "Builder",
                "Logger": "Logger"}
FAKE_HELPERS = {"monitor_ok", "_alloc"}


def _fake_tree():
    return ast.parse((ROOT / "tests" / "test_tensorrt_fake.py").read_text())


def _real_methods(cls_name):
    """{method: [signatures]} of a TensorRT class, over every snapshot that has it."""
    out = {}
    for snap in TRT_SNAPS:
        for name, m in snap["names"].get(cls_name, {}).get("members", {}).items():
            out.setdefault(name, []).extend(m.get("signatures") or [{"params": ["self"], "kind": m["kind"]}]
                                            if m["kind"] != "property" else [None])
    return out


def _required(sig) -> int:
    return sum(1 for p in sig["params"][1:] if not p.startswith("*") and not p.rstrip("/").endswith("="))


def _accepted(sig) -> float:
    if any(p.startswith("*") and not p.startswith(("**", "*:")) for p in sig["params"]):
        return float("inf")
    return sum(1 for p in sig["params"][1:] if not p.startswith("*"))


def test_fake_tensorrt_classes_match_the_real_ones():
    """Every public method of a stand-in exists on the real class (in some supported version) and accepts the
    real signature's calls, so a test passing on a fake cannot rely on a method or arity TensorRT lacks."""
    checked = 0
    for node in ast.walk(_fake_tree()):
        if not (isinstance(node, ast.ClassDef) and node.name in FAKE_CLASSES):
            continue
        real = _real_methods(FAKE_CLASSES[node.name])
        assert real, node.name
        for item in node.body:
            if not isinstance(item, ast.FunctionDef) or item.name.startswith("_") or item.name in FAKE_HELPERS:
                continue
            if any(isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list):
                assert item.name in real, f"{node.name}.{item.name}: no such property on {FAKE_CLASSES[node.name]}"
                continue
            assert item.name in real, f"{node.name}.{item.name}: {FAKE_CLASSES[node.name]} has no {item.name}"
            static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in item.decorator_list)
            n_args = len(item.args.args) - (0 if static else 1)
            optional = len(item.args.defaults)
            sigs = [s for s in real[item.name] if s and "params" in s]
            # the stand-in may accept fewer calls than the real method (a call it lacks fails loudly), never more:
            # required real <= required fake <= accepted fake <= accepted real
            fake_max = float("inf") if item.args.vararg is not None else n_args
            fits = [s for s in sigs if _required(s) <= n_args - optional <= fake_max <= _accepted(s)]
            assert fits or not sigs, (f"{node.name}.{item.name} takes {n_args} argument(s); "
                                      f"{FAKE_CLASSES[node.name]}.{item.name} is "
                                      + " | ".join("(" + ", ".join(s["params"]) + ")" for s in sigs))
            checked += 1
    assert checked >= 25


def test_fake_cuda_runtime_matches_cuda_python():
    """FakeCudart's functions: real names, real arity, and the (err, value...) tuple of the real returns."""
    tree = _fake_tree()
    cls = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "FakeCudart")
    checked = 0
    for item in cls.body:
        if isinstance(item, ast.ClassDef):  # cudaError_t, cudaMemcpyKind: their members must be real
            for snap in CUDA_SNAPS:
                real = set(snap["names"][item.name]["members"])
                fake = {t.id for s in item.body if isinstance(s, ast.Assign) for t in s.targets}
                assert fake <= real, (item.name, fake - real)
            continue
        if not isinstance(item, ast.FunctionDef) or not item.name.startswith("cuda"):
            continue
        for snap in CUDA_SNAPS:
            real = snap["names"].get(item.name)
            assert real and real["kind"] == "function", f"{item.name} is not in cuda-python {snap['version']}"
            params = [p for p in real["signatures"][0]["params"]]
            assert len(item.args.args) - 1 == len(params), (item.name, params)
            for ret in (n for n in ast.walk(item) if isinstance(n, ast.Return) and isinstance(n.value, ast.Tuple)):
                assert len(ret.value.elts) == len(real["returns"]), (item.name, real["returns"])
        checked += 1
    assert checked >= 10


def test_fake_enums_come_from_the_snapshots():
    """The stand-in module's enums are built from a snapshot (test_tensorrt_fake._trt_enums), never hand-listed."""
    sys.path.insert(0, str(ROOT / "tests"))
    import test_tensorrt_fake as fake

    for snap in TRT_SNAPS:
        ns = fake._trt_enums(snap)
        for enum in ("BuilderFlag", "OnnxParserFlag", "MemoryPoolType", "ProfilingVerbosity", "DeviceType",
                     "TensorIOMode", "LayerInformationFormat"):
            assert sorted(vars(ns[enum])) == snap["names"][enum]["members"]
        assert ("IInt8EntropyCalibrator2" in ns) == ("IInt8EntropyCalibrator2" in snap["names"])


# ------------------------------------------------------------------------------------------- the live module

@pytest.mark.skipif(not LIVE, reason="needs the real tensorrt module: make check-tensorrt")
def test_live_module_matches_its_snapshot(tmp_path):
    """In a check environment: the committed snapshot is what the installed module says, byte for byte."""
    import json

    import tensorrt

    import tensorrt_api_snapshot as snapshot

    release = ".".join(tensorrt.__version__.split(".")[:2])
    committed = json.loads((ROOT / "tests" / "data" / "tensorrt_api" / f"tensorrt_{release}.json").read_text())
    assert snapshot.snapshot_tensorrt() == committed
    live_cuda = snapshot.snapshot_cuda()
    release = ".".join(live_cuda["version"].split(".")[:2])
    assert live_cuda == json.loads((ROOT / "tests" / "data" / "tensorrt_api" / f"cuda_{release}.json").read_text())


@pytest.mark.skipif(not LIVE, reason="needs the real tensorrt module: make check-tensorrt")
def test_live_calls_resolve_on_the_module():
    """The collected uses looked up with getattr on the live module itself, not through the snapshot."""
    import tensorrt

    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart
    import tensorrt_api_snapshot as snapshot

    missing = []
    for use in api.collect(snapshot.snapshot_tensorrt(), None, snapshot.snapshot_cuda()):
        if use.guarded or use.name.startswith("__") and use.name != "__version__":
            continue
        owner = use.owner.split(":")[-1]
        base = cudart if use.module == "cuda" else tensorrt
        obj = base if owner in ("tensorrt", "cuda") else getattr(base, owner, None)
        if obj is None or not hasattr(obj, use.name):
            missing.append(f"{use.where()}: {use.what()}")
    assert missing == []
