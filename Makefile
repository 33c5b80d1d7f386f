# The two commands of the README (and the docs site):
#   make demo   -> installs the web side into .venv and opens the arena on the demo workspace
#   make test   -> installs everything (torch CPU build first, chromium from Debian) and runs pytest
#   make docs   -> builds the documentation site (docs/, mkdocs.yml) into site/, --strict
# Override the interpreter with PYTHON=python3.11, the venv folder with VENV=...

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: demo test docs install install-test system-deps reference-env lint format clean

demo: install
	$(BIN)/python app.py

test: install-test system-deps reference-env
	$(BIN)/python -m pytest -q --durations=15

# --strict: a broken link, a missing anchor or a page left out of the nav fails the build.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

install: $(VENV)/.installed-web
install-test: $(VENV)/.installed-test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-web: pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) -e .
	touch $@

# The docs alone need no torch: the project and the `docs` extra.
$(VENV)/.installed-docs: pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) -e '.[docs]'
	touch $@ $(VENV)/.installed-web

# torch first, pinned: the registry's newest torch would bring several GB of CUDA packages.
$(VENV)/.installed-test: pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	touch $@ $(VENV)/.installed-web $(VENV)/.installed-docs

# LMArena's `arena-rank` (JAX, numpy pins of its own) is the reference the rating tests compare
# with: it lives in its own venv, so its pins never touch ours; tests run it as a subprocess.
REFERENCE_VENV ?= .venv-reference
reference-env: $(REFERENCE_VENV)/.installed
$(REFERENCE_VENV)/.installed: requirements-reference.txt
	$(PYTHON) -m venv $(REFERENCE_VENV)
	$(REFERENCE_VENV)/bin/python -m pip install --disable-pip-version-check -q -r requirements-reference.txt
	touch $@

# Debian packages the tests use: chromium (Playwright drives /usr/bin/chromium; no browser
# download) and postgresql (the tests start a private server on 127.0.0.1 from its binaries).
system-deps:
	@if [ ! -x /usr/bin/chromium ] || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium postgresql >/dev/null; \
	fi

lint: install-test
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install-test
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(REFERENCE_VENV) .pytest_cache .ruff_cache site
