"""complexity() against the paper: Table 1 and all 16 rows of Table 6."""
import pytest

from osnet_edge import build_model, complexity
from osnet_edge.complexity import PAPER_TABLE6

# (β, ρ) -> (params in M at the paper's 0.1M rounding, Mult-Adds in M), transcribed from Table 6
ROWS = {k: v[:2] for k, v in PAPER_TABLE6.items()}


@pytest.fixture(scope="module")
def models():
    return {w: build_model(width=w) for w in (1.0, 0.75, 0.5, 0.25)}


@pytest.mark.parametrize("beta, rho", sorted(ROWS))
def test_table6_row(models, beta, rho):
    params_m, madds_m = ROWS[(beta, rho)]
    c = complexity(models[beta], input_size=(int(256 * rho), int(128 * rho)))
    assert round(c.params / 1e6, 1) == params_m
    assert abs(c.mult_adds / 1e6 - madds_m) / madds_m <= 0.005


def test_table1_osnet_x1_0():
    c = complexity(build_model("osnet_x1_0"), input_size=(256, 128))
    assert round(c.params / 1e6, 1) == 2.2
    assert abs(c.mult_adds / 1e6 - 978.9) < 0.5


def test_classifier_excluded_and_mult_adds_scale_with_input():
    a = complexity(build_model("osnet_x0_25"), (256, 128))
    b = complexity(build_model("osnet_x0_25", num_classes=751), (256, 128))
    assert a.params == b.params and a.mult_adds == b.mult_adds
    small = complexity(build_model("osnet_x0_25"), (128, 64))
    assert 0.2 < small.mult_adds / a.mult_adds < 0.3


def test_package_name_stays_the_function_after_the_submodule_is_imported():
    import subprocess
    import sys

    code = ("import types, osnet_edge.complexity; from osnet_edge import complexity; "
            "assert isinstance(complexity, types.FunctionType), complexity; "
            "assert complexity is osnet_edge.complexity")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
