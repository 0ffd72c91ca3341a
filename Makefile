# Two set-up commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
# torch==2.13.0 is installed first and pinned: a looser range would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH := torch==2.13.0
# reference implementation for parity tests (sdist, read as files, never imported as a package)
TORCHREID_SDIST := .cache/torchreid-0.2.5.tar.gz

.PHONY: demo test venv clean check-tensorrt check-arm64

$(VENV)/.installed: setup.py Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[onnx,openvino,export,train,bench,gallery,docs,dev]' $(TORCH)
	touch $@

venv: $(VENV)/.installed

$(TORCHREID_SDIST):
	mkdir -p .cache
	$(PIP) download -q --no-deps --no-binary :all: torchreid==0.2.5 -d .cache

demo: venv
	PYTHONUNBUFFERED=1 $(PY) -m osnet_edge.demo

# runtime-only dependencies (no torch) for tests/test_distribution.py's fresh virtualenv: fetched once, then
# installed from disk (~160 MB: onnxruntime, openvino, opencv-python-headless, numpy and theirs)
WHEELHOUSE := .cache/wheelhouse
$(WHEELHOUSE)/.done: setup.py
	$(PIP) download -q -d $(WHEELHOUSE) '.[onnx,openvino]'
	rm -f $(WHEELHOUSE)/osnet_edge-*
	touch $@

test: venv $(TORCHREID_SDIST) $(WHEELHOUSE)/.done
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict   # a broken link or a missing API name fails it (not with -q)
	$(PY) -m pytest -q -ra tests

# The REAL tensorrt / cuda-python Python modules, one virtualenv per release under .cache/tensorrt-api/ (no torch):
# their APIs are snapshotted into tests/data/tensorrt_api/ and the project's calls and test stand-ins checked
# against them (tests/test_tensorrt_api.py). Not part of `make test`, which reads the committed snapshots.
TRT_API_RELEASES := 10.0.1:cuda-bindings==12.9.4 10.16.1.11:cuda-bindings==12.9.4 11.4.0.106:cuda-bindings==13.5.0
check-tensorrt: venv
	@echo "check-tensorrt: per TensorRT release ($(TRT_API_RELEASES)) a virtualenv in .cache/tensorrt-api/<release>"
	@echo "  downloads, once: tensorrt-cu12-bindings (1.1-1.3 MB), cuda-bindings (8-12 MB), numpy (17 MB), pytest (2 MB):"
	@echo "  ~30 MB per release, 150-225 MB on disk each; ~2 min the first time, ~1 min after. NOT tensorrt-cu12-libs"
	@echo "  (2-3 GB, served by pypi.nvidia.com only): the bindings' 10 C entry points are stubbed (tests/tensorrt_api_env.sh)."
	@set -e; for spec in $(TRT_API_RELEASES); do \
	  trt=$${spec%%:*}; cuda=$${spec#*:}; env=.cache/tensorrt-api/$$trt; \
	  PYTHON=$(PYTHON) sh tests/tensorrt_api_env.sh $$env $$trt $$cuda; \
	  $$env/bin/python tests/tensorrt_api_snapshot.py tests/data/tensorrt_api; \
	  OSNET_EDGE_LIVE_TENSORRT=1 $$env/bin/python -m pytest -q -p no:cacheprovider tests/test_tensorrt_api.py -k live; \
	done
	$(PY) -m pytest -q tests/test_tensorrt_api.py tests/test_tensorrt_fake.py tests/test_tensorrt.py

# The runtime-only install on aarch64 under qemu-user (a Cortex-A76, the Raspberry Pi 5's core; ARMv8.2 like a Jetson
# Orin's), compared with x86-64 on the same real crops and artifacts. Not part of `make test`. Output and JSON:
# benchmarks/results/arm64/ (NOTES.md says what they mean).
ARM64 := .cache/arm64
check-arm64: venv
	@echo "check-arm64: an arm64 Debian bookworm userland + runtime-only venv in $(ARM64)/, run by qemu-aarch64-static"
	@echo "  needs: qemu-user-static, mmdebstrap (no binfmt_misc). Downloads, once: python3.11 and its libraries for arm64"
	@echo "  (~30 .debs, ~15 MB; 84 MB unpacked) and the aarch64 wheels of numpy (14 MB), opencv-python-headless (~45 MB),"
	@echo "  onnxruntime (~16 MB), openvino (~40 MB) + 5 small ones: ~120 MB, 340 MB installed. ~25-40 min on 2 cores"
	@echo "  (emulation runs the network at a few % of native speed); later runs reuse the userland, venv and artifacts."
	@mkdir -p benchmarks/results/arm64
	bash -o pipefail -c 'sh tests/arm64_check.sh $(ARM64) $(PY) benchmarks/results/arm64 2>&1 | tee benchmarks/results/arm64/emulated_run.txt'

clean:
	rm -rf $(VENV) .cache demo_out
