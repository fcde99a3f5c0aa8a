# Two commands do everything on a fresh machine:
#   make demo   generate sample images and run the nightly job on them (SQLite default)
#   make test   run the test suite
# Both create .venv when it is absent, install cellpipe with its test extras and
# build the Cython extension first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXT_SOURCES := $(wildcard ext/*.pyx)
EXT_STAMP := build/.ext-built
PYTEST_ARGS ?=
DEMO_DIR ?= demo-output

.PHONY: demo test build bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Rebuild the extension in place whenever a .pyx changes (the editable install imports
# the modules from cellpipe/).
$(EXT_STAMP): $(STAMP) $(EXT_SOURCES) setup.py
	$(BIN)/python setup.py --quiet build_ext --inplace
	mkdir -p build && touch $@

build: $(EXT_STAMP)

test: $(EXT_STAMP)
	bash scripts/install-test-deps.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(EXT_STAMP)
	$(BIN)/python -m cellpipe.demo --out $(DEMO_DIR)

bench: $(EXT_STAMP)
	$(BIN)/python benchmarks/bench_postprocess.py

clean:
	rm -rf build $(VENV) cellpipe/*.so cellpipe/*.c ext/*.c $(DEMO_DIR)
