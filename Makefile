# midigen: `make test` and `make demo` do all set-up on a fresh machine.
#
#   make setup   virtual environment in .venv, PyTorch, midigen with its test extras, FluidSynth
#   make test    set-up, then the lint (ruff, the import-linter contracts), then the whole test suite
#                (notebooks included, in quick mode)
#   make lint    set-up, then only the lint
#   make demo    set-up, then the demo: out/demo.mid, out/demo.wav, out/demo.png, evaluation table
#   make bench   set-up, then the encoding benchmark (see benchmarks/README.md for the others)
#
# PyTorch: on a CPU-only machine `TORCH_SPEC=torch==2.13.0` takes the CPU wheel (no CUDA
# downloads). On a GPU machine pass the build you want, e.g. `make setup TORCH_SPEC=torch`.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.midigen-installed
PYTEST_ARGS ?=

.PHONY: setup test lint bench demo fluidsynth clean

setup: $(STAMP) fluidsynth

$(STAMP): pyproject.toml
	@echo "==> creating virtual environment in $(VENV)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> installing PyTorch ($(TORCH_SPEC)) unless already present"
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	@echo "==> installing midigen with test and benchmark extras"
	@$(PY) -m pip install -q -e ".[test,bench]"
	@touch $(STAMP)

fluidsynth:
	@if ldconfig -p 2>/dev/null | grep -q libfluidsynth; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "==> installing libfluidsynth3 (apt-get)"; \
		(apt-get install -y -q libfluidsynth3 >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libfluidsynth3 >/dev/null 2>&1)) || \
		echo "WARNING: could not install libfluidsynth3; audio falls back to sine synthesis"; \
	else \
		echo "NOTE: the FluidSynth library is missing. Install it to hear real instruments:"; \
		echo "      Debian/Ubuntu: sudo apt-get install libfluidsynth3   macOS: brew install fluid-synth"; \
	fi

# ruff (pyproject.toml [tool.ruff]) and the one-way rule between modules (pyproject.toml
# [tool.importlinter], docs/architecture.md); either failing stops `make test` (and CI) before pytest.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/encode.py

demo: setup
	@echo "==> midigen demo: prepare the bundled chorales, continue a held-out chorale, render, evaluate"
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/midigen demo --out out

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis out
