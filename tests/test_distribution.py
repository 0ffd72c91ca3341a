"""The distribution as a device gets it: wheel + sdist, what the wheel holds, its extras' markers per platform,
and the wheel installed runtime-only (no torch) into a fresh virtualenv embedding real crops like PyTorch.

One wheel is built per session (`python -m build`: the sdist, then the wheel from the unpacked sdist, so a file
the sdist forgets is missing from the wheel too). The fresh virtualenv gets its dependencies from
.cache/wheelhouse when `make test` has filled it (no network), else from the registry.
"""
from __future__ import annotations

import email.parser
import importlib.util
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = ROOT / ".cache" / "wheelhouse"
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
# source folder -> the package it becomes (setup.py's package_dir)
MAPPED = {"osnet_edge": "osnet_edge", "export": "osnet_edge.export", "calibration": "osnet_edge.calibration",
          "benchmarks": "osnet_edge.benchmarks"}


def _version() -> str:
    scope: dict = {}
    exec((ROOT / "osnet_edge" / "_version.py").read_text(), scope)
    return scope["__version__"]


@pytest.fixture(scope="session")
def dist(tmp_path_factory):
    if importlib.util.find_spec("build") is None:
        pytest.skip("the 'build' package is not installed (it is in osnet-edge[dev]: pip install -e '.[dev]')")
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend (setuptools) of this environment, no download of a fresh one
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    wheels, sdists = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


def _wheel_metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(z.read(name).decode())


def _source_packages() -> dict:
    """Every package under the mapped folders (a folder with __init__.py) -> its .py files, as wheel paths."""
    out = {}
    for folder, package in MAPPED.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / folder)
            if "__pycache__" in rel.parts or not all((ROOT / folder / Path(*rel.parts[:i]) / "__init__.py").is_file()
                                                   for i in range(len(rel.parts) + 1)):
                continue  # a folder with __init__.py under a non-package (benchmarks/results/...) is not imported
            dotted = ".".join([package, *rel.parts])
            out[dotted] = sorted(dotted.replace(".", "/") + "/" + p.name for p in init.parent.glob("*.py"))
    return out


def test_wheel_holds_every_package_of_the_source_tree(dist):
    with zipfile.ZipFile(dist["wheel"]) as z:
        names = set(z.namelist())
    packages = _source_packages()
    assert {"osnet_edge", "osnet_edge.runtime", "osnet_edge.export", "osnet_edge.calibration",
            "osnet_edge.benchmarks"} <= set(packages)
    missing = [f for files in packages.values() for f in files if f not in names]
    assert not missing, f"modules missing from {dist['wheel'].name}: {missing[:10]}"
    # nothing outside the packages: no tests, no benchmark results, no top-level export/ next to osnet_edge/
    tops = {n.split("/")[0] for n in names}
    assert tops == {"osnet_edge", f"osnet_edge-{_version()}.dist-info"}, tops


def test_version_comes_from_one_place(dist):
    version = _version()
    assert _wheel_metadata(dist["wheel"])["Version"] == version
    assert dist["sdist"].name == f"osnet_edge-{version}.tar.gz"
    with tarfile.open(dist["sdist"]) as tar:
        pkg_info = tar.extractfile(f"osnet_edge-{version}/PKG-INFO").read().decode()
    assert f"\nVersion: {version}\n" in pkg_info
    # pyproject.toml holds the build system only: a [project] table would be a second place for the version
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert set(pyproject) == {"build-system"}, set(pyproject)


def test_twine_check_passes(dist):
    if importlib.util.find_spec("twine") is None:
        pytest.skip("the 'twine' package is not installed (it is in osnet-edge[dev]: pip install -e '.[dev]')")
    r = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(dist["wheel"]), str(dist["sdist"])],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("PASSED") == 2, r.stdout


PLATFORMS = {  # the marker environment of each device class
    "jetson (aarch64, JetPack 6)": {"platform_machine": "aarch64", "sys_platform": "linux", "python_version": "3.10"},
    "raspberry pi 5 (aarch64)": {"platform_machine": "aarch64", "sys_platform": "linux", "python_version": "3.11"},
    "x86-64 linux": {"platform_machine": "x86_64", "sys_platform": "linux", "python_version": "3.11"},
    "windows": {"platform_machine": "AMD64", "sys_platform": "win32", "python_version": "3.11"},
    "macos (apple silicon)": {"platform_machine": "arm64", "sys_platform": "darwin", "python_version": "3.11"},
}


def _resolved(meta, extra: str | None, env: dict) -> set:
    """Names of the wheel's requirements pip installs for `extra` (None: the base install) on `env`."""
    from packaging.requirements import Requirement

    out = set()
    for line in meta.get_all("Requires-Dist") or []:
        req = Requirement(line)
        full = {**env, "extra": extra or ""}
        in_extra = req.marker is not None and "extra" in str(req.marker)
        if (extra is None and in_extra) or (extra is not None and not in_extra):
            continue
        if req.marker is None or req.marker.evaluate(full):
            out.add(req.name.lower())
    return out


