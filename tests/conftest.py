"""Shared fixtures: torchreid's reference sources (read from its sdist, never installed), GPU skips."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCHREID_SDIST = ROOT / ".cache" / "torchreid-0.2.5.tar.gz"


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU with CUDA (skipped without one)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with CUDA; none found")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _sdist() -> Path:
    if not TORCHREID_SDIST.is_file():  # `make test` downloads it; a bare pytest run tries once
        TORCHREID_SDIST.parent.mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        "torchreid==0.2.5", "-d", str(TORCHREID_SDIST.parent)], check=False)
    if not TORCHREID_SDIST.is_file():
        pytest.skip("torchreid 0.2.5 sdist unavailable (make test downloads it)")
    return TORCHREID_SDIST


def load_torchreid_module(relpath: str) -> types.ModuleType:
    """Load one torchreid source file (e.g. 'models/osnet.py') as a standalone module."""
    with tarfile.open(_sdist()) as tar:
        member = tar.getmember(f"torchreid-0.2.5/torchreid/reid/{relpath}")
        source = tar.extractfile(member).read().decode()
    name = "torchreid_ref_" + relpath.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"torchreid/{relpath}", "exec"), module.__dict__)
    return module


@pytest.fixture(scope="session")
def torchreid_osnet():
    return load_torchreid_module("models/osnet.py")


@pytest.fixture(scope="session")
def torchreid_osnet_ain():
    return load_torchreid_module("models/osnet_ain.py")


@pytest.fixture(scope="session")
def torchreid_rank():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Cython evaluation is unavailable"
        return load_torchreid_module("metrics/rank.py")


# A re-ID-TRAINED tiny OSNet and its data, shared by the INT8, precision and QAT tests. Random weights
# quantize and round deceptively well; a trained network has sparse post-BN+ReLU embeddings whose
# neighbours sit close together, which is where precision loss shows.
TRAINED_SIZE = (64, 32)


@pytest.fixture(scope="session")
def reid_data(tmp_path_factory):
    from osnet_edge.training.synthetic_dataset import make_market_dataset

    root = tmp_path_factory.mktemp("int8data") / "market"
    make_market_dataset(root, num_ids=16, images_per_id=8, cams=3, seed=3, size=TRAINED_SIZE)
    return root


@pytest.fixture(scope="session")
def trained(reid_data):
    """osnet_x0_25 trained for a few hundred crops' worth of softmax steps.

    One torch thread while training: the summation order, so the weights, then do not depend on the
    machine's core count or on what earlier tests did to torch's (process-wide) thread setting. Machines
    of another instruction-set class (AVX2 vs AVX-512) still round differently and end at a slightly
    different network: quality assertions on it carry margins measured over seeds (see test_int8.py).
    """
    import torch

    from osnet_edge import build_model
    from osnet_edge.calibration import from_market
    from osnet_edge.preprocess import to_batch

    train = from_market(reid_data, "train", n=None, progress=False)
    labels = {p: i for i, p in enumerate(sorted(set(train.pids.tolist())))}
    y = torch.tensor([labels[p] for p in train.pids.tolist()])
    x = torch.from_numpy(to_batch(train.crops, TRAINED_SIZE))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = build_model("osnet_x0_25", num_classes=len(labels), input_size=TRAINED_SIZE)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        gen = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(40):
            idx = torch.randint(0, len(x), (16,), generator=gen)
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.inference_mode():
            f = model(x[:64]).numpy()
    finally:
        torch.set_num_threads(threads)
    assert (f > 0).mean() < 0.9  # the ReLU'd embedding has gone sparse: this is not a random network
    return model
