# The two front-door commands (see README.md). Everything runs from a project
# virtualenv in .venv, made on first use; pods of the dev cluster use it too.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
KINFLOW := $(VENV)/bin/kinflow
N      ?= 10

.PHONY: demo test unit e2e install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

## demo: start the local cluster (building Kubernetes once) and run a fan-out of N children
demo: install
	$(KINFLOW) dev up
	KUBECONFIG=$$($(KINFLOW) dev env | sed 's/^export KUBECONFIG=//') \
	  $(KINFLOW) run examples.fanout:parent_wf --input '{"n": $(N)}' --follow

## test: the whole suite, unit and end-to-end (starts its own dev cluster)
test: install
	$(PY) -m pytest tests

unit: install
	$(PY) -m pytest tests/unit

e2e: install
	$(PY) -m pytest tests/e2e

clean:
	rm -rf $(VENV) .pytest_cache
