# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install install-runtime demo test bench clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The trading PC: `predict` on a bundle's ONNX graphs, without torch or xlstm (requirements-runtime.txt).
install-runtime:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-runtime.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .

# `evo run` ends with the front (printed once; `evo front runs/demo` shows it again).
demo: install
	$(PY) -m evo run --generations 2 --budget smoke --out runs/demo --seed 0

test: install
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: install
	$(PY) -m evo bench

clean:
	rm -rf runs .pytest_cache
