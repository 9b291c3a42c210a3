# Three commands: `make demo` (set up + main job), `make test` (set up + tests) and `make docs` (set up + the site).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
# what `make docs` writes besides its sources
DOCS_GENERATED := docs/_build docs/api/generated docs/auto_examples docs/_gallery_backreferences docs/sg_execution_times.rst

.PHONY: demo test docs install install-test install-docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, pinned, so that the package's range does not pull a CUDA build
$(VENV)/.torch: $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	touch $@

$(VENV)/.installed: $(VENV)/.torch pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

$(VENV)/.installed-docs: $(VENV)/.installed pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
install-docs: $(VENV)/.installed-docs

demo: $(VENV)/.installed
	$(BIN)/ml4ms demo --out runs/demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

# the site into docs/_build/html (entry page: index.html), the gallery executed; any warning fails the build
docs: $(VENV)/.installed-docs
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info $(DOCS_GENERATED)
