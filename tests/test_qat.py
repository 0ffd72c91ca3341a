"""INT8 quantization-aware fine-tuning (export/qat.py): a tiny osnet_x0_25 at 64x32 on generated crops, 1 epoch.

Generated crops prove the plumbing (NNCF fake-quantizers train, the IR runs in INT8, the ONNX is symmetric
Q/DQ, an interruption leaves nothing), not accuracy: that is measured on real footage in
benchmarks/results/int8_real/.
"""
import numpy as np
import pytest

pytest.importorskip("nncf")
pytest.importorskip("openvino")
torch = pytest.importorskip("torch")

from osnet_edge.calibration.sources import generated  # noqa: E402
from osnet_edge.checkpoint import model_meta  # noqa: E402
from osnet_edge.export import fidelity as fid  # noqa: E402
from osnet_edge.export import qat  # noqa: E402
from osnet_edge.models import build_model  # noqa: E402

SIZE = (64, 32)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("osnet_x0_25", input_size=SIZE).eval()


def _meta(model, fmt):
    m = model_meta(model, precision="int8")
    m.input_format = fmt
    return m


@pytest.fixture(scope="module")
def finetuned(tiny):
    # one run serves both formats: float input, signed activations (the ONNX/TensorRT form)
    meta = _meta(tiny, "float_nchw")
    return meta, qat.quantization_aware_finetune(tiny, generated(16, 0), meta, epochs=1, batch_size=8, lr=1e-4,
                                                 signed_activations=True, quiet=True)


# a random network on 16 generated crops: cosine is what these tests check; neighbours of random embeddings
# are all near-ties, so the decisive top-1 gate (and the min over 16 crops) is switched off here
RANDOM_NET_GATES = dict(min_cosine=0.95, min_crop_cosine=0.9, min_decisive_top1=0.0)


def test_qat_trains_and_exports_an_int8_ir(tiny, finetuned, tmp_path):
    import openvino as ov

    from osnet_edge.export.openvino_ir_ops import int8_conv_fraction

    meta, res = finetuned
    assert res.epochs == 1 and len(res.history) == 1 and res.crops == 16
    assert 0.9 < res.history[0]["cosine"] <= 1.0 and res.seconds > 0
    # the fine-tuned network's fake-quantizers are NNCF's, and they are in the exported graph
    ov_model = qat.to_openvino(res.model, meta)
    assert sum(op.get_type_name() == "FakeQuantize" for op in ov_model.get_ordered_ops()) > 100
    xml = tmp_path / "q.xml"
    ov.save_model(ov_model, str(xml), compress_to_fp16=False)
    assert int8_conv_fraction(xml)["fraction"] >= 0.7
    # it reads back through the runtime with its own metadata and stays close to FP32
    rep = fid.fidelity_report(tiny, str(xml), generated(16, 1), gates=RANDOM_NET_GATES)
    assert rep.passed, rep.summary()


def test_qat_onnx_is_symmetric_qdq(tiny, finetuned, tmp_path):
    import onnx
    from onnx import numpy_helper

    from osnet_edge.export.quantize_onnx import int8_conv_fraction

    meta, res = finetuned
    path = qat.write_onnx_qdq(res.model, tmp_path / "q.onnx", meta)
    g = onnx.load(str(path)).graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consts.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node if n.op_type == "Constant"})
    zps = [consts[n.input[2]] for n in g.node if n.op_type == "QuantizeLinear"]
    assert len(zps) > 100
    # TensorRT's explicit quantization: signed INT8 with zero point 0, activations included
    assert all(z.dtype == np.int8 and not np.any(z) for z in zps)
    assert int8_conv_fraction(path)["fraction"] >= 0.7
    rep = fid.fidelity_report(tiny, str(path), generated(16, 1), gates=RANDOM_NET_GATES)
    assert rep.passed, rep.summary()


def test_qat_with_unsigned_activations_exports_in_tensorrt_form(tiny, tmp_path):
    """Post-ReLU quantizers trained unsigned (all 256 levels) are exported as UINT8 Q/DQ, then shifted into INT8
    with zero point 0 (export/qdq_shift.py): the same numbers in TensorRT's form."""
    import shutil

    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from osnet_edge.export.quantize_onnx import zero_point_free

    meta = _meta(tiny, "float_nchw")
    res = qat.quantization_aware_finetune(tiny, generated(16, 0), meta, epochs=1, batch_size=8, lr=1e-4, quiet=True)
    u8 = qat.write_onnx_qdq(res.model, tmp_path / "u8.onnx", meta)
    s8 = shutil.copy(u8, tmp_path / "s8.onnx")

    def zero_points(path):
        g = onnx.load(str(path)).graph
        consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        consts.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node if n.op_type == "Constant"})
        return [consts[n.input[2]] for n in g.node if n.op_type == "QuantizeLinear"]

    assert any(z.dtype == np.uint8 for z in zero_points(u8))
    assert zero_point_free(s8)["shifted"] > 10
    assert all(z.dtype == np.int8 and not np.any(z) for z in zero_points(s8))
    o = ort.SessionOptions()
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    x = next(generated(4, 3).batches(meta, 4))
    a, b = (ort.InferenceSession(str(p), o, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
            for p in (u8, s8))
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.9999


def test_interrupted_qat_says_how_to_rerun(tiny, monkeypatch):
    # what QAT adds to export_model's clean-up (below): the one line that says where it stopped, what to re-run
    def stop(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.optim.Adam, "step", stop)
    meta = _meta(tiny, "float_nchw")
    with pytest.raises(qat.QATInterrupted, match=r"interrupted in epoch 1/2; nothing was written.*re-run") as e:
        qat.quantization_aware_finetune(tiny, generated(8, 0), meta, epochs=2, batch_size=8, quiet=True)
    assert "\n" not in str(e.value)


def test_cli_qat_needs_int8(capsys):
    from osnet_edge.export.cli import main

    assert main(["--arch", "osnet_x0_25", "--imgsz", "64", "32", "--format", "openvino", "--qat"]) == 2
    assert "--qat applies to --int8" in capsys.readouterr().err


def test_interrupted_int8_writer_leaves_nothing(tiny, tmp_path, monkeypatch):
    from osnet_edge.export import api

    def writer(model, tmp, meta, **_k):
        tmp.write_text("half an IR")  # what a writer has on disk when fine-tuning is interrupted
        raise qat.QATInterrupted("INT8 fine-tuning interrupted in epoch 1/1; nothing was written")

    writer.default_input_format = "float_nchw"
    monkeypatch.setitem(api.INT8_WRITERS, "openvino", writer)
    with pytest.raises(qat.QATInterrupted):
        api.export_model(tiny, "openvino", tmp_path, int8=True, calib="generated:32", quiet=True)
    assert list(tmp_path.iterdir()) == []
