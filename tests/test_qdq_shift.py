"""Asymmetric INT8 activations rewritten into TensorRT's zero-point-0 form (export/qdq_shift.py): the rewrite is
exact where it shifts, every activation zero point ends INT8 0, and the convolutions stay fed by a DQ."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from onnx import numpy_helper  # noqa: E402

from osnet_edge.export.qdq_shift import to_zero_point_free  # noqa: E402


class _Net(torch.nn.Module):
    """Post-ReLU tensors feeding what OSNet feeds them to: 1x1 convolutions, a gate (pool, Mul), a residual Add,
    and (padded=True) a padded 3x3 convolution."""

    def __init__(self, padded: bool):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 1)
        self.b = torch.nn.Conv2d(8, 8, 1)
        self.c = torch.nn.Conv2d(8, 8, 1)
        self.g = torch.nn.Conv2d(8, 8, 1)
        self.d = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8) if padded else None

    def forward(self, x):
        a = torch.relu(self.a(x))
        b = torch.relu(self.b(a))
        gate = torch.sigmoid(self.g(torch.mean(b, dim=(2, 3), keepdim=True)))
        r = torch.relu(self.c(b * gate) + a)
        if self.d is not None:
            r = torch.relu(self.d(r))
        return torch.flatten(torch.mean(r, dim=(2, 3)), 1)


def _asymmetric(tmp_path, padded: bool):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    torch.manual_seed(0)
    net = _Net(padded).eval()
    x = torch.rand(2, 3, 8, 8)
    src = tmp_path / "fp32.onnx"
    torch.onnx.export(net, (x,), str(src), input_names=["input"], output_names=["y"], opset_version=17,
                      dynamo=False, dynamic_axes={"input": {0: "N"}, "y": {0: "N"}})
    rng = np.random.default_rng(0)
    data = [{"input": rng.random((4, 3, 8, 8), dtype=np.float32)} for _ in range(4)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(data)

        def get_next(self):
            return next(self.it, None)

    out = tmp_path / "asym.onnx"
    quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, "DedicatedQDQPair": False})
    return out, rng.random((3, 3, 8, 8), dtype=np.float32)


def _run(proto_or_path, x):
    o = ort.SessionOptions()
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the reference Q/DQ ops, unfused
    src = proto_or_path.SerializeToString() if hasattr(proto_or_path, "SerializeToString") else str(proto_or_path)
    s = ort.InferenceSession(src, o, providers=["CPUExecutionProvider"])
    return s.run(None, {"input": x})[0]


def _zero_points(proto):
    init = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    return [init[n.input[2]] for n in proto.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in init]


def test_shift_reproduces_uint8_activations_exactly(tmp_path):
    src, x = _asymmetric(tmp_path, padded=False)
    before = onnx.load(str(src))
    assert any(z.dtype == np.uint8 for z in _zero_points(before))
    proto = onnx.load(str(src))
    counts = to_zero_point_free(proto)
    onnx.checker.check_model(proto)
    # every activation pair shifted: folded into 1x1 convolutions, added back before the gate's pool/Mul and the Add
    assert counts["shifted"] >= 3 and counts["bias_folds"] >= 3 and counts["shift_restored"] >= 1
    assert all(z.dtype in (np.int8, np.int32) and not z.any() for z in _zero_points(proto))
    ref, got = _run(before, x), _run(proto, x)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    # a convolution still reads its input straight from a DequantizeLinear (TensorRT fuses that pair into INT8)
    producer = {o: n for n in proto.graph.node for o in n.output}
    assert all(producer[n.input[0]].op_type == "DequantizeLinear" for n in proto.graph.node if n.op_type == "Conv")


def test_padded_convolution_pads_before_the_shift(tmp_path):
    src, x = _asymmetric(tmp_path, padded=True)
    before = onnx.load(str(src))
    proto = onnx.load(str(src))
    counts = to_zero_point_free(proto)
    onnx.checker.check_model(proto)
    assert counts["padded_first"] == 1  # the depthwise 3x3's input
    assert all(z.dtype in (np.int8, np.int32) and not z.any() for z in _zero_points(proto))
    producer = {o: n for n in proto.graph.node for o in n.output}
    dw = next(n for n in proto.graph.node if n.op_type == "Conv"
              and any(a.name == "group" and a.i == 8 for a in n.attribute))
    assert all(not any(a.ints) for a in dw.attribute if a.name == "pads")
    chain = [producer[dw.input[0]]]
    while chain[-1].op_type != "Pad":
        chain.append(producer[chain[-1].input[0]])
    assert [n.op_type for n in chain] == ["DequantizeLinear", "QuantizeLinear", "Sub", "Pad"]
    ref, got = _run(before, x), _run(proto, x)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    # nothing left behind that feeds nothing
    used = {i for n in proto.graph.node for i in n.input} | {o.name for o in proto.graph.output}
    assert all(any(o in used for o in n.output) for n in proto.graph.node)


def test_symmetric_pairs_are_left_alone(tmp_path):
    src, _ = _asymmetric(tmp_path, padded=False)
    proto = onnx.load(str(src))
    to_zero_point_free(proto)
    again = onnx.ModelProto.FromString(proto.SerializeToString())
    assert to_zero_point_free(again)["shifted"] == 0
    assert len(again.graph.node) == len(proto.graph.node)


def test_quantized_graph_output_keeps_its_name(tmp_path):
    """onnxruntime quantizes a ReLU that is the graph output too: the output keeps its name and its values."""
    from onnx import TensorProto, helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(2)
    w = numpy_helper.from_array((rng.standard_normal((8, 3, 1, 1)) * 0.5).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
                           helper.make_node("Relu", ["c"], ["y"], name="relu")], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 4, 4])], [w])
    src, out = tmp_path / "fp32.onnx", tmp_path / "asym.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    data = iter([{"input": rng.standard_normal((4, 3, 4, 4)).astype(np.float32)} for _ in range(2)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(data, None)

    quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, extra_options={"ActivationSymmetric": False})
    before, proto = onnx.load(str(out)), onnx.load(str(out))
    to_zero_point_free(proto)
    onnx.checker.check_model(proto)
    assert [o.name for o in proto.graph.output] == ["y"]
    assert all(z.dtype in (np.int8, np.int32) and not z.any() for z in _zero_points(proto))
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    ref, got = _run(before, x), _run(proto, x)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