def test_extras_markers_per_platform(dist):
    meta = _wheel_metadata(dist["wheel"])
    for label, env in PLATFORMS.items():
        base = _resolved(meta, None, env)
        assert {"numpy", "opencv-python-headless"} <= base and not any(n.startswith("torch") for n in base), label
        # the runtime engines have wheels for every platform here, aarch64 included: no marker may drop them
        assert _resolved(meta, "onnx", env) == {"onnxruntime"}, label
        assert _resolved(meta, "openvino", env) == {"openvino"}, label
    trt = {label: _resolved(meta, "tensorrt", env) for label, env in PLATFORMS.items()}
    # a Jetson has TensorRT from JetPack (no aarch64 wheel on PyPI): the extra brings cuda-python alone there
    assert trt["jetson (aarch64, JetPack 6)"] == trt["raspberry pi 5 (aarch64)"] == {"cuda-python"}
    assert trt["x86-64 linux"] == trt["windows"] == {"tensorrt", "cuda-python"}
    assert trt["macos (apple silicon)"] == set()


# ---- the wheel installed runtime-only in a fresh virtualenv -------------------------------------------------

EMBED_IN_VENV = """
import importlib.util, json, sys
import numpy as np
assert importlib.util.find_spec("torch") is None, "torch is installed in the runtime-only virtualenv"
import osnet_edge
from osnet_edge import Embedder
data = np.load(sys.argv[1])
crops = [data[f"crop{i}"] for i in range(int(data["n"]))]
out = {"version": osnet_edge.__version__, "file": osnet_edge.__file__}
for path in sys.argv[3:]:
    with Embedder(path) as emb:
        np.save(sys.argv[2] + "/" + path.rsplit("/", 1)[-1] + ".npy", emb.embed(crops))
print(json.dumps(out))
"""


def _real_crops(n: int = 24) -> list:
    """Person crops cut from vtest.avi (PETS 2009) with the project's motion boxes; generated people without it."""
    if not VTEST.is_file():
        from osnet_edge.synthetic import synthetic_crops

        return synthetic_crops(n, seed=0)
    import cv2

    from osnet_edge.calibration.motion import MotionDetector
    from osnet_edge.preprocess import crop_boxes

    cap, detect, crops, frame_no = cv2.VideoCapture(str(VTEST)), MotionDetector(), [], 0
    try:
        while len(crops) < n:
            ok, frame = cap.read()
            if not ok:
                break
            boxes = detect(frame)
            frame_no += 1
            if frame_no % 10 == 0 and len(boxes):  # frames apart: different poses, different people
                crops += crop_boxes(frame, boxes)
    finally:
        cap.release()
    assert len(crops) >= n // 2, f"only {len(crops)} crops found in {VTEST}"
    return [np.ascontiguousarray(c) for c in crops[:n]]


def test_wheel_installs_runtime_only_and_embeds_like_pytorch(dist, tmp_path):
    torch = pytest.importorskip("torch")
    from osnet_edge import build_model
    from osnet_edge.export import export_model
    from osnet_edge.preprocess import to_batch
    from osnet_edge.runtime import l2_normalize

    venv = tmp_path / "venv"
    # no pip of its own: this environment's pip installs into it (--python), which saves seconds per run
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    source = (["--no-index", "--find-links", str(WHEELHOUSE)] if any(WHEELHOUSE.glob("onnxruntime-*.whl"))
              else [])
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-compile",
                        "--disable-pip-version-check", *source, f"{dist['wheel']}[onnx,openvino]"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    size = (64, 32)
    torch.manual_seed(0)
    model = build_model("osnet_x0_25", input_size=size).eval()
    arts = [export_model(model, fmt, tmp_path / "art", quiet=True).path for fmt in ("onnx", "openvino")]
    crops = _real_crops()
    with torch.inference_mode():
        ref = l2_normalize(model(torch.from_numpy(to_batch(crops, size))).numpy())

    np.savez(tmp_path / "crops.npz", n=len(crops), **{f"crop{i}": c for i, c in enumerate(crops)})
    (tmp_path / "embed.py").write_text(EMBED_IN_VENV)
    r = subprocess.run([str(py), str(tmp_path / "embed.py"), str(tmp_path / "crops.npz"), str(tmp_path),
                        *map(str, arts)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["version"] == _version()
    assert str(venv) in info["file"], info["file"]  # the installed wheel ran, not the source tree
    for art in arts:
        feats = np.load(tmp_path / f"{art.name}.npy")
        cos = np.sum(feats.astype(np.float64) * ref, axis=1)
        assert feats.shape == (len(crops), 512)
        assert cos.min() >= 0.99999, f"{art.name}: min cosine {cos.min():.7f} to PyTorch"


def test_missing_tensorrt_on_aarch64_names_jetpack(monkeypatch):
    """On a Jetson the [tensorrt] extra brings cuda-python alone: the missing-TensorRT line must point to JetPack."""
    import importlib
    import platform

    from osnet_edge import deps
    from osnet_edge.errors import MissingDependencyError

    real = importlib.import_module

    def no_tensorrt(name, *a, **k):
        if name.split(".")[0] == "tensorrt":
            raise ImportError("No module named 'tensorrt'")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", no_tensorrt)
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(MissingDependencyError, match="aarch64 Linux .*JetPack.*python3-libnvinfer"):
        deps.require("tensorrt", "TensorRT engines")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    with pytest.raises(MissingDependencyError, match=r"pip install 'osnet-edge\[tensorrt\]'"):
        deps.require("tensorrt", "TensorRT engines")
