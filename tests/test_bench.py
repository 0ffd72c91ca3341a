"""osnet-bench: timing statistics, bad input, the JSON record's arithmetic, Ctrl-C, sweep and Table 6.

Tiny models (osnet_x0_25 at 64x32) and --iters 1-2 keep this file well under a minute; the speed
numbers themselves are never asserted (they live in benchmarks/results/).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from osnet_edge import build_model, complexity, save_checkpoint  # noqa: E402
from osnet_edge.benchmarks import cli, measure, plots, probe, runner  # noqa: E402
from osnet_edge.benchmarks.cli import UsageError, main, parse_int_list  # noqa: E402

SIZE = (64, 32)
FAST = ["--iters", "2", "--warmup", "0", "--rounds", "1", "--no-probe", "--threads", "1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two checkpoints of one architecture plus one of another input size (two baseline groups)."""
    d = tmp_path_factory.mktemp("bench")
    a = save_checkpoint(build_model("osnet_x0_25", input_size=SIZE), d / "a.pth")
    b = save_checkpoint(build_model("osnet_x0_25", input_size=SIZE), d / "b.pth")
    c = save_checkpoint(build_model("osnet_x0_25", input_size=(32, 16)), d / "c.pth")
    return a, b, c


def test_parse_batch_list():
    assert parse_int_list("1, 8,32,8") == (1, 8, 32)
    for bad in ("", "1,x", "0", "-4", "1;8", "1.5"):
        with pytest.raises(UsageError, match="--batch"):
            parse_int_list(bad)


def test_summarize_percentiles_and_throughput():
    lat = [0.010] * 98 + [0.100, 0.200]
    t = measure.summarize(lat, batch=4)
    assert t.calls == 100 and t.p50_ms == pytest.approx(10.0)
    assert t.p50_ms <= t.p90_ms <= t.p99_ms <= 200.0 and t.p99_ms > 100.0
    # throughput from the whole window, so the two slow calls count
    assert t.throughput == pytest.approx(4 * 100 / sum(lat))


def test_interleaved_gives_each_callable_its_iters_in_turns():
    order = []
    timings = measure.time_interleaved([lambda: order.append("a"), lambda: order.append("b")], batch=1,
                                       warmup=1, iters=4, rounds=2)
    assert [t.calls for t in timings] == [4, 4]
    # warm-up a, b, then rounds of two calls each, alternating
    assert order == ["a", "b", "a", "a", "b", "b", "a", "a", "b", "b"]


def test_matmul_probe_reports_consistent_numbers():
    p = probe.matmul_peak(n=128, seconds=0.05, threads=1)
    assert p["gflops"] > 0 and p["reps"] >= 3 and p["threads"] == 1
    assert p["gflops"] == pytest.approx(2 * 128 ** 3 / (p["best_ms"] / 1e3) / 1e9, rel=0.01)
    info = probe.machine_info()
    assert info["logical_cores"] >= 1 and "numpy" in info["libraries"]


@pytest.mark.parametrize("args, needle, rc", [
    (["nope.onnx"], "artifact not found: nope.onnx", 1),      # a bad input: a failure
    (["--batch", "1,x", "ART"], "--batch '1,x'", 2),           # the command line itself: a usage error
    ([], "nothing to measure", 2),
    (["--sweep", "--format", "coreml"], "--format 'coreml'", 2),
    (["--modes", "fast", "ART"], "--modes 'fast'", 2),
    (["--streams", "0", "ART"], "--streams must be >= 1", 2),
])
def test_bad_input_is_one_line(args, needle, rc, tiny, capsys):
    args = [str(tiny[0]) if a == "ART" else a for a in args]
    assert main(args) == rc
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and err.startswith("osnet-bench: error:")


def test_unknown_format_is_one_line(tmp_path, capsys):
    bogus = tmp_path / "model.tflite"
    bogus.write_bytes(b"x")
    assert main([str(bogus)]) == 1
    err = capsys.readouterr().err.strip()
    assert "unknown model format '.tflite'" in err and len(err.splitlines()) == 1


