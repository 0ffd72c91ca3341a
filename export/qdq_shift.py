"""Asymmetric INT8 activations carried in TensorRT's explicit-quantization form (INT8, zero point 0), exactly.

TensorRT's Q/DQ takes signed INT8 with zero point 0 only. A post-ReLU tensor over [0, m] then gets 128 levels
(7 bits), where UINT8 with a zero point gives it 256, and that bit is what separated the Q/DQ ONNX from
OpenVINO's INT8 on re-ID models. It can be given back without leaving TensorRT's form: an asymmetric quantizer
(scale s, zero point z) equals a constant shift followed by a zero-point-0 INT8 quantizer,

    q_uint8 = clip(round(t / s) + z, 0, 255)      ==     q_int8 = clip(round((t - c) / s), -128, 127) + 128,
    with c = (128 - z) * s,

so DQ_uint8(t) = DQ_int8(t - c) + c. The "+ c" in front of a convolution is a constant per output channel,
c * sum(W[o]), folded into its bias: Sub(c) -> Q/DQ(int8, zp 0) -> Conv with a new bias, and the convolution
still runs in INT8 under TensorRT (a Sub on the producer side fuses like any pointwise op). OSNet's 1x1
convolutions take every post-ReLU tensor (block inputs, the streams' outputs, the aggregated streams). A padded
convolution (the Lite 3x3 depthwise, the stem) would pad with zeros of t - c, so its padding moves into a Pad in
front of the shift (zeros of t; exactly representable, as 0 is on every asymmetric grid). Any other consumer
(pooling, Mul, Add) gets "+ c" back from an Add after the DQ. The rewritten graph computes what the UINT8 graph
computes, to float rounding (tests/test_qdq_shift.py).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from osnet_edge.deps import require


def _padding(conv):
    """A convolution's explicit pads ([] when it has none), or None when auto_pad leaves them to the runtime."""
    pads = []
    for a in conv.attribute:
        if a.name == "pads":
            pads = list(a.ints) if any(a.ints) else []
        if a.name == "auto_pad" and a.s not in (b"", b"NOTSET", b"VALID"):
            return None
    return pads


class _Graph:
    def __init__(self, proto):
        self.g = proto.graph
        self.inits = {i.name: i for i in self.g.initializer}
        self.producer = {o: n for n in self.g.node for o in n.output}
        self.uses = defaultdict(list)
        for n in self.g.node:
            for k, i in enumerate(n.input):
                self.uses[i].append((n, k))
        self.outputs = {o.name for o in self.g.output}
        self._n = 0

    def array(self, name):
        nh = require("onnx", "ONNX Q/DQ rewrite").numpy_helper
        return nh.to_array(self.inits[name])

    def put(self, name, value) -> str:
        """Set (or create) an initializer."""
        nh = require("onnx", "ONNX Q/DQ rewrite").numpy_helper
        t = nh.from_array(np.asarray(value), name)
        if name in self.inits:
            self.inits[name].CopyFrom(t)
        else:
            self.g.initializer.append(t)
            self.inits[name] = self.g.initializer[-1]
        return name

    def fresh(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_s8_{self._n}"

    def value(self, name):
        """A constant tensor: an initializer, a Constant node's value, or a DQ (of a Q) of constants, computed."""
        nh = require("onnx", "ONNX Q/DQ rewrite").numpy_helper
        if name in self.inits:
            return self.array(name).astype(np.float64)
        node = self.producer[name]
        if node.op_type == "Constant":
            return nh.to_array(node.attribute[0].t).astype(np.float64)
        if node.op_type not in ("DequantizeLinear", "QuantizeLinear"):
            raise ValueError(f"{name}: not a constant (made by {node.op_type} {node.name!r})")
        x, scale = self.value(node.input[0]), self.value(node.input[1])
        zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        zp = self.value(zp_name) if zp_name else np.zeros(1)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * x.ndim
        if scale.size > 1:
            shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape) if zp.size > 1 else zp.reshape(())
        if node.op_type == "DequantizeLinear":
            return (x - zp) * scale
        lo, hi = (0, 255) if (zp_name and self.dtype(zp_name) == np.uint8) else (-128, 127)
        return np.clip(np.round(x / scale) + zp, lo, hi)

    def dtype(self, name):
        if name in self.inits:
            return self.array(name).dtype
        return require("onnx", "ONNX Q/DQ rewrite").numpy_helper.to_array(self.producer[name].attribute[0].t).dtype

    def weight(self, conv):
        """The float weights the convolution computes with (dequantized where its weight input is a DQ)."""
        return self.value(conv.input[1])

    def add_to_bias(self, conv, delta, input_scale: float) -> None:
        """bias += delta; an int32 bias (DQ with scale input_scale * weight_scale) is requantized at input_scale."""
        b = conv.input[2] if len(conv.input) > 2 and conv.input[2] else None
        if b is None:
            name = self.put(self.fresh(conv.name + "_bias"), delta.astype(np.float32))
            if len(conv.input) < 3:
                conv.input.append(name)
            else:
                conv.input[2] = name
        elif b in self.inits or self.producer[b].op_type != "DequantizeLinear":
            conv.input[2] = self.put(self.fresh(conv.name + "_bias"), (self.value(b) + delta).astype(np.float32))
        else:
            dq = self.producer[b]
            old = self.value(b)
            w_dq = self.producer.get(conv.input[1])
            w_scale = self.value(w_dq.input[1]) if w_dq is not None and w_dq.op_type == "DequantizeLinear" else 1.0
            scale = np.broadcast_to(input_scale * w_scale, old.shape)
            self.put(dq.input[0], np.round((old + delta) / scale).astype(np.int32))
            self.put(dq.input[1], scale.astype(np.float32))


