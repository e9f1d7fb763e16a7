# The two front-door commands (README):  make demo   |   make test
# Both create .venv and install everything on first use.

PYTHON ?= python3
VENV   := .venv
# torch/torchvision come from PyPI. The pip config on some machines points --find-links at a
# torch wheel torchvision cannot load with; ignore that config and the PIP_FIND_LINKS variable.
PIP    := env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(VENV)/bin/pip
TORCH  := torch==2.13.0 torchvision==0.28.0

.PHONY: demo test lint install clean

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/lookalike demo

# Both cores: pytest-xdist, two worker processes (each starts its own PostgreSQL cluster; docs/BENCHMARKS.md,
# "The test suite's time", has the serial run beside it).
test: $(VENV)/.installed lint
	$(VENV)/bin/python -m pytest -q -n 2 --durations=15

# The checks that keep the house in order (tests/test_layering.py holds the import contracts).
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) demo-output report *.egg-info
