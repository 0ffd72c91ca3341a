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
