# DSA: `make up` runs the embedded stack, `make test` runs the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: up test test-slow lint bench bench-scale install clean browser screenshots lock

$(STAMP): pyproject.toml core/_rowhash.c core/_pieces.c features/imports/_records.c features/compare/_intervals.c
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(VENV)/bin/dsa up

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy core features api worker
	$(VENV)/bin/lint-imports

# Debian's Chromium for the browser tests (tests/ui/test_browser.py); Playwright
# drives it (its own browser download does not work everywhere).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

test: $(STAMP) lint browser
	$(PY) -m pytest

# the tests marked slow (a 10M-row import's memory, ~5 GB of disk, minutes)
test-slow: $(STAMP)
	$(PY) -m pytest --slow -m slow

bench: $(STAMP)
	$(PY) tests/bench/bench_import.py
	$(PY) tests/bench/bench_formats.py
	$(PY) tests/bench/bench_history.py
	$(PY) tests/bench/bench_compare.py
	$(PY) tests/bench/bench_ui.py
	$(PY) tests/bench/bench_reads.py
	$(PY) tests/bench/bench_exports.py
	$(PY) tests/bench/bench_versions.py
	$(PY) tests/bench/bench_s3.py
	$(PY) tests/bench/bench_fsck.py
	$(PY) tests/bench/bench_gc.py
	$(PY) tests/bench/bench_security.py
	$(PY) tests/bench/bench_clients.py
	$(PY) tests/bench/bench_stats.py
	$(PY) tests/bench/bench_catalog.py
	$(PY) tests/bench/bench_webhooks.py
	$(PY) tests/bench/bench_schedules.py
	$(PY) tests/bench/bench_scaleout.py
	$(PY) tests/bench/bench_scaleout.py --storage s3

# issue 19's 100M-row suite: ~40 GB of disk, about an hour (not part of bench)
bench-scale: $(STAMP)
	$(PY) tests/bench/bench_scale.py

# the pinned, hashed set of runtime dependencies the Dockerfile installs
# (after changing pyproject.toml's dependencies); tests/test_dependencies.py
# checks the two agree and audits the set
lock: $(STAMP)
	$(VENV)/bin/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes \
	  --index-url https://pypi.org/simple --quiet -o requirements.lock

# the browser test again, writing its screenshots to docs/screenshots/
screenshots: $(STAMP) browser
	DSA_UI_SCREENSHOTS=1 $(PY) -m pytest -q tests/ui/test_browser.py

clean:
	rm -rf $(VENV) build *.egg-info core/*.so features/*/*.so .pytest_cache .mypy_cache .ruff_cache
