"""Export layer: ONNX / OpenVINO writers, verification, atomic writes, osnet-export."""
import json

import numpy as np
import pytest
import torch

from osnet_edge.errors import ModelConfigError, OsnetEdgeError
from osnet_edge.metadata import META_KEY, ModelMeta

from test_runtime_artifacts import ARCH, INPUT, cli_export, float_onnx, model, onnx_path, openvino_path, workdir


def test_cli_onnx_artifact_is_checked_dynamic_and_carries_metadata():
    import onnx

    path, stdout, stderr = cli_export("onnx")
    assert path.name == f"{ARCH}_{INPUT[0]}x{INPUT[1]}_fp32.onnx"
    # the final report names path, size, precision, parity and the loading line
    for word in (str(path), "size:", "precision: fp32", "parity:", f'Embedder("{path}")'):
        assert word in stdout, word
    assert "RANDOMLY INITIALISED" in stderr  # no --weights: said loudly
    assert "batch  33" in stderr  # verified at an odd batch above 32
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 18
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # dynamic batch
    meta = ModelMeta.from_json({p.key: p.value for p in proto.metadata_props}[META_KEY])
    assert (meta.arch, meta.input_size, meta.precision, meta.feature_dim) == (ARCH, INPUT, "fp32", 512)
    assert meta.input_format == "uint8_nhwc"
    assert meta.extra["onnx_exporter"] == "dynamo" and meta.extra["opset"] >= 18
    assert_clean_graph(proto)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


# what an OSNet graph is made of once exported and slimmed; index arithmetic (Shape, Range, Gather) would
# mean the exporter lowered a pooling or a reshape through strided views, a ReduceMean a gate's pooling left
# unconverted
OSNET_OPS = {"Transpose", "Cast", "Sub", "Conv", "Relu", "MaxPool", "GlobalAveragePool", "Sigmoid", "Mul", "Add",
             "AveragePool", "Reshape", "Flatten", "Gemm", "InstanceNormalization"}


def assert_clean_graph(proto):
    """No exporter debug info, no dead initializers, only the operators OSNet needs."""
    g = proto.graph
    assert not any(n.metadata_props or n.doc_string for n in g.node)
    assert not any(v.metadata_props for v in list(g.input) + list(g.output))
    used = {i for n in g.node for i in n.input}
    assert [t.name for t in g.initializer if t.name not in used] == []
    assert {n.op_type for n in g.node} <= OSNET_OPS, {n.op_type for n in g.node} - OSNET_OPS
    assert not proto.functions
    # nodes named after their modules, as the TorchScript exporter named them (reports and errors cite them)
    names = [n.name for n in g.node]
    assert len(set(names)) == len(names) and all(n.startswith("/") for n in names), names[:5]
    assert "/model/conv1/conv/Conv" in names


def test_cli_legacy_torchscript_exporter_is_selectable_and_no_smaller(tmp_path):
    """--onnx-exporter torchscript still writes a verified artifact (opset 17 allowed there); the default
    dynamo graph of the same model has no more nodes than it."""
    import onnx

    from osnet_edge.export.cli import main

    argv = ["--arch", ARCH, "--imgsz", str(INPUT[0]), str(INPUT[1]), "--format", "onnx", "-o", str(tmp_path),
            "--onnx-exporter", "torchscript", "--opset", "17"]
    assert main(argv) == 0
    (path,) = tmp_path.iterdir()
    legacy = onnx.load(str(path))
    meta = ModelMeta.from_json({p.key: p.value for p in legacy.metadata_props}[META_KEY])
    assert meta.extra["onnx_exporter"] == "torchscript" and meta.extra["opset"] == 17
    assert [o.version for o in legacy.opset_import if o.domain in ("", "ai.onnx")] == [17]
    dynamo = onnx.load(str(onnx_path()))  # same arch, size and seeded weights, default exporter
    assert len(dynamo.graph.node) <= len(legacy.graph.node), (len(dynamo.graph.node), len(legacy.graph.node))


def randomized_norms(m):
    """Random BN statistics and IN/BN affine parameters: no normalisation layer is an identity, so a
    mis-exported InstanceNorm or a wrongly folded BatchNorm shows in the cosine."""
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
            if isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d, torch.nn.InstanceNorm2d)) and mod.affine:
                mod.weight.uniform_(0.8, 1.2)
                mod.bias.uniform_(-0.1, 0.1)
    return m