def test_run_record_rows_and_arithmetic(tiny, tmp_path, capsys):
    out_json, out_png = tmp_path / "run.json", tmp_path / "run.png"
    rc = main([*map(str, tiny), "--batch", "1,2", *FAST, "--json", str(out_json), "--plot", str(out_png)])
    assert rc == 0
    table = capsys.readouterr().out
    assert "x eager" in table and "a.pth" in table and "32x16 eager fp32" in table
    rec = json.loads(out_json.read_text())
    assert rec["interrupted"] is False and rec["kind"] == "artifacts"
    assert len(rec["load_average_start"]) == 3 and rec["settings"]["batches"] == [1, 2]
    rows = rec["rows"]
    # two groups: (a, b + one baseline) and (c + one baseline); 2 batches x 2 modes each
    assert len(rows) == (3 + 2) * 2 * 2
    assert sum(r["baseline"] for r in rows) == 2 * 2 * 2
    madds = complexity(build_model("osnet_x0_25"), SIZE).mult_adds
    for r in rows:
        assert r["calls"] == 2 and r["p50_ms"] <= r["p99_ms"]
        assert r["streams"] == 1  # PyTorch artifacts run each batch as one call
        assert r["throughput"] == pytest.approx(r["batch"] * r["calls"] / r["total_s"], rel=1e-3)
        if r["input_size"] == list(SIZE):
            assert r["mult_adds"] == madds
            assert r["gflops"] == pytest.approx(2 * madds * r["throughput"] / 1e9, rel=1e-2)
        if not r["baseline"]:
            base = next(b for b in rows if b["baseline"] and b["input_size"] == r["input_size"]
                        and b["batch"] == r["batch"] and b["mode"] == r["mode"])
            assert r["speedup"] == pytest.approx(r["throughput"] / base["throughput"], rel=1e-2)
    assert out_png.stat().st_size > 1000 and out_png.read_bytes()[:4] == b"\x89PNG"
    heads = {tuple(h["input_size"]): h for h in rec["headline"]}
    assert set(heads) == {SIZE, (32, 16)}
    e2e = [r["speedup"] for r in rows if r["mode"] == "e2e" and r["batch"] == 2 and not r["baseline"]
           and tuple(r["input_size"]) == SIZE]
    assert heads[SIZE]["best_e2e_speedup"] == max(e2e) and heads[SIZE]["batch"] == 2


def test_ctrl_c_prints_rows_so_far(tiny, tmp_path, monkeypatch, capsys):
    real, calls = runner.time_interleaved, []

    def interrupt_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(runner, "time_interleaved", interrupt_second)
    out_json = tmp_path / "partial.json"
    rc = main([str(tiny[0]), "--batch", "1,2", *FAST, "--json", str(out_json)])
    assert rc == 130
    captured = capsys.readouterr()
    assert "interrupted: 2 measurement(s)" in captured.err
    rec = json.loads(out_json.read_text())
    assert rec["interrupted"] is True and len(rec["rows"]) == 2  # baseline + a.pth, batch 1, model
    assert "a.pth" in captured.out


def test_sweep_pytorch_point(tmp_path, capsys):
    out_json, out_png = tmp_path / "sweep.json", tmp_path / "sweep.png"
    rc = main(["--sweep", "--format", "pytorch", "--widths", "0.25", "--resolutions", "0.25,0.5", "--batch", "2",
               "--modes", "model", *FAST, "--json", str(out_json), "--plot", str(out_png)])
    assert rc == 0
    rec = json.loads(out_json.read_text())
    assert rec["kind"] == "sweep" and rec["settings"]["format"] == "pytorch"
    pts = [r for r in rec["rows"] if not r["baseline"]]
    assert sorted((r["beta"], r["rho"], tuple(r["input_size"])) for r in pts) == [
        (0.25, 0.25, (64, 32)), (0.25, 0.5, (128, 64))]
    for r in pts:  # counted Mult-Adds within 2% of the paper's Table 6, published R1 attached
        assert r["mult_adds"] / 1e6 == pytest.approx(r["paper_mult_adds_m"], rel=0.02)
    assert {r["paper_r1"] for r in pts} == {79.1, 88.7}
    assert out_png.read_bytes()[:4] == b"\x89PNG"


def test_sweep_onnx_point_when_export_exists(tmp_path):
    export = pytest.importorskip("osnet_edge.export")
    if not hasattr(export, "export_model"):
        pytest.skip("osnet_edge.export.export_model not available yet")
    pytest.importorskip("onnxruntime")
    out_json = tmp_path / "sweep.json"
    rc = main(["--sweep", "--format", "onnx", "--widths", "0.25", "--resolutions", "0.25", "--batch", "2",
               "--modes", "model,e2e", "--no-verify", *FAST, "--json", str(out_json), "--sweep-dir", str(tmp_path / "art")])
    assert rc == 0
    rows = json.loads(out_json.read_text())["rows"]
    assert {r["backend"] for r in rows} == {"pytorch-eager", "onnxruntime"} or len(rows) == 4
    assert list((tmp_path / "art").glob("*.onnx"))


