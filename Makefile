# Two entry points: `make demo` (the main job on the embedded default) and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint setup clean ablation bench

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@# Debian's Chromium, for the Space's browser test (Playwright drives it); skipped with a reason when absent
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null 2>&1)) ; } \
		|| echo "note: chromium not installed; the Space's browser test will be skipped"
	@# Debian's FFmpeg: its CLI writes the container cases of the decoding corpus (tests/test_video_corpus.py), its
	@# libraries serve torchcodec in `make bench`; skipped with a reason when absent
	@command -v ffmpeg >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get install -y -qq ffmpeg >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq ffmpeg >/dev/null 2>&1)) ; } \
		|| echo "note: ffmpeg not installed; the container cases of the decoding corpus will be skipped"
	touch $@

demo: setup
	$(PY) scripts/demo.py

ablation: setup
	$(PY) scripts/ablation.py

# Benchmarks are run on demand, never by the tests; reports go to outputs/bench/*.md and *.json.
# torchcodec (the decoding baseline) needs FFmpeg's shared libraries, which `make setup` installs when run as root.
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
	rm -rf $(VENV) outputs