@pytest.mark.parametrize("family", ["osnet_ibn", "osnet_ain"])
def test_dynamo_export_of_instance_norm_families_keeps_parity_quietly(family, tmp_path, capfd):
    """IBN (IN after blocks) and AIN (IN inside blocks, IN stem) through the default exporter: verified at
    batch 1 and 33 against PyTorch, clean graph, and nothing printed on the way."""
    import onnx

    from osnet_edge import build_model
    from osnet_edge.export import export_model

    torch.manual_seed(1)
    m = randomized_norms(build_model(width=0.25, family=family, input_size=INPUT).eval())
    assert any(isinstance(mod, torch.nn.InstanceNorm2d) for mod in m.modules())
    capfd.readouterr()
    res = export_model(m, "onnx", tmp_path, quiet=True)
    out, err = capfd.readouterr()
    assert (out, err) == ("", ""), (out, err)
    for key in ("batch_1", "batch_33"):
        assert res.parity[key]["min_cos"] >= 0.99999, res.parity
    assert_clean_graph(onnx.load(str(res.path)))


class Wrapped(torch.nn.Module):
    """An OSNet inside another module, carrying the attributes export_model reads (arch, width, sizes)."""

    def __init__(self, m):
        super().__init__()
        self.inner = m
        self.arch, self.width, self.input_size, self.feature_dim = m.arch, m.width, m.input_size, m.feature_dim


class DataDependent(Wrapped):
    """A branch on tensor values: torch.export cannot trace it."""

    def forward(self, x):
        f = self.inner(x)
        return f if f.sum() > 0 else -f


def test_exporter_failure_is_one_line_and_writes_nothing(tmp_path, capfd):
    from osnet_edge.errors import ArtifactError
    from osnet_edge.export import export_model

    with pytest.raises(ArtifactError) as info:
        export_model(DataDependent(model()), "onnx", tmp_path, input_format="float_nchw", quiet=True)
    msg = str(info.value)
    assert "\n" not in msg and "dynamo exporter failed" in msg and "--onnx-exporter torchscript" in msg, msg
    assert "osnet_x0_25" in msg
    assert list(tmp_path.iterdir()) == []
    assert capfd.readouterr().err == ""


def test_cli_openvino_fp16_ir_with_rt_info():
    import openvino as ov

    path, stdout, _ = cli_export("openvino", half=True)
    assert path.name == f"{ARCH}_{INPUT[0]}x{INPUT[1]}_fp16.xml" and path.with_suffix(".bin").is_file()
    assert "precision: fp16" in stdout
    m = ov.Core().read_model(str(path))
    meta = ModelMeta.from_json(m.get_rt_info([META_KEY]).astype(str))
    assert meta.precision == "fp16" and meta.input_size == INPUT
    assert m.inputs[0].get_partial_shape()[0].is_dynamic
    assert sorted(p.name for p in path.parent.iterdir()) == [path.with_suffix(".bin").name, path.name]


def test_export_model_float_input_parity_per_batch():
    res = float_onnx()
    assert res.meta.input_format == "float_nchw" and res.path.is_file() and res.size_bytes > 0
    for key in ("batch_1", "batch_33"):
        assert res.parity[key]["min_cos"] >= 0.99999, res.parity
    assert res.parity["min_cos"] == min(res.parity["batch_1"]["min_cos"], res.parity["batch_33"]["min_cos"])


def test_graph_side_normalisation_equals_host_preprocessing():
    from osnet_edge.checkpoint import model_meta
    from osnet_edge.export.graph import Uint8Input
    from osnet_edge.preprocess import to_batch
    from osnet_edge.synthetic import synthetic_crops

    m = model()
    meta = model_meta(m)
    meta.input_format = "uint8_nhwc"
    crops = synthetic_crops(5, seed=3)
    with torch.no_grad():
        a = Uint8Input(m, meta)(torch.from_numpy(to_batch(crops, INPUT, input_format="uint8_nhwc")))
        b = m(torch.from_numpy(to_batch(crops, INPUT)))
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    assert m.conv1.conv.weight.abs().max() < 10  # the original model is untouched (the wrapper copies it)


class BatchMixing(Wrapped):
    """The classic broken OSNet export: right at batch 1, wrong at larger batches (features leak across
    the batch, as BatchNorm in training mode or a baked-in reshape would do)."""

    def forward(self, x):
        f = self.inner(x)
        return f + 2.0 * f.mean(0, keepdim=True)


