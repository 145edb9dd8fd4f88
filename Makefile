# Two entry points: `make demo` (the main job on the embedded default) and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TRANSFORMERS_VERSION := 5.19.0
TRANSFORMERS_CACHE := .cache/transformers-$(TRANSFORMERS_VERSION)
TRANSFORMERS_TESTS := $(TRANSFORMERS_CACHE)/tests

.PHONY: demo test lint setup clean ablation bench

setup: $(VENV)/.installed $(TRANSFORMERS_TESTS)/.fetched

# transformers' own common model tests (ModelTesterMixin, ConfigTester), run against SFAR by
# tests/test_transformers_common.py. The released sdist on PyPI ships them; it is fetched once, pinned to the installed
# version, into a git-ignored folder (never copied into the repository).

$(TRANSFORMERS_TESTS)/.fetched: | $(VENV)/.installed
	rm -rf $(TRANSFORMERS_CACHE) && mkdir -p $(TRANSFORMERS_CACHE)
	$(PY) -m pip download --quiet --no-deps --no-binary :all: --dest $(TRANSFORMERS_CACHE) \
		transformers==$(TRANSFORMERS_VERSION)
	tar -xzf $(TRANSFORMERS_CACHE)/transformers-$(TRANSFORMERS_VERSION).tar.gz -C $(TRANSFORMERS_CACHE) \
		--strip-components=1 transformers-$(TRANSFORMERS_VERSION)/tests
	@# the repository's tests/ is a package (an empty __init__.py, which the sdist leaves out); the common tests load it
	touch $(TRANSFORMERS_TESTS)/__init__.py
	touch $@

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@# Debian's Chromium, for the Space's browser test (Playwright drives it); skipped with a reason when absent
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null 2>&1)) ; } \
		|| echo "note: chromium not installed; the Space's browser test will be skipped"
	touch $@

demo: setup
	$(PY) scripts/demo.py

ablation: setup
	$(PY) scripts/ablation.py

# Benchmarks are run on demand, never by the tests; reports go to outputs/bench/*.md and *.json.
# torchcodec (the decoding baseline) needs FFmpeg's shared libraries: `apt-get install ffmpeg`.
bench: setup
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) benchmarks/model_speed.py
	$(PY) benchmarks/video_input.py
	$(PY) benchmarks/subtext_generation.py

test: setup
	$(VENV)/bin/ruff check modeling_sfar scripts datasets_scripts tests benchmarks
	$(PY) -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check modeling_sfar scripts datasets_scripts tests benchmarks

clean:
	rm -rf $(VENV) outputs .cache/transformers-*
