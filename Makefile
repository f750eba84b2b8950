# Two commands do all the set-up: `make run` (the main job) and `make test`.
# Each creates .venv and installs requirements.lock on first use; later calls skip that step.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Jupyter kernels and nbval find the venv's python first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test bench clean-venv

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m filmmtl notebooks --out results

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/film_overhead.py

clean-venv:
	rm -rf $(VENV)
