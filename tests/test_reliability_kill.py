"""SIGKILL a real child process of osnet-export, osnet-crops and osnet-train while it writes its output: the output
is the previous file or a complete new one, never half of one, and a killed training run resumes. The loop of
many kills at random points is benchmarks/results/reliability/kill_loop.py (its result: kills.json there)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "results" / "reliability"))
sys.path.insert(0, str(ROOT / "tests"))
import kill_loop  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from test_runtime_artifacts import onnx_path

    inputs = kill_loop.prepare(tmp_path_factory.mktemp("kills"))
    inputs["previous_onnx"] = onnx_path()  # the previous artifact the killed export would replace
    return inputs


@pytest.mark.parametrize("kind", ["export", "crops", "train"])
def test_a_kill_while_writing_leaves_the_previous_or_a_complete_output(inputs, kind, tmp_path):
    # killed a few ms after its temporary file appears: inside the write (or, for the export, its verification)
    # training: at its second checkpoint, so there is a previous checkpoint to keep and to resume from
    rec = kill_loop.run_once(kind, inputs, tmp_path / "run", delay=None, at_write=0.005,
                             nth=2 if kind == "train" else 1)
    assert rec["killed"], f"{kind} finished before it could be killed: {rec}"
    assert not rec["outcome"].startswith("CORRUPT")
    if kind == "export":
        assert rec["outcome"] in ("previous", "new")
    if kind == "train":
        assert rec["outcome"] == "checkpoint of epoch 1" and rec["resumed"] == "checkpoint of epoch 3"  # run_once resumed it with --resume to the end
    shutil.rmtree(tmp_path / "run", ignore_errors=True)
