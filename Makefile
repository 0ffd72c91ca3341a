# Two set-up commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
# torch==2.13.0 is installed first and pinned: a looser range would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH := torch==2.13.0
# reference implementation for parity tests (sdist, read as files, never imported as a package)
TORCHREID_SDIST := .cache/torchreid-0.2.5.tar.gz

.PHONY: demo test venv clean

$(VENV)/.installed: setup.py Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[onnx,openvino,export,train,bench,dev]' $(TORCH)
	touch $@

venv: $(VENV)/.installed

$(TORCHREID_SDIST):
	mkdir -p .cache
	$(PIP) download -q --no-deps --no-binary :all: torchreid==0.2.5 -d .cache

demo: venv
	PYTHONUNBUFFERED=1 $(PY) -m osnet_edge.demo

test: venv $(TORCHREID_SDIST)
	$(PY) -m pytest -q -ra tests

clean:
	rm -rf $(VENV) .cache demo_out