def to_zero_point_free(proto) -> dict:
    """Rewrite every activation Q/DQ pair with a UINT8 zero point (in place) into INT8 with zero point 0, exact:
    shifted, the shift folded into consuming convolutions' biases (a padded one gets its padding as a Pad first)
    and added back in front of anything else (a convolution with auto_pad included: it then runs in float).
    Returns counts of what was rewritten."""
    onnx = require("onnx", "ONNX Q/DQ rewrite")
    make = onnx.helper.make_node
    gr = _Graph(proto)
    counts = {"shifted": 0, "bias_folds": 0, "padded_first": 0, "shift_restored": 0}
    before, after = defaultdict(list), defaultdict(list)  # id(node) -> nodes to place right before / after it
    for q in [n for n in gr.g.node if n.op_type == "QuantizeLinear"]:
        if q.input[0] in gr.inits or len(q.input) < 3 or gr.dtype(q.input[2]) != np.uint8:
            continue
        s = float(gr.value(q.input[1]))
        z = int(gr.value(q.input[2]))
        dqs = [n for n, _ in gr.uses[q.output[0]] if n.op_type == "DequantizeLinear"]
        for dq in dqs:
            if dq.output[0] in gr.outputs:  # a graph output: an Identity consumer keeps its name
                old, new = dq.output[0], gr.fresh(dq.output[0])
                dq.output[0] = new
                for n, k in gr.uses.pop(old, []):
                    n.input[k] = new
                    gr.uses[new].append((n, k))
                ident = make("Identity", [new], [old], name=gr.fresh(dq.name + "_output"))
                after[id(dq)].append(ident)
                gr.uses[new].append((ident, 0))
        uses = [(dq, n, k) for dq in dqs for n, k in gr.uses[dq.output[0]]]
        padding = {id(u): _padding(u[1]) if u[1].op_type == "Conv" and u[2] == 0 else None for u in uses}
        fold = [u for u in uses if padding[id(u)] == []]
        pad_first = [(u, padding[id(u)]) for u in uses if padding[id(u)]]
        other = [u for u in uses if padding[id(u)] is None]  # auto_pad convolutions too: no pads to move out
        zero = gr.put(gr.fresh(q.name + "_zp"), np.int8(0))
        source = q.input[0]
        c = np.float32((128 - z) * s)
        const = gr.put(gr.fresh(q.name + "_c"), c)
        shifted = gr.fresh(source + "_shift")
        before[id(q)].append(make("Sub", [source, const], [shifted], name=gr.fresh(q.name + "_sub")))
        q.input[0], q.input[2] = shifted, zero
        for dq in dqs:
            dq.input[2] = zero
        for (_, conv, _), pads in pad_first:
            # the zeros of padding must be zeros of t, not of t - c: pad first, then shift and quantize
            half = len(pads) // 2
            pad_const = gr.put(gr.fresh(conv.name + "_pads"),
                               np.array([0, 0, *pads[:half], 0, 0, *pads[half:]], np.int64))
            p, sh, qo, do = (gr.fresh(source + x) for x in ("_pad", "_padshift", "_padq", "_paddq"))
            after[id(q)] += [make("Pad", [source, pad_const], [p], name=gr.fresh(conv.name + "_pad")),
                             make("Sub", [p, const], [sh], name=gr.fresh(conv.name + "_sub")),
                             make("QuantizeLinear", [sh, q.input[1], zero], [qo], name=gr.fresh(q.name)),
                             make("DequantizeLinear", [qo, q.input[1], zero], [do], name=gr.fresh(q.name))]
            conv.input[0] = do
            for a in conv.attribute:
                if a.name == "pads":
                    a.ints[:] = [0] * len(pads)
            fold.append((None, conv, 0))
        for _, conv, _ in fold:
            w = gr.weight(conv)
            gr.add_to_bias(conv, float(c) * w.reshape(w.shape[0], -1).sum(axis=1), s)
        for dq in {id(dq): dq for dq, _, _ in other}.values():
            back = gr.fresh(dq.output[0] + "_unshift")
            after[id(dq)].insert(0, make("Add", [dq.output[0], const], [back], name=gr.fresh(q.name + "_add")))
            for d, n, k in other:
                if d is dq:
                    n.input[k] = back
        counts["shifted"] += 1
        counts["bias_folds"] += len(fold)
        counts["padded_first"] += len(pad_first)
        counts["shift_restored"] += len(other)
    nodes = []
    for n in gr.g.node:
        nodes += [*before[id(n)], n, *after[id(n)]]
    del gr.g.node[:]
    gr.g.node.extend(nodes)
    del gr.g.value_info[:]  # stale UINT8 annotations of the rewritten tensors
    while True:  # drop what no longer feeds anything (a pair whose consumers all got their own padded pair)
        used = {i for n in gr.g.node for i in n.input} | gr.outputs
        dead = [n for n in gr.g.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            gr.g.node.remove(n)
    used = {i for n in gr.g.node for i in n.input}
    keep = [t for t in gr.g.initializer if t.name in used]
    del gr.g.initializer[:]
    gr.g.initializer.extend(keep)
    return counts
