"""Every backend computes at the precision the artifact declares, on every CPU, unless asked otherwise.

OpenVINO's CPU plugin runs IRs in bfloat16 by default where the CPU has AVX-512 BF16 or AMX (and maps an
f16 request to bf16 there): these tests read the compiled model's own report, so they mean something on
both kinds of machine. The trained-model checks are the failure users saw: a re-ID-trained network's FP32
IR refused by its own 0.99999 parity gate, and its FP16 IR by 0.999, because they silently ran in bf16.
"""
import pytest

ov = pytest.importorskip("openvino")

from osnet_edge import Embedder  # noqa: E402
from osnet_edge.errors import ArtifactError  # noqa: E402
from osnet_edge.export import PARITY_THRESHOLDS, export_model  # noqa: E402
from osnet_edge.synthetic import synthetic_crops  # noqa: E402

CAPS = set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


@pytest.fixture(scope="module")
def trained_irs(trained, tmp_path_factory):
    """FP32 and FP16 IRs of the trained model, each kept only if it passed its own parity gate."""
    out = tmp_path_factory.mktemp("irs")
    return {p: export_model(trained, "openvino", out, half=p == "fp16", quiet=True) for p in ("fp32", "fp16")}


def test_trained_irs_pass_their_own_parity_gates(trained_irs):
    for prec, res in trained_irs.items():
        assert res.verified and res.meta.precision == prec
        assert res.parity["min_cos"] >= PARITY_THRESHOLDS[prec]


def test_openvino_compiles_the_declared_precision(trained_irs):
    for prec, res in trained_irs.items():
        with Embedder(res.path, device="CPU") as emb:
            reported = emb.backend.compiled.get_property("INFERENCE_PRECISION_HINT")
            # an FP16 IR computes f16 only where the CPU does natively; never bf16, which has fewer digits
            want = ov.Type.f16 if prec == "fp16" and "FP16" in CAPS else ov.Type.f32
            assert reported == want, (prec, reported)
            assert emb.execution_precision == {ov.Type.f16: "fp16", ov.Type.f32: "fp32"}[want]
            assert f"executes={emb.execution_precision}" in repr(emb)


def test_bf16_is_explicit_gated_and_named(trained_irs, reid_data):
    import cv2

    path = trained_irs["fp32"].path
    if "BF16" not in CAPS:  # an AVX2 machine: asking is refused in one line rather than silently ignored
        with pytest.raises(ArtifactError, match="cannot execute bf16"):
            Embedder(path, precision="bf16")
        return
    crops = [cv2.imread(str(p)) for p in sorted((reid_data / "query").glob("*.jpg"))[:24]]
    with Embedder(path, precision="bf16") as emb:
        assert emb.backend.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16
        assert emb.execution_precision == "bf16" and "executes=bf16" in repr(emb)
        worst = emb.check_precision(crops)
    assert 0.99 <= worst < 1.0  # bf16 really differs from f32, and stays inside its own gate here
    with Embedder(path) as ref:
        assert ref.check_precision(crops) == 1.0  # at the declared precision there is nothing to compare


def test_unsupported_precision_requests_are_refused(trained_irs, tmp_path):
    with pytest.raises(ArtifactError, match="precision must be one of"):
        Embedder(trained_irs["fp32"].path, precision="int4")
    if "FP16" not in CAPS:
        with pytest.raises(ArtifactError, match="cannot execute fp16"):
            Embedder(trained_irs["fp32"].path, precision="fp16")
    pytest.importorskip("onnxruntime")
    from test_runtime_artifacts import onnx_path

    with Embedder(onnx_path()) as emb:
        assert emb.execution_precision == "fp32" and "executes=fp32" in repr(emb)
    with pytest.raises(ArtifactError, match="has no bf16 mode"):
        Embedder(onnx_path(), precision="bf16")


def test_bench_names_the_executed_precision(trained_irs):
    from osnet_edge.benchmarks.report import format_table
    from osnet_edge.benchmarks.runner import Bench, Settings

    path = trained_irs["fp32"].path
    settings = Settings(batches=(2,), iters=2, warmup=0, rounds=1, baseline=False, modes=("model",),
                        precision="bf16" if "BF16" in CAPS else None)
    bench = Bench(settings, crops=synthetic_crops(2, seed=0))
    try:
        rows = bench.run_artifacts([path])
    finally:
        bench.close()
    (row,) = rows
    assert row["precision"] == "fp32"
    if "BF16" in CAPS:
        assert row["executes"] == "bf16" and 0.99 <= row["precision_min_cos"] < 1.0
    else:
        assert row["executes"] == "fp32" and "precision_min_cos" not in row
    table = format_table(rows)
    assert f"fp32 {row['executes']}" in " ".join(table.split())

