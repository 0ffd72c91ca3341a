"""osnet-edge: OSNet person re-ID from training to camera-end hardware.

The design card's top-level folders map into one namespace: export/ -> osnet_edge.export,
calibration/ -> osnet_edge.calibration, benchmarks/ -> osnet_edge.benchmarks.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(r'__version__ = "([^"]+)"', (here / "osnet_edge/_version.py").read_text()).group(1)

extras = {
    # the runtime itself (numpy + opencv) is the base install: a camera-end box needs no torch.
    # Runtime extras hold the inference engine alone; everything only an export needs is in "export".
    "onnx": ["onnxruntime>=1.17"],
    "openvino": ["openvino>=2024.0"],
    # exporting (with torch from "train"): ONNX writing and slimming, the dynamo exporter's onnxscript,
    # OpenVINO IR conversion and NNCF INT8 quantization
    "export": ["onnx>=1.15", "onnxruntime>=1.17", "onnxslim>=0.1.30", "onnxscript>=0.2",
               "openvino>=2024.0", "nncf>=2.12"],
    # JetPack ships TensorRT on a Jetson (aarch64): the desktop wheel only on x86-64 Linux/Windows
    # (Windows says AMD64). cuda-python is thin bindings that load the system's CUDA, so a Jetson
    # takes it from the registry too; no TensorRT/CUDA wheels exist for macOS.
    # TensorRT 10.x and 11.x: the versions whose real Python API tests/test_tensorrt_api.py checks the code
    # against (`make check-tensorrt`); a new major is admitted once it has a snapshot there.
    "tensorrt": ['tensorrt>=10.0,<12; (platform_machine == "x86_64" or platform_machine == "AMD64") '
                 'and sys_platform != "darwin"',
                 'cuda-python>=12.0,<14; sys_platform != "darwin"'],
    "train": ["torch>=2.1"],
    "bench": ["matplotlib>=3.7", "psutil>=5.9"],
    # the cross-camera gallery: LanceDB, an embedded vector database (pyarrow comes with it); see docs/gallery.md
    "gallery": ["lancedb>=0.40"],
    # the documentation site (docs/, mkdocs.yml); `make test` builds it with --strict
    "docs": ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"],
    "dev": ["pytest>=8", "build>=1.0", "twine>=5", "hypothesis>=6.100"],  # build/twine: the wheel + sdist and their test
}
# Found, not listed: a package someone adds (osnet_edge/<new>/, export/<new>/) cannot be left out of the wheel.
# benchmarks/results/ holds scripts and data (no __init__.py), so it stays out.
packages = ["osnet_edge"] + [f"osnet_edge.{p}" for p in find_packages("osnet_edge")]
for _sub in ("export", "calibration", "benchmarks"):
    packages += [f"osnet_edge.{_sub}"] + [f"osnet_edge.{_sub}.{p}" for p in find_packages(_sub)]

extras["all"] = sorted({d for k, v in extras.items() if k != "tensorrt" for d in v})

setup(
    name="osnet-edge",
    version=version,
    description="OSNet person re-identification from training to camera-end hardware",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=packages,
    package_dir={
        "osnet_edge": "osnet_edge",
        "osnet_edge.export": "export",
        "osnet_edge.calibration": "calibration",
        "osnet_edge.benchmarks": "benchmarks",
    },
    install_requires=["numpy>=1.24", "opencv-python-headless>=4.8", "tqdm>=4.60"],
    extras_require=extras,
    entry_points={
        "console_scripts": [
            "osnet-export=osnet_edge.export.cli:main",
            "osnet-bench=osnet_edge.benchmarks.cli:main",
            "osnet-train=osnet_edge.training.cli:train_main",
            "osnet-eval=osnet_edge.training.cli:eval_main",
            "osnet-crops=osnet_edge.calibration.crops_cli:main",
            "osnet-gallery=osnet_edge.gallery.cli:main",
        ]
    },
)
