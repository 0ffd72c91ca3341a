"""Calibration coverage in the fidelity report: held-out crops whose activations go past the calibration range."""
import numpy as np
import pytest

from osnet_edge.calibration import CropSet
from osnet_edge.export import coverage as cov
from osnet_edge.export import fidelity as fid


def test_coverage_names_the_layer_the_crops_and_the_lowest_cosine_crop():
    rng = np.random.default_rng(0)
    calib = {"a": rng.uniform(0, 2, 50), "b": rng.uniform(0, 4, 50)}
    calib["a"][0], calib["b"][0] = 2.0, 4.0           # the calibration range: [0, 2] and [0, 4]
    held = {"a": rng.uniform(0, 1.9, 10), "b": rng.uniform(0, 3.9, 10)}
    held["b"][[3, 7]] = [4.0 * 3.5, 4.0 * 1.2]      # crop 3 far past layer b's range, crop 7 a little
    cosine = np.full(10, 0.999)
    cosine[3] = 0.91
    c = cov.coverage(calib, held, names=[f"crop{i}.jpg" for i in range(10)], cosine=cosine)
    assert c["layers"][0]["layer"] == "b" and c["layers"][0]["crops_beyond"] == 2
    assert c["max_ratio"] == pytest.approx(3.5, rel=1e-3)
    assert c["crops_beyond"] == 2 and c["crops_beyond_warn"] == 1
    low = c["lowest_cosine_crop"]
    assert low["name"] == "crop3.jpg" and low["layer"] == "b" and low["ratio"] == pytest.approx(3.5, rel=1e-3)
    line = cov.summary_line(c)
    assert "1 of 10 held-out crops" in line and "3.5x at b" in line and "crop3.jpg" in line

    inside = cov.coverage(calib, {n: v / 2 for n, v in held.items() if n == "a"})
    assert inside["crops_beyond"] == 0 and "stay within" in cov.summary_line(inside)
    assert cov.coverage(calib, {"other": np.ones(3)}) == {} and cov.summary_line({}) == ""


def _crops(rng, n, low, high):
    return [rng.integers(low, high, (64, 32, 3), dtype=np.uint8) for _ in range(n)]


def test_report_measures_coverage_on_the_torch_reference():
    torch = pytest.importorskip("torch")
    from osnet_edge import build_model

    torch.manual_seed(0)
    model = build_model("osnet_x0_25", input_size=(64, 32)).eval()
    rng = np.random.default_rng(0)
    calib = CropSet(_crops(rng, 8, 110, 146), "low-contrast calibration crops")   # grey: a narrow range
    held = CropSet(_crops(rng, 6, 0, 256), "held-out", names=[f"held{i}" for i in range(6)])

    rep = fid.fidelity_report(model, model, held, calib=calib)
    c = rep.extra["calibration_coverage"]
    assert c["max_ratio"] > cov.WARN_RATIO and c["crops_beyond_warn"] == 6 and c["n_crops"] == 6
    assert c["layers"][0]["held_out_max"] > c["layers"][0]["calibration_max"]
    assert c["lowest_cosine_crop"]["name"].startswith("held")
    assert "calibration coverage: 6 of 6 held-out crops" in rep.summary()
    # hooks are gone: later forward passes record nothing and the model is unchanged
    assert not any(m._forward_pre_hooks for _, m in cov.quantized_conv_modules(model))

    # a model left in training mode (as build_model returns it) is embedded in eval mode every time, and keeps
    # its mode: the reference embeds the held-out and then the calibration crops
    model.train()
    same = fid.fidelity_report(model, model, held, calib=held)
    assert same.extra["calibration_coverage"]["max_ratio"] == pytest.approx(1.0) and same.cosine_min > 0.9999
    assert model.training
    # a reference that is not a torch model: nothing to hook, no coverage, no error
    table = fid.embedder_for(model)
    assert "calibration_coverage" not in fid.fidelity_report(table, table, held, calib=calib).extra


def test_spread_names_the_layer_where_a_few_calibration_crops_peak_far_higher():
    rng = np.random.default_rng(0)
    peaks = {"a": rng.uniform(1, 2, 100), "b": rng.uniform(1, 2, 100)}
    peaks["b"][:5] = 300.0                        # five crops (one person) peak ~200x the median crop
    s = cov.spread(peaks)
    assert s["too_wide"] and s["layers"][0]["layer"] == "b" and s["layers"][0]["crops_outlying"] == 5
    assert s["spread"] == pytest.approx(300.0 / np.median(peaks["b"]), rel=1e-3)
    reason = cov.spread_reason(s)
    assert "input of b" in reason and "5 of 100 crops" in reason and f"span {s['spread']:.0f}x" in reason
    narrow = cov.spread({"a": peaks["a"]})
    assert not narrow["too_wide"] and cov.spread_reason(narrow) == "" and cov.spread({}) == {}
    # a layer most crops leave at zero is not a spread
    assert cov.spread({"dead": np.r_[np.zeros(60), np.ones(40)], "a": peaks["a"]})["layers"][0]["layer"] == "a"

    # the refusal gives it as the reason when 8-bit weights alone pass
    report = fid.FidelityReport(n_crops=10, held_out="held", generated=False, cosine_min=0.5, cosine_mean=0.97,
                                cosine_p01=0.6, top1_agreement=0.9, top5_agreement=0.9,
                                failures=["min cosine 0.5000 < 0.9500"],
                                extra={"weights_only_8bit": {"passed": True, "holds": "FP16 (--half)", "bits": 8},
                                       "activation_spread": s})
    msg = fid.refusal(report)
    assert "the loss is in the activations: its activations span" in msg and "Export FP16 (--half) instead" in msg
    assert "--qat" in msg and "\n" not in msg
    assert "activation spread: its activations span" in report.summary()
    report.extra["activation_spread"] = narrow   # a narrow spread: the plain activation wording
    assert "span" not in fid.refusal(report) and "the loss is in the 8-bit activations" in fid.refusal(report)
