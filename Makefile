# Two commands do all the set-up on a fresh machine:
#   make demo   install edgegov in .venv and run the main job (edgegov demo)
#   make test   install everything the tests need and run the whole suite
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: demo test install system-deps lint clean

$(STAMP): pyproject.toml setup.py runtime/edgegov/_recenc.c
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgegov demo

system-deps:
	bash tools/setup-system.sh

test: $(STAMP) system-deps
	$(VENV)/bin/ruff check runtime tools tests
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check runtime tools tests

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