def test_failed_verification_writes_nothing_and_raises(tmp_path):
    from osnet_edge.export import VerificationError, export_model, register_writer
    from osnet_edge.export.api import SUFFIXES, WRITERS
    from osnet_edge.export.onnx_writer import export_onnx

    def broken_writer(model, tmp, meta, **_):
        return [export_onnx(BatchMixing(model), tmp, meta=meta, simplify=False)]

    register_writer("onnx-broken", broken_writer, ".onnx")
    try:
        with pytest.raises(VerificationError, match=r"min cosine .* < 0.99999.*batch_1: min 1\.0"):
            export_model(model(), "onnx-broken", tmp_path / "x.onnx", input_format="float_nchw", quiet=True)
    finally:
        WRITERS.pop("onnx-broken"), SUFFIXES.pop("onnx-broken")
    assert list(tmp_path.iterdir()) == []


def test_pending_and_unknown_formats_fail_in_one_line(monkeypatch, capsys):
    from osnet_edge.export import api
    from osnet_edge.export.cli import main

    monkeypatch.delitem(api.WRITERS, "trt", raising=False)
    monkeypatch.setitem(api.PENDING, "trt", "TensorRT export is not available in this build yet")
    with pytest.raises(OsnetEdgeError, match="not available"):
        api.export_model(model(), "trt")
    assert main(["--format", "trt"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("osnet-export: error:") and "TensorRT" in err[0]
    monkeypatch.setattr(api, "INT8_WRITERS", {})
    monkeypatch.setattr("osnet_edge.export.INT8_WRITERS", {})
    assert main(["--format", "onnx", "--int8"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "INT8" in err[0]
    assert main(["--format", "tflite"]) == 2  # a usage error
    assert "available: " in capsys.readouterr().err
    with pytest.raises(ModelConfigError, match="unknown export format"):
        api.export_model(model(), "tflite")


def test_bad_options_are_named(tmp_path):
    from osnet_edge.export import export_model, export_onnx

    with pytest.raises(ModelConfigError, match=r"does not end in \.xml"):
        export_model(model(), "openvino", tmp_path / "x.onnx")
    with pytest.raises(ModelConfigError, match="dynamo ONNX exporter needs opset >= 18"):
        export_onnx(model(), tmp_path / "x.onnx", opset=17)
    with pytest.raises(ModelConfigError, match="torchscript ONNX exporter needs opset >= 17"):
        export_onnx(model(), tmp_path / "x.onnx", opset=13, exporter="torchscript")
    with pytest.raises(ModelConfigError, match="--onnx-exporter 'tf'"):
        export_model(model(), "onnx", tmp_path, onnx_exporter="tf")
    with pytest.raises(ModelConfigError, match="one of --half"):
        export_model(model(), "onnx", half=True, int8=True)
    with pytest.raises(OsnetEdgeError, match="input_format"):
        export_model(model(), "onnx", tmp_path, input_format="nhwc_float")
    assert list(tmp_path.iterdir()) == []


def test_cli_weights_of_no_variant_explains(tmp_path, capsys):
    from osnet_edge.export.cli import main

    w = tmp_path / "torchreid_style.pth"
    sd = model().state_dict()  # a bare state_dict, as torchreid's model zoo ships (its arch is read from the keys)
    del sd["conv4.1.conv3.bn.weight"]
    torch.save(sd, w)
    assert main(["--weights", str(w), "--format", "onnx", "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "matches no OSNet variant; the closest is osnet_x0_25" in err and "missing: conv4.1.conv3.bn.weight" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [w.name]


def test_verify_artifact_reports_per_batch(tmp_path):
    from osnet_edge.export.verify import verify_artifact
    from osnet_edge.synthetic import synthetic_crops

    crops = synthetic_crops(7, seed=5)
    res = verify_artifact(float_onnx().path, model(), crops=crops, batch_sizes=(1, 7))
    assert set(res) == {"batch_1", "batch_7", "min_cos", "mean_cos"}
    assert res["batch_7"]["n"] == 7 and res["min_cos"] >= 0.99999
    # the CLI artifacts hold the CLI's seeded weights, not model()'s: verification must notice
    other = verify_artifact(onnx_path(), model(), crops=crops, batch_sizes=(3,))
    assert other["min_cos"] < 0.99
    assert json.dumps(res)  # plain floats: goes straight into a report


def test_export_result_files_cover_ir_pair():
    path = openvino_path()
    assert path.with_suffix(".bin").stat().st_size > 100_000  # osnet_x0_25 FP16 weights (~0.2M params)
    assert workdir().exists()