def test_table6_flag_prints_the_grid(capsys):
    assert main(["--table6"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == 1 + 16 and "Mult-Adds" in lines[0]


def test_pareto_front():
    pts = [(10, 80), (20, 85), (15, 70), (40, 84), (5, 60)]
    assert plots.pareto_front(pts) == [4, 0, 1]


def test_bench_crops_vary_in_size():
    crops = runner.bench_crops(16, seed=3)
    shapes = {c.shape for c in crops}
    assert len(crops) == 16 and len(shapes) > 4 and all(c.dtype == np.uint8 and c.shape[2] == 3 for c in crops)


def test_parser_help_mentions_every_option():
    text = cli.build_parser().format_help()
    for opt in ("--batch", "--seconds", "--iters", "--warmup", "--threads", "--json", "--plot", "--sweep", "--table6"):
        assert opt in text


def test_profile_torch_artifact(tiny, capsys):
    rc = main([str(tiny[0]), "--batch", "2", *FAST, "--no-baseline", "--modes", "model", "--profile"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "profile of a.pth" in out and "aten::" in out and "share" in out


def test_profile_aggregates_shares():
    from osnet_edge.benchmarks.profile import _aggregate

    agg = _aggregate([("Conv", "c1", "jit_avx2", 300.0), ("Conv", "c2", "jit_avx2", 100.0), ("Relu", "r", "", 100.0)])
    assert agg["total_ms"] == pytest.approx(0.5)
    assert agg["by_op_type"][0] == {"op": "Conv", "nodes": 2, "ms": 0.4, "share": 0.8}
    assert agg["top_nodes"][0]["node"] == "c1"


def test_console_sweep_in_a_fresh_interpreter(tmp_path):
    """A fresh process imports osnet_edge.complexity (the module) before any lazy attribute: regression
    for `from osnet_edge import complexity` resolving to the submodule instead of the function."""
    import subprocess
    import sys

    out_json = tmp_path / "s.json"
    proc = subprocess.run([sys.executable, "-m", "osnet_edge.benchmarks.cli", "--sweep", "--format", "pytorch",
                           "--widths", "0.25", "--resolutions", "0.25", "--batch", "1", "--modes", "model",
                           *FAST, "--no-baseline", "--json", str(out_json)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out_json.read_text())["rows"]
    assert len(rows) == 1 and rows[0]["mult_adds"] / 1e6 == pytest.approx(5.2, rel=0.03)


def test_headline_skips_groups_with_nothing_to_compare():
    from osnet_edge.benchmarks.report import format_headline, headline

    rows = [{"arch": "osnet_x0_25", "input_size": [256, 128], "batch": b, "mode": "model", "baseline": False,
             "artifact": "a.xml", "throughput": 10.0} for b in (1, 32)]
    assert headline(rows) == [] and format_headline(headline(rows)) == ""
    rows[1]["peak_fraction"], rows[1]["gflops"] = 0.5, 70.0
    assert "50.0% of the matmul peak" in format_headline(headline(rows))


@pytest.mark.parametrize("n_artifacts", [1, 4])
def test_run_plot_shows_throughput_and_latency_values_with_one_legend(n_artifacts, tmp_path):
    """1-4 artifacts x 3 batch sizes, both modes: every bar's height is its row's throughput (top) or p50
    (bottom), its value is written on it (with the speed-up / the p99), and one legend names every artifact."""
    rng = np.random.default_rng(n_artifacts)
    names = ["osnet_x0_25 256x128 eager fp32"] + [f"osnet_x0_25_256x128_{i}.xml" for i in range(n_artifacts)]
    rows = []
    for mode in ("model", "e2e"):
        for b in (1, 8, 32):
            for i, name in enumerate(names):
                thr = float(rng.uniform(2, 900))
                p50 = float(rng.uniform(1, 2000))
                rows.append({"artifact": name, "mode": mode, "batch": b, "baseline": i == 0, "throughput": thr,
                             "p50_ms": p50, "p99_ms": p50 * float(rng.uniform(1.01, 3)),
                             "speedup": 1.0 if i == 0 else float(rng.uniform(1, 90))})
    fig = plots.run_figure(rows)
    axes = fig.axes
    assert len(axes) == 4  # (throughput, latency) x (model, e2e)
    for ax, (key, mode) in zip(axes, [("throughput", "model"), ("throughput", "e2e"), ("p50_ms", "model"),
                                      ("p50_ms", "e2e")]):
        mine = [r for r in rows if r["mode"] == mode]
        heights = sorted(p.get_height() for p in ax.patches)
        assert heights == pytest.approx(sorted(r[key] for r in mine))
        texts = [t.get_text() for t in ax.texts]
        for r in mine:
            if key == "throughput":
                want = plots._value(r["throughput"]) + ("" if r["baseline"] else f"  {r['speedup']:.1f}x")
            else:
                want = f"{plots._value(r['p50_ms'])} / {plots._value(r['p99_ms'])}"
            assert want in texts
        assert ax.get_legend() is None
    assert len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == names
    out = plots.plot_run(rows, tmp_path / "run.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
