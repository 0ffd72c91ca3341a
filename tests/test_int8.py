"""INT8 export end to end: OpenVINO (NNCF) and ONNX QDQ, on a re-ID-TRAINED tiny OSNet, with fidelity reports.

Random weights quantize deceptively well, so the `trained` fixture (conftest.py) trains osnet_x0_25 briefly (softmax) on
rendered identities at 64x32; calibration and held-out crops come from disjoint identities of that dataset.
"""
import json

import cv2
import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")
pytest.importorskip("onnxruntime")

from osnet_edge import Embedder  # noqa: E402
from osnet_edge.errors import ModelConfigError  # noqa: E402
from osnet_edge.export import INT8_WRITERS, export_model  # noqa: E402
from osnet_edge.export import fidelity as fid  # noqa: E402
from osnet_edge.export import gates  # noqa: E402
from osnet_edge.export.layer_errors import layer_errors  # noqa: E402
from osnet_edge.export import openvino_ir_ops as irops  # noqa: E402
from osnet_edge.export import quantize_openvino as qov  # noqa: E402

FAST = dict(calib_size=32, holdout_size=32, quiet=True)


# export_model's own parity gate (min cosine >= 0.98 over 33 crops) is not what INT8 is judged by: the
# writer's fidelity report on held-out crops is; these tests check the report, so the parity pass is skipped
# (verify=False) and the artifact is loaded below.
NOVERIFY = dict(verify=False)


def test_int8_writers_registered():
    assert {"openvino", "onnx"} <= set(INT8_WRITERS)


def test_int8_refused_without_calib(trained, tmp_path):
    with pytest.raises(ModelConfigError, match="--calib SOURCE"):
        export_model(trained, "openvino", tmp_path, int8=True, verify=False)
    assert not list(tmp_path.iterdir())


