# Set-up and checks. `make venv` creates .venv with every runtime and test dependency;
# `make test` runs the test suite; `make demo` trains and evaluates on synthetic videos.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: venv test demo clean-demo

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-test.txt
	@echo "Compiling Jittor's core on first use (a few minutes, once per machine)..."
	$(PY) -c "import core.jittor_setup"
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest -q tests
