# effhub: `make demo` and `make test` each build .venv from nothing and then run.
PYTHON ?= python3
VENV ?= .venv
# torch goes in first so that no other requirement pulls a multi-GB CUDA build; GPU users override it,
# e.g. `make test TORCH_SPEC="torch==2.14.1"` (or a --index-url of their choice in PIP_TORCH_ARGS).
TORCH_SPEC ?= torch==2.13.0
PIP_TORCH_ARGS ?=
EXTRAS ?= test,plots,tracking,video
PY := $(VENV)/bin/python
STAMP := $(VENV)/.effhub-installed
PYTEST_ARGS ?=
# e.g. make zoo ZOO_ARGS="--full" or ZOO_ARGS="--only videoiq-clips --endpoint https://huggingface.co"
ZOO_ARGS ?=

.PHONY: install demo test bench bench-quick zoo gpu-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PY) -m pip install --quiet $(PIP_TORCH_ARGS) "$(TORCH_SPEC)"
	@# pin whatever torch is now installed, so nothing below replaces it
	grep -v '^torch==' constraints.txt > $(VENV)/constraints.txt
	$(PY) -c "import torch; print('torch==' + torch.__version__)" >> $(VENV)/constraints.txt
	$(PY) -m pip install --quiet -c $(VENV)/constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/effhub demo

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) -m benchmarks

bench-quick: install
	$(PY) -m benchmarks --quick

# the model zoo (scripts/zoo.yaml): train, evaluate, publish (a local hub by default), cards in model_cards/
zoo: install
	$(PY) scripts/build_zoo.py $(ZOO_ARGS)

# on a CUDA machine: the gpu-marked tests and the quick benchmarks in bf16, a JSON summary (docs/gpu-check.md)
gpu-check: install
	PYTHON=$(PY) scripts/gpu_check.sh

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
