# Two commands do all the set-up: `make run` (the main job) and `make test`.
# Each creates .venv and installs requirements.lock on first use; later calls skip that step.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Jupyter kernels and nbval find the venv's python first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test bench clean-venv

# A new venv takes about 6.1 GB (torch 2.14.1 is a CUDA build): check the disk first, so that a full
# disk stops here with the fix named instead of half-way through pip.
NEED_MB := 7000

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || { free_mb=$$(df -Pm . | awk 'NR==2 {print $$4}'); \
	  if [ "$$free_mb" -lt $(NEED_MB) ]; then \
	    echo "make: .venv needs about $(NEED_MB) MB free on this disk (torch's CUDA build) and only $$free_mb MB are free." >&2; \
	    echo "      Free some space (old clones' .venv folders, caches), then run make again." >&2; exit 1; fi; \
	  $(PYTHON) -m venv $(VENV); }
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
