# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
PORT ?= 8501
export OVERHEARD_WORKSPACE ?= $(CURDIR)/workspace

.PHONY: run test test-fast test-measurements lint bench install dev chromium demo zoo corpus clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: a CPU build is on local disk here; elsewhere pip takes the usual build.
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	# the export extra (kaleido) is part of the base install: figure export is a main use
	$(PIP) install -q -e ".[export]"
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(PIP) install -q -e ".[dev,export,ray,piper]"
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev

# Debian's chromium for browser tests and figure export (never a downloaded browser build).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed: browser tests and image export will be skipped"; \
	  else echo "chromium not found: install it (apt-get install chromium) for browser tests and image export"; fi; }

demo: install
	$(VENV)/bin/overheard demo

run: install chromium demo
	$(VENV)/bin/overheard serve --port $(PORT)

# two workers, each test file on one of them (module fixtures built once; Ray, servers and
# browsers of one file never share a worker with themselves)
test: dev chromium lint
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

test-fast: dev
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow and not measurement"

# the tests that re-measure a documented figure on the zoo (minutes each; not in make test)
test-measurements: dev
	$(PY) -m pytest -q -p no:cacheprovider -m measurement

# Static checks: ruff over the tree, mypy (strict) over core/stats, core/di and core/mia;
# both configured in pyproject.toml.
lint: dev
	$(PY) -m ruff check .
	$(PY) -m mypy

bench: dev
	$(PY) -m bench.run

corpus: install
	$(VENV)/bin/overheard demo build-corpus

zoo: install
	$(VENV)/bin/overheard zoo build

clean:
	rm -rf $(VENV) workspace .pytest_cache
