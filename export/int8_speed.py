"""What INT8 buys on the exporting CPU: the INT8 artifact's speed against its FP32 counterpart, measured at export.

INT8 costs fidelity; whether it is worth it depends on the network and the CPU (osnet_x0_25 at 128x64 on a
2-core VNNI CPU: 1.05-1.16x, per-call overhead dominates; osnet_x1_0: 1.65-2.5x). Each INT8 export times both
on a fixed batch of its held-out crops, interleaved in rounds (a shared machine's load drifts), and the report
says plainly when the gain is under WORTH_SPEEDUP. A ratio measured on this CPU, not the deployment target's.
"""
from __future__ import annotations

import os
import time

import numpy as np

WORTH_SPEEDUP = 1.3   # below this INT8 buys too little on this CPU to be worth its fidelity cost
BATCH = 8
ROUNDS = 5
SECONDS_PER_ROUND = 0.1


def _rate(fn, x, seconds) -> float:
    n, t0 = 0, time.perf_counter()
    while True:
        fn(x)
        n += 1
        el = time.perf_counter() - t0
        if el >= seconds:
            return n * len(x) / el


def measure(run_fp32, run_int8, batch: np.ndarray, rounds: int = ROUNDS, seconds: float = SECONDS_PER_ROUND) -> dict:
    """run_*: batch -> output. Crops/s of each (median over interleaved rounds) and their ratio."""
    run_fp32(batch), run_int8(batch)  # first calls allocate
    r32, r8 = [], []
    for _ in range(rounds):
        r32.append(_rate(run_fp32, batch, seconds))
        r8.append(_rate(run_int8, batch, seconds))
    fp32, int8 = float(np.median(r32)), float(np.median(r8))
    try:
        load = open("/proc/loadavg").read().split()[0]
    except OSError:
        load = None
    return {"batch": int(len(batch)), "fp32_crops_per_s": round(fp32, 1), "int8_crops_per_s": round(int8, 1),
            "speedup": round(int8 / fp32, 3), "worth": bool(int8 / fp32 >= WORTH_SPEEDUP), "cpu": cpu_name(),
            "cores": os.cpu_count(), "loadavg": load, "protocol": f"{rounds} interleaved rounds of "
                                                                   f"{seconds:g} s, median"}


def cpu_flags() -> set:
    """This CPU's feature flags as /proc/cpuinfo spells them (empty where it has none)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def summary_line(s: dict) -> str:
    line = (f"  speed on this CPU ({s['cpu']}, {s['cores']} cores, batch {s['batch']}): INT8 "
            f"{s['int8_crops_per_s']:.0f} crops/s vs FP32 {s['fp32_crops_per_s']:.0f}: {s['speedup']:.2f}x")
    if not s["worth"]:
        line += (f"\n  INT8 buys too little on this CPU (under {WORTH_SPEEDUP:g}x) to be worth its fidelity cost: "
                 f"FP16 or FP32 keep full fidelity at nearly the same speed here")
    return line


def openvino_runners(fp32_ov_model, int8_xml):
    """(run_fp32, run_int8) for an in-memory FP32 ov.Model and an INT8 IR, both compiled for this CPU in f32."""
    from osnet_edge.deps import require
    from osnet_edge.runtime.openvino_backend import precision_config

    ov = require("openvino", "timing INT8 against FP32")
    core = ov.Core()
    c32 = core.compile_model(fp32_ov_model, "CPU", precision_config(core, "CPU", "fp32"))
    c8 = core.compile_model(core.read_model(str(int8_xml)), "CPU", precision_config(core, "CPU", "int8"))
    r32, r8 = c32.create_infer_request(), c8.create_infer_request()
    return (lambda x: r32.infer([x])), (lambda x: r8.infer([x]))


def onnx_runners(fp32_path, int8_path):
    """(run_fp32, run_int8) for two ONNX files under ONNX Runtime's CPU provider."""
    from osnet_edge.deps import require

    ort = require("onnxruntime", "timing INT8 against FP32")
    s32 = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    s8 = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
    n32, n8 = s32.get_inputs()[0].name, s8.get_inputs()[0].name
    return (lambda x: s32.run(None, {n32: x})), (lambda x: s8.run(None, {n8: x}))