def test_cli_int8_without_calib_refused_before_model_is_built(monkeypatch, capsys, tmp_path):
    from osnet_edge.export import cli

    def no_build(_args):
        raise AssertionError("the model was built before --calib was checked")

    monkeypatch.setattr(cli, "load_model", no_build)
    for fmt in ("openvino", "onnx"):
        assert cli.main(["--format", fmt, "--int8", "-o", str(tmp_path)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--calib SOURCE" in err[0]
    assert not list(tmp_path.iterdir())


# Measured spread of this pipeline (f32 execution pinned; in one process and across processes it is
# bit-for-bit repeatable): the same fixture trained with seeds 0-9, which stands in for the slightly different
# network a machine of another instruction-set class (AVX2 vs AVX-512) trains, gave over 32 held-out crops
#   mean cosine 0.9888-0.9986, min cosine 0.883-0.994, top-1 agreement 0.595-0.881, INT8 convolutions 74-83%.
# The min of 32 crops is the noisy statistic (the old ">= 0.9" failed on seed 0 and on AVX-512 machines);
# the bounds below sit under the worst seed with a margin: mean cosine 0.98 (margin 0.009), min cosine 0.8,
# INT8 convolutions 70%. This 64x32 network, trained for seconds on 32 crops, is below the default gates
# (mean 0.99, min 0.95): the test lowers them, and checks that the report and provenance say so.
SPREAD_MIN_COSINE = 0.8
# decisive top-1 and correct matches kept are judged on 10-15 crops here (one crop is 7-10%)
FIXTURE_GATES = dict(min_cosine=0.98, min_crop_cosine=SPREAD_MIN_COSINE, min_decisive_top1=0.6,
                     min_correct_kept=0.5)


def test_openvino_int8_keeps_fidelity(trained, reid_data, tmp_path):
    res = export_model(trained, "openvino", tmp_path, int8=True, calib=str(reid_data), **FIXTURE_GATES,
                       **NOVERIFY, **FAST)
    assert res.path.suffix == ".xml" and res.meta.precision == "int8"
    report_file = tmp_path / (res.path.stem + ".fidelity.json")
    rep = json.loads(report_file.read_text())
    assert rep["passed"] and rep["cosine_mean"] >= 0.98 and rep["cosine_min"] >= SPREAD_MIN_COSINE
    assert rep["artifact"] == res.path.name and rep["thresholds"]["min_crop_cosine"] == SPREAD_MIN_COSINE
    assert rep["retrieval"]["n_query"] > 0 and rep["calibration"]["crops"] == 32
    # lowered gates are recorded as such, in the report and in the artifact's provenance: never "passed"
    assert len(rep["gates_lowered"]) == len(FIXTURE_GATES)
    assert res.meta.provenance["int8_fidelity"]["gates_lowered"] == rep["gates_lowered"]
    assert "accepted with gates lowered: mean cosine >= 0.98 (default 0.99)" in res.meta.provenance_line()
    assert "fidelity passed" not in res.meta.provenance_line()
    # the identity gates applied (an osnet-crops/Market-layout source holds out its test identities)
    assert all(r["applied"] for r in rep["gates"] if r["gate"] != "min_top1")
    # what INT8 buys on this CPU is measured and stated
    s = rep["extra"]["speedup"]
    assert s["int8_crops_per_s"] > 0 and s["speedup"] == pytest.approx(s["int8_crops_per_s"] / s["fp32_crops_per_s"],
                                                                      rel=0.01)
    # fidelity not bought by leaving layers in FP32
    assert rep["extra"]["int8_convolutions"] / rep["extra"]["convolutions"] >= 0.7
    emb = Embedder(res.path)
    assert emb.meta.precision == "int8"
    # the layers left in float run f32 as the artifact declares, not the CPU plugin's bf16 default
    assert str(emb.backend.compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    assert emb.execution_precision == "fp32"
    assert "precision=int8, executes=int8+fp32" in repr(emb)  # never read as "runs in FP32"
    crops = [cv2.imread(str(p)) for p in sorted((reid_data / "query").glob("*.jpg"))[:4]]
    f = emb.embed(crops)
    assert f.shape == (4, 512) and np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-4)
    # no temporary file left behind
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".bin", ".json", ".xml"]


def test_bad_calibration_is_caught(trained, reid_data, tmp_path):
    """Constant grey images calibrate ranges that real crops overflow: the held-out report must refuse it
    (measured over fixture seeds 0-9: mean cosine 0.29-0.84, never near the 0.98 gate)."""
    bad = tmp_path / "grey"
    bad.mkdir()
    for i in range(32):
        cv2.imwrite(str(bad / f"{i:03d}.png"), np.full((64, 32, 3), 128, np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(fid.FidelityError) as info:
        export_model(trained, "openvino", out, int8=True, calib=str(bad), holdout=str(reid_data), layer_report=False,
                     measure_speed=False, **FAST)
    assert not info.value.report.passed and info.value.report.cosine_mean < 0.98
    assert not out.exists() or not list(out.iterdir())  # nothing kept


def _refused_by(trained, reid_data, tmp_path, **options) -> tuple:
    """The gates an OpenVINO INT8 export fails at the gates the fixture's good INT8 passes (FIXTURE_GATES)."""
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(fid.FidelityError) as info:
        export_model(trained, "openvino", out, int8=True, layer_report=False, measure_speed=False,
                     **{**FIXTURE_GATES, **options}, **FAST)
    assert not list(out.iterdir())  # nothing kept
    return {r["gate"] for r in info.value.report.gates if r["applied"] and not r["passed"]}, info.value


def test_generated_calibration_is_refused(trained, reid_data, tmp_path):
    """Generated crops as calibration, held-out people's crops: refused by the default gates. (The fixture's
    people are rendered too, so at the fixture's lowered gates the two are not told apart; on vtest.avi they
    are: benchmarks/results/int8_real/NOTES.md.)"""
    failed, _ = _refused_by(trained, reid_data, tmp_path, calib="generated:32", holdout=str(reid_data),
                         **{k: None for k in FIXTURE_GATES})
    assert {"min_cosine", "min_crop_cosine"} & failed


def test_nncf_default_ranges_are_refused(trained, reid_data, tmp_path):
    """NNCF's default activation ranges clip the rare large activations a re-ID embedding is carried by."""
    failed, err = _refused_by(trained, reid_data, tmp_path, calib=str(reid_data), recipe="nncf-default")
    assert failed
    # the weights are not what failed: the refusal says so and points to --qat
    assert err.report.extra["weights_only_8bit"]["passed"]
    assert "8-bit weights alone pass the gates: the loss is in the 8-bit activations" in str(err)
    assert "--qat" in str(err)


def test_weights_only_bound_rounds_each_output_channel(trained):
    import torch
    from osnet_edge.export import weight_bound
    from osnet_edge.export.coverage import quantized_conv_modules

    q = weight_bound.weights_only(trained)
    (name, conv), = [(n, c) for n, c in quantized_conv_modules(q) if n == "conv1.conv"]
    w = conv.weight.detach().flatten(1)
    steps = w / (w.abs().amax(1, keepdim=True) / 127)
    assert torch.allclose(steps, steps.round(), atol=1e-3)  # every weight on its channel's 8-bit grid
    assert not torch.equal(conv.weight, dict(trained.named_modules())[name].weight)  # the original untouched


def test_refusal_says_whether_8bit_weights_can_hold(trained, reid_data, tmp_path):
    """A gate 8-bit weights alone cannot meet: the refusal says INT8 cannot hold and names FP16; a miss caused by
    the activations says the weights pass (test_nncf_default_ranges_are_refused)."""
    out = tmp_path / "strict"
    out.mkdir()
    with pytest.raises(fid.FidelityError) as info:
        export_model(trained, "openvino", out, int8=True, calib=str(reid_data), layer_report=False,
                     measure_speed=False, **{**FIXTURE_GATES, "min_cosine": 0.99999}, **FAST)
    bound = info.value.report.extra["weights_only_8bit"]
    assert not bound["passed"] and bound["cosine_mean"] < 0.99999
    msg = str(info.value)
    assert "8-bit weights alone (float activations) already miss: mean cosine" in msg and "export FP16 (--half)" in msg
    assert "\n" not in msg and not list(out.iterdir())


# measured on this fixture: symmetric mean cosine 0.988-0.998 over seeds, decisive neighbours 10-15 crops
QDQ_GATES = dict(min_cosine=0.9, min_crop_cosine=0.5, min_decisive_top1=0.3, min_correct_kept=0.3,
                 max_rank1_drop=0.5, max_map_drop=0.5)
# a comparison's reference, kept whatever it measures
OPEN_GATES = dict(min_cosine=0.0, min_crop_cosine=0.0, min_decisive_top1=0.0, min_correct_kept=0.0,
                  max_rank1_drop=1.0, max_map_drop=1.0)


def test_onnx_qdq_int8(trained, reid_data, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    # the portable QDQ path has no bias correction and quantizes the gate convolutions too, so its gates are
    # lowered here, not skipped. Measured spread over fixture seeds 0-9: symmetric mean cosine 0.988-0.998,
    # top-1 0.57-0.71; asymmetric ranges 0.992-0.999, top-1 0.71-0.90, above symmetric on every seed (>= 0.002)
    res = export_model(trained, "onnx", tmp_path, int8=True, calib=str(reid_data), **QDQ_GATES,
                       **NOVERIFY, **FAST)
    g = onnx.load(str(res.path)).graph
    ops = [n.op_type for n in g.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops and "QLinearConv" not in ops  # QDQ form
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    zps = [init[n.input[2]] for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
           and len(n.input) > 2 and n.input[2] in init]
    # TensorRT's form: INT8 activations and weights (biases int32), every zero point 0, none uint8
    assert zps and all(z.dtype in (np.int8, np.int32) and not z.any() for z in zps)
    assert any(z.dtype == np.int8 for z in zps)
    # activations one scale per tensor (TensorRT takes per-channel scales for weights only)
    assert all(init[n.input[1]].size == 1 for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] not in init)
    per_channel = [n for n in g.node if n.op_type == "DequantizeLinear" and init.get(n.input[1]) is not None
                   and init[n.input[1]].size > 1]
    assert per_channel  # weight scales per output channel
    rep = json.loads((tmp_path / (res.path.stem + ".fidelity.json")).read_text())
    assert rep["passed"] and rep["extra"]["int8_convolutions"] / rep["extra"]["convolutions"] >= 0.7
    assert Embedder(res.path).meta.precision == "int8"

    assert rep["calibration"]["activations"] == "shifted"

    # plain symmetric INT8 activations: 128 levels after ReLU, which the shift gives back
    out = tmp_path / "sym"
    out.mkdir()
    res_s = export_model(trained, "onnx", out, int8=True, calib=str(reid_data), activations="symmetric",
                         **OPEN_GATES, measure_speed=False, **NOVERIFY, **FAST)
    rep_s = json.loads((out / (res_s.path.stem + ".fidelity.json")).read_text())
    assert rep["cosine_mean"] > rep_s["cosine_mean"]

    # ONNX Runtime only: UINT8 activations with zero points
    out = tmp_path / "asym"
    out.mkdir()
    res_a = export_model(trained, "onnx", out, int8=True, calib=str(reid_data), activations="asymmetric",
                         **QDQ_GATES, measure_speed=False, **NOVERIFY, **FAST)
    g = onnx.load(str(res_a.path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    zps = [init[n.input[2]] for n in g.node if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in init]
    assert any(z.dtype == np.uint8 and z.any() for z in zps)
    rep_a = json.loads((out / (res_a.path.stem + ".fidelity.json")).read_text())
    assert rep_a["calibration"]["activations"] == "asymmetric"
    with pytest.raises(ModelConfigError, match="activation scheme"):
        export_model(trained, "onnx", tmp_path / "bad.onnx", int8=True, calib=str(reid_data), activations="int4",
                     **NOVERIFY, **FAST)


@pytest.mark.parametrize("arch", ["osnet_ain_x0_25", "osnet_ibn_x0_25"])
def test_int8_of_instance_norm_variants(arch, reid_data, tmp_path):
    """torchreid's IN variants (osnet_ain: InstanceNorm in the streams, osnet_ibn: on the block outputs) through
    both INT8 writers: written, 70% of convolutions INT8, loaded by the runtime, one 512-D embedding per crop.
    Plumbing only (an untrained network; the gates are opened and the report says so)."""
    pytest.importorskip("onnxruntime")
    from osnet_edge import build_model
    from osnet_edge.calibration import from_market
    from conftest import TRAINED_SIZE

    model = build_model(arch, num_classes=0, input_size=TRAINED_SIZE).eval()
    crops = from_market(reid_data, "query", n=5, progress=False).crops
    for fmt in ("openvino", "onnx"):
        out = tmp_path / fmt
        out.mkdir()
        res = export_model(model, fmt, out, int8=True, calib=str(reid_data), **OPEN_GATES, measure_speed=False,
                           layer_report=False, **NOVERIFY, **FAST)
        rep = json.loads((out / (res.path.stem + ".fidelity.json")).read_text())
        assert rep["extra"]["int8_convolutions"] / rep["extra"]["convolutions"] >= 0.7, (fmt, rep["extra"])
        assert len(rep["gates_lowered"]) == len(OPEN_GATES)
        assert "accepted with gates lowered" in res.meta.provenance_line()
        emb = Embedder(res.path)
        f = emb.embed(crops)
        assert emb.meta.precision == "int8" and f.shape == (5, 512) and np.isfinite(f).all()


def test_onnx_histogram_calibration_with_a_short_last_batch(trained, reid_data, tmp_path):
    """percentile / entropy ranges over a calibration set that is not a multiple of the batch (9 crops)."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from osnet_edge.calibration import from_market
    from osnet_edge.checkpoint import model_meta
    from osnet_edge.export.onnx_writer import export_onnx
    from osnet_edge.export.quantize_onnx import quantize_onnx_file

    meta = model_meta(trained)
    fp32 = export_onnx(trained, tmp_path / "fp32.onnx", meta=meta)
    calib = from_market(reid_data, "train", n=9, progress=False)
    out = quantize_onnx_file(fp32, tmp_path / "p.onnx", calib, meta, method="percentile")
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    f, = sess.run(None, {sess.get_inputs()[0].name: next(calib.batches(meta, 3))})
    assert f.shape == (3, 512) and np.isfinite(f).all()
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(out)).graph.node}


def test_cli_int8_activations_only_for_onnx(capsys):
    from osnet_edge.export.cli import main

    assert main(["--format", "openvino", "--int8", "--calib", "generated:8", "--int8-activations", "asymmetric"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--int8-activations applies to --format onnx" in err[0]


def test_layer_errors_find_where_error_enters(trained, reid_data):
    """The per-layer tool orders layers by the network and shows drift growing towards the output."""
    from osnet_edge.calibration import calibration_split
    from osnet_edge.checkpoint import model_meta

    meta = model_meta(trained)
    split = calibration_split(str(reid_data), 32, 16, progress=False)
    fp32 = qov.fp32_ov_model(trained, meta)
    q = qov.quantize(fp32, split.calib, meta, recipe="nncf-default")
    rows = layer_errors(fp32, q, next(split.held_out.batches(meta, 8)), max_layers=8)
    assert 2 <= len(rows) <= 8 and rows[0]["name"].startswith("/conv1")
    assert all(-1.0 <= r["cosine"] <= 1.0 + 1e-6 and r["rel_err"] >= 0 for r in rows)
    assert rows[0]["rel_err"] < rows[-1]["rel_err"]  # error accumulates through the network


# --------------------------------------------------------------------------- mixed precision (keep_fp32)

# no gate at all: these tests check which layers stay float, not the fidelity
NO_GATES = {g.key: (-1.0 if g.kind == "min" else 1.0) for g in gates.GATES if g.default is not None}


def _stage3_convs(trained):
    """A depthwise and a 1x1 convolution of stage 3 that post-training INT8 quantizes, by IR op name."""
    from osnet_edge.checkpoint import model_meta

    meta = model_meta(trained, "int8")
    meta.input_format = "uint8_nhwc"
    fp32 = qov.fp32_ov_model(trained, meta)
    convs = [(op.get_friendly_name(), op.get_type_name()) for op in fp32.get_ordered_ops()
             if op.get_type_name() in irops.CONV_TYPES and "/conv3/" in op.get_friendly_name()
             and "/gate/" not in op.get_friendly_name()]
    dw = next(n for n, t in convs if t == "GroupConvolution")
    pw = next(n for n, t in convs if t == "Convolution")
    return [dw, pw]


def test_keep_fp32_layers_are_not_quantized_and_reported(trained, reid_data, tmp_path):
    import openvino as ov

    names = _stage3_convs(trained)
    res = export_model(trained, "openvino", tmp_path, int8=True, calib=str(reid_data), keep_fp32=names,
                       layer_report=False, measure_speed=False, **NO_GATES, **NOVERIFY, **FAST)
    ir = ov.Core().read_model(str(res.path))
    quantized = irops.quantized_convs(ir)
    assert not set(names) & set(quantized)  # no FakeQuantize in front of the named layers
    assert len(quantized) > 50  # the rest of the network still is
    rep = json.loads((tmp_path / (res.path.stem + ".fidelity.json")).read_text())
    assert rep["extra"]["float_layers"] == names
    # the INT8 share is the plugin's runtime count: every quantized convolution, none of the named ones
    assert rep["extra"]["int8_convolutions"] == len(quantized)
    assert rep["extra"]["int8_conv_fraction"] == pytest.approx(len(quantized) / rep["extra"]["convolutions"])


def test_keep_fp32_bad_name_is_one_clear_error(trained, reid_data, tmp_path):
    # NNCF's ignored scope would skip an unknown name silently and quantize everything
    with pytest.raises(ModelConfigError, match="'/model/no_such_conv'") as info:
        export_model(trained, "openvino", tmp_path, int8=True, calib=str(reid_data), keep_fp32=["/model/no_such_conv"],
                     **NOVERIFY, **FAST)
    assert "\n" not in str(info.value) and "keep_fp32" in str(info.value)
    assert not list(tmp_path.iterdir())


def test_max_drop_validation_without_identities_scores_each_item(trained):
    """nncf.quantize_with_accuracy_control's validation function on crops without identities: one per-item value
    per validation item (a batch), on the full set and on a subset of it (NNCF ranks layers on subsets)."""
    from osnet_edge.calibration.sources import CropSet
    from osnet_edge.checkpoint import model_meta
    from osnet_edge.synthetic import synthetic_crops

    meta = model_meta(trained, "fp32")
    meta.input_format = "uint8_nhwc"
    fp32 = qov.fp32_ov_model(trained, meta)
    held_out = CropSet(list(synthetic_crops(70, seed=5)), "test crops")  # no pids: the agreement metric
    items, val_fn = qov.validation_function(fp32, held_out, meta)
    assert [len(b) for b in items] == [32, 32, 6]
    same = qov.compile_cpu(fp32)
    metric, per_item = val_fn(same, items)
    assert metric == pytest.approx(1.0, abs=1e-6) and len(per_item) == 3
    assert all(v == pytest.approx(1.0, abs=1e-5) for v in per_item)
    metric, per_item = val_fn(same, items[1:])  # a subset: compared with FP32 on the same items
    assert metric == pytest.approx(1.0, abs=1e-6) and len(per_item) == 2
    noisy = qov.compile_cpu(qov.quantize(fp32, CropSet(list(synthetic_crops(32, seed=6)), "calib"), meta,
                                         recipe="nncf-default"))
    metric, per_item = val_fn(noisy, items)
    assert metric < 1.0 and min(per_item) < 1.0  # INT8 differs from FP32, and the items say where
