"""A short leak test (no timing): one Embedder embedding frames with varying box counts, alone and shared by 4
threads, keeps its file descriptors and threads flat after warm-up, its RSS within a loose bound, and gives the
same embeddings at the end as at the start; opening and closing Embedders returns every fd and thread. The long
run (10^6 crops per backend) is benchmarks/results/reliability/soak.py."""
from __future__ import annotations

import gc
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "results" / "reliability"))
sys.path.insert(0, str(ROOT / "tests"))
import soak  # noqa: E402
from test_runtime_artifacts import onnx_path, openvino_path  # noqa: E402


@pytest.fixture(scope="module")
def pairs():
    if soak.VIDEO.is_file():
        return soak.frames_and_boxes(12)
    rng = np.random.default_rng(0)  # no opencv-doc: frames of noise, the same box counts
    return [(rng.integers(0, 256, (240, 320, 3), np.uint8),
             np.array([[10 * k, 5, 10 * k + 40, 120] for k in range(1 + i % 12)], np.float32)) for i in range(12)]


@pytest.mark.parametrize("artifact", ["onnx", "openvino"])
@pytest.mark.parametrize("threads", [1, 4])
def test_embedding_for_a_while_leaks_nothing(pairs, artifact, threads):
    from osnet_edge import Embedder

    path = onnx_path() if artifact == "onnx" else openvino_path()
    with Embedder(path) as emb:
        assert emb.streams >= 1
        soak.soak(emb, pairs, 600, threads)  # warm-up: pools, arenas and thread pools reach their size
        gc.collect()
        before = soak.open_fds(), threading.active_count()
        r = soak.soak(emb, pairs, 3000, threads, sample_every=0.2)
        gc.collect()
        after = soak.open_fds(), threading.active_count()
    assert r["crops"] >= 3000
    assert after <= before, (before, after)  # not one descriptor or thread more once the workers are done
    assert r["rss_growth_after_warmup_pct"] < 10, r  # loose: a short run; the recorded bound is from soak.py
    assert r["same_embeddings_start_end"], r["max_abs_diff_start_end"]


def test_open_and_close_returns_every_fd_and_thread(pairs):
    from osnet_edge import Embedder

    frame, boxes = pairs[0]
    for path in (onnx_path(), openvino_path()):  # warm the libraries' own one-time state
        with Embedder(path) as e:
            e.embed_frame(frame, boxes)
    gc.collect()
    fds, threads = soak.open_fds(), threading.active_count()
    for _ in range(3):
        for path in (onnx_path(), openvino_path()):
            with Embedder(path) as e:
                e.embed_frame(frame, boxes)
    gc.collect()
    assert soak.open_fds() == fds and threading.active_count() == threads
