# fpga4ml developer tasks. `make demo` and `make test` create .venv on first use; the install
# step runs again only when pyproject.toml changes (a stamp file in .venv records it).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fpga4ml-installed
# Keras 3 runs on the PyTorch backend (the CPU wheel pinned in pyproject.toml).
export KERAS_BACKEND ?= torch
# extra pytest arguments, e.g. `make test PYTEST_ARGS='--runslow -x'`
PYTEST_ARGS ?=
# extra arguments for every benchmark script, e.g. `make bench BENCH_ARGS=--quick`
BENCH_ARGS ?=

.PHONY: install demo test bench clean distclean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[test]'
	@touch $@

demo: $(STAMP)
	$(PY) examples/jet_tagging.py

# pytest exits 5 when it collects no tests: that is not a failure here.
test: $(STAMP)
	@rc=0; $(PY) -m pytest -q $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo 'pytest: no tests collected'; rc=0; fi; exit $$rc

BENCH_STAMP := $(VENV)/.fpga4ml-bench-installed

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -e '.[bench]'
	@touch $@

bench: $(BENCH_STAMP)
	@found=0; for f in bench/*.py; do \
	  [ -e "$$f" ] || continue; found=1; echo "== $$f"; $(PY) "$$f" $(BENCH_ARGS) || exit $$?; \
	done; [ $$found -eq 1 ] || echo 'no benchmark scripts in bench/ yet'

clean:
	rm -rf build my-fpga4ml-prj .pytest_cache .hypothesis dist
	find . \( -path ./$(VENV) -o -path ./.git \) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
